"""The gateway's HTTP API in-process: shapes, validation, errors, logging (streaming is tested
through a real Gunicorn server in test_streaming.py)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.core.clock import parse_iso
from tests.conftest import provider_config
from tests.fakes.server import Reply

ASK = {"question": "What is 2+2?", "client_id": "c1", "user_id": "u1"}


def test_ask_answers_in_openai_completion_shape(client, fake_openai):
    fake_openai.enqueue(Reply(text="4", prompt_tokens=9, completion_tokens=1))
    response = client.post("/v1/ask", json={**ASK, "history": [{"role": "user", "content": "hello"},
                                                                 {"role": "assistant", "content": "Hi."}]})
    assert response.status_code == 200
    body = response.get_json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "4"}, "finish_reason": "stop"}]
    assert body["usage"] == {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10}
    assert body["model"] == "gpt-4o-mini" and body["provider"] == "openai"
    assert response.headers["X-Provider"] == "openai"
    sent = fake_openai.requests[-1].json["messages"]
    assert [m["content"] for m in sent] == ["hello", "Hi.", "What is 2+2?"]


@pytest.mark.parametrize("body, field", [({"client_id": "c", "user_id": "u"}, "question"),
                                         ({"question": "q", "user_id": "u"}, "client_id"),
                                         ({**ASK, "stream": "maybe"}, "stream"),
                                         ({**ASK, "history": [{"role": "wizard", "content": "x"}]}, "history")])
def test_ask_names_the_bad_field(client, body, field):
    response = client.post("/v1/ask", json=body)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert field in error["message"] and error["param"] == field


@pytest.mark.parametrize("path", ["/v1/ask", "/chat", "/chat/gpt", "/v1/chat/completions"])
def test_client_mistakes_get_json_errors(client, path):
    cases = [
        (dict(data="{not json", content_type="application/json"), 400),
        (dict(data="[1, 2]", content_type="application/json"), 400),
        (dict(data="question=hi", content_type="application/x-www-form-urlencoded"), 415),
        (dict(data="x" * 2_000_000, content_type="application/json"), 413),
    ]
    for kwargs, status in cases:
        response = client.post(path, **kwargs)
        assert response.status_code == status, (kwargs.get("content_type"), response.data[:200])
        assert response.is_json and "message" in response.get_json()["error"]


def test_unknown_route_and_method_are_json(client):
    assert client.get("/nowhere").status_code == 404
    response = client.get("/v1/ask")
    assert response.status_code == 405 and response.get_json()["error"]["code"] == "method_not_allowed"


def test_chat_with_provider_alias_non_streaming(client, fake_openai):
    fake_openai.enqueue(Reply(text="Hi from GPT"))
    response = client.post("/chat/gpt", json={"messages": [{"role": "user", "content": "Hello!"}],
                                              "model": "client-chosen-model-is-ignored", "stream": False})
    body = response.get_json()
    assert body["response"] == "Hi from GPT" and body["success"] is True
    assert (body["provider"], body["model"]) == ("openai", "gpt-4o-mini")
    assert fake_openai.requests[-1].json["model"] == "gpt-4o-mini"


def test_unknown_provider_is_404_and_unconfigured_is_503_naming_the_variable(client):
    response = client.post("/chat/mistral", json={"messages": [{"role": "user", "content": "x"}]})
    assert response.status_code == 404 and "mistral" in response.get_json()["error"]["message"]
    response = client.post("/chat/claude", json={"messages": [{"role": "user", "content": "x"}]})
    assert response.status_code == 503
    assert "ANTHROPIC_API_KEY" in response.get_json()["error"]["message"]


def test_without_any_key_the_server_starts_and_says_what_to_set(make_app):
    client = make_app().test_client()
    health = client.get("/health").get_json()
    assert health["status"] == "degraded"
    assert health["providers"]["openai"] == {"configured": False, "reachable": False, "variable": "OPENAI_API_KEY"}
    response = client.post("/v1/ask", json=ASK)
    assert response.status_code == 503 and "OPENAI_API_KEY" in response.get_json()["error"]["message"]


def test_upstream_failure_maps_to_502_with_the_attempts(client, fake_openai):
    fake_openai.default_reply = Reply(status=500, error_message="boom")
    response = client.post("/v1/ask", json=ASK)
    assert response.status_code == 502
    error = response.get_json()["error"]
    assert error["type"] == "upstream_error" and "boom" in error["message"]


def test_upstream_callers_fault_is_a_400_not_a_retry(client, fake_openai):
    fake_openai.enqueue(Reply(status=400, error_message="invalid_value: 'stop' has too many entries"))
    response = client.post("/chat", json={"messages": [{"role": "user", "content": "long"}]})
    assert response.status_code == 400 and "invalid_value" in response.get_json()["error"]["message"]
    assert len(fake_openai.requests) == 1


def test_v1_models_and_model_routing(make_app, fake_openai, fake_anthropic):
    client = make_app(**provider_config(openai=fake_openai, anthropic=fake_anthropic),
                      MODEL_ALIASES=["smart=anthropic/claude-opus-5"]).test_client()
    ids = [m["id"] for m in client.get("/v1/models").get_json()["data"]]
    assert ids[0] == "smart" and "openai/gpt-4o-mini" in ids and "anthropic/claude-haiku-5-5" in ids
    for model, vendor, sent in [("smart", fake_anthropic, "claude-opus-5"), ("openai/gpt-4o", fake_openai, "gpt-4o"),
                                ("claude-haiku-5-5", fake_anthropic, "claude-haiku-5-5"),
                                ("gpt-5.4-nano", fake_openai, "gpt-5.4-nano")]:
        response = client.post("/v1/chat/completions", json={"model": model,
                                                              "messages": [{"role": "user", "content": "hi"}]})
        assert response.status_code == 200, response.data
        assert vendor.requests[-1].json["model"] == sent
    response = client.post("/v1/chat/completions", json={"model": "llama-9", "messages": [{"role": "user",
                                                                                          "content": "hi"}]})
    assert response.status_code == 404
    assert response.get_json() == {"error": {"message": response.get_json()["error"]["message"],
                                             "type": "not_found_error", "code": "model_not_found", "param": "model"}}


def test_health_reports_each_provider_and_caches_checks(make_app, fake_openai):
    client = make_app(**provider_config(openai=fake_openai)).test_client()
    body = client.get("/health").get_json()
    assert body["status"] == "ok" and body["database"]["ok"] is True and body["version"]
    assert body["timestamp"].endswith("Z") and parse_iso(body["timestamp"])  # the one time format
    assert body["providers"]["openai"]["reachable"] is True
    client.get("/health")
    assert len([r for r in fake_openai.requests if r.path == "/v1/models"]) == 1
    assert client.get("/health/gpt").get_json()["provider"] == "openai"
    assert client.get("/health/gemini").status_code == 503
    assert client.get("/health/nobody").status_code == 404
    for path in ("/ping", "/v1/health", "/api/v1/health"):
        assert client.get(path).get_json()["status"] == "ok"


def test_index_openapi_and_docs(client):
    index = client.get("/").get_json()
    assert index["name"] == "aiserver" and index["redoc"] == "/redoc"
    assert {"path": "/v1/ask", "method": "POST",
            "description": "Ask a question (optionally with history); OpenAI chat.completion or chunk stream."
            } in index["endpoints"]
    spec = client.get("/openapi.json").get_json()
    ask = spec["paths"]["/v1/ask"]["post"]
    assert ask["requestBody"]["content"]["application/json"]["schema"]
    assert "Ask" in json.dumps(spec["components"]["schemas"])
    assert b"swagger-ui" in client.get("/docs").data
    assert client.get("/docs/assets/swagger-ui-bundle.js").status_code == 200


def test_request_id_is_honoured_and_the_access_line_has_provider_model_tokens(app, client, fake_openai):
    fake_openai.enqueue(Reply(text="four", prompt_tokens=3, completion_tokens=2))
    response = client.post("/v1/ask", json=ASK, headers={"X-Request-ID": "trace-123"})
    assert response.headers["X-Request-ID"] == "trace-123"
    response.close()
    line = [ln for ln in (Path(app.config["LOG_DIR"]) / "app.log").read_text().splitlines() if "trace-123" in ln][-1]
    for part in ("method=POST", "path=/v1/ask", "status=200", "provider=openai", "model=gpt-4o-mini", "tokens=5",
                 "latency_ms="):
        assert part in line
    assert client.get("/ping").headers["X-Request-ID"]


def test_secrets_never_reach_logs_or_responses(make_app, fake_openai):
    key = "sk-live-SECRETSECRETSECRET"
    app = make_app(OPENAI_API_KEY=key, OPENAI_BASE_URL=fake_openai.base_url, LOG_FORMAT="json")
    client = app.test_client()
    fake_openai.default_reply = Reply(status=401, error_message=f"Incorrect API key provided: {key}")
    response = client.post("/v1/ask", json=ASK)
    import logging
    logging.getLogger("aiserver").error("leak attempt %s and Bearer %s", key, "tok_abcdefghijkl")
    assert key not in response.get_data(as_text=True)
    logs = "".join(p.read_text() for p in Path(app.config["LOG_DIR"]).glob("*.log"))
    assert logs and key not in logs and "tok_abcdefghijkl" not in logs
    assert all(json.loads(line) for line in (Path(app.config["LOG_DIR"]) / "app.log").read_text().splitlines())


def test_max_tokens_uses_each_apis_own_field(client, fake_openai):
    client.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "max_tokens": 50,
                                              "messages": [{"role": "user", "content": "hi"}]})
    assert fake_openai.requests[-1].json["max_completion_tokens"] == 50
    assert "max_tokens" not in fake_openai.requests[-1].json


@pytest.mark.parametrize("request_args", [
    dict(method="POST", path="/v1/ask", json={**ASK, "question": "nul\u0000here"}),
    dict(method="GET", path="/chat/history/a%00b"),
    dict(method="GET", path="/tasks?email=a%00b"),
])
def test_nul_characters_are_a_400_not_a_database_error(client, request_args):
    response = client.open(request_args.pop("path"), **request_args)
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "nul_character"


def test_invalid_base64_images_are_refused_before_any_provider_call(client, fake_openai):
    content = [{"type": "image_url", "image_url": {"url": "data:image/png;base64,abc"}}]
    response = client.post("/chat", json={"messages": [{"role": "user", "content": content}]})
    assert response.status_code == 400 and "base64" in response.get_json()["error"]["message"]
    assert fake_openai.requests == []


def test_an_unreadable_upstream_event_falls_back_instead_of_failing(make_app, fake_openai, fake_anthropic):
    from tests.fakes.server import Frame

    client = make_app(**provider_config(openai=fake_openai, anthropic=fake_anthropic), PROVIDER_FALLBACKS=["anthropic"],
                      RETRY_ATTEMPTS=0).test_client()
    fake_openai.frames = lambda reply, model, request: iter([Frame(b"data: 1\n\n", content=True)])  # not an object
    fake_anthropic.enqueue(Reply(chunks=["res", "cued"]))
    response = client.post("/chat", json={"messages": [{"role": "user", "content": "hi"}], "stream": True})
    events = [json.loads(line[6:]) for line in response.get_data(as_text=True).splitlines() if line.startswith("data:")]
    assert [e["type"] for e in events] == ["fallback", "start", "delta", "delta", "done"]  # the next vendor at once
    assert events[1]["provider"] == "anthropic"


def test_a_health_check_never_shows_an_echoed_key(make_app):
    from tests.fakes.openai_api import FakeOpenAI

    key = "sk-live-HEALTHSECRET0000"
    with FakeOpenAI(api_key="the-right-key") as guarded:
        client = make_app(OPENAI_API_KEY=key, OPENAI_BASE_URL=guarded.base_url).test_client()
        body = client.get("/health/openai").get_data(as_text=True)
    assert "Incorrect API key" in body and key not in body


def test_a_path_cannot_forge_a_log_line(app, client):
    client.get("/x%0A2026-01-01 INFO aiserver.access [admin] method=DELETE path=/forged").close()
    lines = (Path(app.config["LOG_DIR"]) / "app.log").read_text().splitlines()
    assert not any(line.startswith("2026-01-01") for line in lines)
    assert any("\\n2026-01-01" in line for line in lines)


def test_log_lines_written_while_streaming_carry_the_request_id(app, client, fake_openai):
    fake_openai.set_model_reply("gpt-4o-mini", Reply(status=500, error_message="first model down"))
    response = client.post("/chat", json={"messages": [{"role": "user", "content": "hi"}], "stream": True},
                           headers={"X-Request-ID": "stream-trace-7"})
    assert b'"type": "done"' in response.get_data()
    log = (Path(app.config["LOG_DIR"]) / "app.log").read_text()
    assert any("stream-trace-7" in line and "first model down" in line for line in log.splitlines())
