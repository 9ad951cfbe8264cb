"""The call log: a row per front-door request equal to what the fakes received, attempt for attempt and
token for token; its payloads redacted; its pruning; each key reading only its own calls."""
from __future__ import annotations

import time
import zlib
from datetime import timedelta

import httpx2
import openai
import pytest
import requests

from app.calls.models import CallRecord
from app.core.clock import isoformat, utcnow
from app.core.db import database
from app.keys import service
from app.keys.secret import hash_secret
from tests.conftest import NO_HEALTH_MEMORY, provider_config
from tests.fakes.server import Reply

ENGINES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
GITHUB_TOKEN = "ghp_" + "T0kenOfTheGitHubAccount0123456789ab"
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(params=ENGINES)
def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'calls.db'}"
    else:
        from tests.conftest import fresh_postgres_database

        with fresh_postgres_database() as url:  # a database of its own: call ids and lists start empty
            yield url


@pytest.fixture
def setup(make_app, fake_openai, fake_anthropic):
    """An app over both fakes (anthropic the provider fallback), with an admin key and two client keys."""

    def build(**settings):
        app = make_app(**{**provider_config(openai=fake_openai, anthropic=fake_anthropic), **NO_HEALTH_MEMORY,
                          "PROVIDER_FALLBACKS": ["anthropic"], "RETRY_ATTEMPTS": 1, "GITHUB_TOKEN": GITHUB_TOKEN,
                          **settings})
        secret = hash_secret(app.config)
        keys = {name: service.create_key(service.KeySpec(name, admin=name == "admin"), secret) for name in
                ("admin", "alice", "bob")}
        return app, {name: key for name, (_, key) in keys.items()}, {name: row.id for name, (row, _) in keys.items()}

    return build


def sdk(app, key: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url="http://testserver/v1", max_retries=0,
                         http_client=httpx2.Client(transport=httpx2.WSGITransport(app=app)))


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def calls(app, admin: str, **query) -> list[dict]:
    """Every call the admin page would list (the batch written first), newest first."""
    app.extensions["calls"].rows.flush()
    answer = app.test_client().get("/admin/calls", query_string={"limit": 200, **query}, headers=bearer(admin))
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()["data"]


def tried(call: dict) -> list[tuple]:
    return [(a["provider"], a["model"], a["status"], a["error_type"]) for a in call["attempts"]]


def test_a_plain_answer_and_a_stream_are_logged_as_the_fake_saw_them(setup, fake_openai, database_url):
    app, keys, ids = setup(DATABASE_URL=database_url)
    fake_openai.enqueue(Reply(text="four words in all", prompt_tokens=13, cached_tokens=5),
                        Reply(chunks=["a", "b", "c"], prompt_tokens=17, reasoning="thought first"))
    client = sdk(app, keys["alice"])
    whole = client.chat.completions.create(model="gpt-4o-mini", messages=HI, user="end-user-1")
    streamed = list(client.chat.completions.create(
        model="gpt-4o-mini", messages=HI, stream=True, stream_options={"include_usage": True},
        extra_headers={"X-Request-ID": "stream-req-1"}))
    stream_row, plain_row = calls(app, keys["admin"])
    sent = fake_openai.requests
    assert [(r.json["model"], bool(r.json.get("stream"))) for r in sent] == \
        [("gpt-4o-mini", False), ("gpt-4o-mini", True)]

    assert plain_row["key_id"] == ids["alice"] and plain_row["key_name"] == "alice"
    assert (plain_row["front_door"], plain_row["requested_model"], plain_row["user_id"]) == \
        ("/v1/chat/completions", "gpt-4o-mini", "end-user-1")
    assert (plain_row["provider"], plain_row["model"], plain_row["deployment"]) == ("openai", "gpt-4o-mini",
                                                                                    "openai/gpt-4o-mini")
    usage = whole.usage
    assert (plain_row["prompt_tokens"], plain_row["cached_tokens"], plain_row["completion_tokens"]) == \
        (usage.prompt_tokens, usage.prompt_tokens_details.cached_tokens, usage.completion_tokens) == (13, 5, 4)
    assert (plain_row["status"], plain_row["error_type"], plain_row["streamed"], plain_row["ttft_ms"]) == \
        (200, None, False, None)
    assert plain_row["cost_usd"] > 0 and plain_row["latency_ms"] >= plain_row["attempts"][0]["duration_ms"]
    assert tried(plain_row) == [("openai", "gpt-4o-mini", 200, None)] and plain_row["fallbacks"] == 0

    usage = streamed[-1].usage
    assert stream_row["request_id"] == "stream-req-1" and stream_row["streamed"] is True
    assert (stream_row["prompt_tokens"], stream_row["completion_tokens"], stream_row["reasoning_tokens"]) == \
        (usage.prompt_tokens, usage.completion_tokens, usage.completion_tokens_details.reasoning_tokens)
    assert usage.completion_tokens_details.reasoning_tokens > 0
    assert 0 <= stream_row["ttft_ms"] <= stream_row["latency_ms"]
    assert tried(stream_row) == [("openai", "gpt-4o-mini", 200, None)]
    assert stream_row["created_at"] > plain_row["created_at"]


def test_a_retry_of_the_same_deployment(setup, fake_openai, database_url):
    app, keys, _ = setup(DATABASE_URL=database_url, PROVIDER_FALLBACKS=[])
    answer = Reply(text="second time lucky", prompt_tokens=9)
    fake_openai.enqueue(Reply(status=500), answer)
    with app.test_client().post("/chat", json={"messages": HI}, headers=bearer(keys["alice"])) as retried:
        assert retried.status_code == 200
    [retry] = calls(app, keys["admin"])
    assert [("openai", r.json["model"]) for r in fake_openai.requests] == [("openai", "gpt-4o-mini")] * 2
    assert tried(retry) == [("openai", "gpt-4o-mini", 500, "transient_failure"), ("openai", "gpt-4o-mini", 200, None)]
    assert retry["fallbacks"] == 0 and retry["provider"] == "openai" and retry["status"] == 200
    first, second = retry["attempts"]
    assert second["offset_ms"] >= first["offset_ms"] + first["duration_ms"]
    assert (retry["prompt_tokens"], retry["completion_tokens"]) == \
        (answer.prompt_tokens, answer.output_tokens) == (9, 3)


def test_an_upstream_refusal_of_the_request_is_its_one_attempt(setup, fake_openai):
    app, keys, _ = setup()
    fake_openai.enqueue(Reply(status=400, error_message="Invalid value for 'temperature'."))
    refused = app.test_client().post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": HI},
                                     headers=bearer(keys["alice"]))
    refused.close()
    [call] = calls(app, keys["admin"])
    assert [r.json["model"] for r in fake_openai.requests] == ["gpt-4o-mini"]
    assert tried(call) == [("openai", "gpt-4o-mini", 400, "caller_fault")]
    assert (call["status"], call["error_type"]) == (refused.status_code, "upstream_rejected_request") == \
        (400, "upstream_rejected_request")


def test_a_fallback_across_vendors_and_a_failure(setup, fake_openai, fake_anthropic, database_url):
    app, keys, _ = setup(DATABASE_URL=database_url)
    client = app.test_client()
    fake_openai.set_model_reply("gpt-4o-mini", Reply(status=503))
    fake_anthropic.enqueue(Reply(chunks=["from ", "claude"], prompt_tokens=21))
    with client.post("/chat", json={"messages": HI, "stream": True}, headers=bearer(keys["alice"])) as fell_back:
        assert "claude" in fell_back.get_data(as_text=True)
    asked = [("openai", r.json["model"]) for r in fake_openai.requests] + \
        [("anthropic", r.json["model"]) for r in fake_anthropic.requests]
    fake_openai.reset()
    fake_anthropic.reset()
    fake_openai.default_reply = fake_anthropic.default_reply = Reply(status=500)
    failed = client.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": HI},
                         headers=bearer(keys["bob"]))
    failed.close()
    failed_asked = [("openai", r.json["model"]) for r in fake_openai.requests] + \
        [("anthropic", r.json["model"]) for r in fake_anthropic.requests]
    failure, fallback = calls(app, keys["admin"])

    assert [(a["provider"], a["model"]) for a in fallback["attempts"]] == asked == \
        [("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-5-5")]
    assert tried(fallback)[0] == ("openai", "gpt-4o-mini", 503, "transient_failure")
    assert (fallback["provider"], fallback["deployment"], fallback["fallbacks"]) == \
        ("anthropic", "anthropic/claude-sonnet-5-5", 1)
    assert (fallback["prompt_tokens"], fallback["completion_tokens"], fallback["streamed"]) == (21, 2, True)

    assert failed.status_code == failure["status"] >= 500
    assert failure["error_type"] == failed.get_json()["error"]["code"]
    assert [(a["provider"], a["model"]) for a in failure["attempts"]] == failed_asked
    assert all(a["status"] == 500 and a["error_type"] == "transient_failure" for a in failure["attempts"])
    assert (failure["provider"], failure["model"], failure["prompt_tokens"], failure["cost_usd"]) == (None, None, 0, 0)
    assert len(failure["attempts"]) == len(failed_asked) >= 2


def stored_payloads() -> list[bytes]:
    with database.connection_context():
        rows = CallRecord.select(CallRecord.request_payload, CallRecord.response_payload).tuples()
        return [zlib.decompress(bytes(blob)) for row in rows for blob in row if blob is not None]


def test_payloads_keep_no_secret(setup, fake_openai):
    app, keys, _ = setup(LOG_PAYLOADS="all")
    vendor_key = app.config["OPENAI_API_KEY"]
    fake_openai.default_reply = lambda request: Reply(text=f"you sent {request.json['messages'][0]['content']}")
    leaked = f"vendor {vendor_key} client {keys['bob']} github {GITHUB_TOKEN} header Bearer abcdefghijkl"
    for stream in (False, True):
        sdk_client = sdk(app, keys["alice"])
        answer = sdk_client.chat.completions.create(model="gpt-4o-mini", stream=stream,
                                                    messages=[{"role": "user", "content": leaked}])
        if stream:
            list(answer)
    stream_row, plain_row = calls(app, keys["admin"])
    detail = app.test_client().get(f"/admin/calls/{plain_row['id']}", headers=bearer(keys["admin"])).get_json()
    assert detail["payload"]["request"]["messages"][0]["content"] == \
        "vendor *** client ais-*** github *** header Bearer ***"
    assert "github *** header" in detail["payload"]["response"]["choices"][0]["message"]["content"]
    streamed = app.test_client().get(f"/admin/calls/{stream_row['id']}", headers=bearer(keys["admin"])).get_json()
    assert "data: " in streamed["payload"]["response"] and "ais-***" in streamed["payload"]["response"]
    stored = stored_payloads()
    assert len(stored) == 4
    for secret in (vendor_key, keys["bob"], keys["alice"], GITHUB_TOKEN):
        assert all(secret.encode() not in body for body in stored)
    # a bearer token is recognised by its shape, in one piece: the streamed answer sends it as two events
    assert all(b"abcdefghijkl" not in body for body in stored[:3])


def test_payloads_are_cut_and_kept_for_errors_only_when_asked(setup, fake_openai):
    app, keys, _ = setup(LOG_PAYLOADS="errors", LOG_PAYLOADS_MAX_BYTES=300)
    client = app.test_client()
    ask = {"question": "What is 2+2?", "client_id": "c1", "user_id": "u1"}
    with client.post("/v1/ask", json=ask, headers=bearer(keys["alice"])) as fine:
        assert fine.status_code == 200
    with client.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": HI * 40, "n": "x"},
                     headers=bearer(keys["alice"])) as invalid:
        assert invalid.status_code == 400
    refused, answered = calls(app, keys["admin"])
    admin = bearer(keys["admin"])
    assert client.get(f"/admin/calls/{answered['id']}", headers=admin).get_json()["payload"] is None
    payload = client.get(f"/admin/calls/{refused['id']}", headers=admin).get_json()["payload"]
    assert payload["request"].endswith("[cut: LOG_PAYLOADS_MAX_BYTES reached]")
    assert len(payload["request"].encode()) < 300 + 50
    assert payload["response"]["error"]["param"] == "n"
    assert (refused["status"], refused["error_type"], refused["attempts"]) == (400, "validation_error", [])


def test_old_payloads_then_old_calls_are_pruned_by_the_nightly_job(setup, fake_openai):
    app, keys, _ = setup(LOG_PAYLOADS="all", LOG_PAYLOADS_RETENTION_DAYS=7, CALL_LOG_RETENTION_DAYS=30)
    for _ in range(3):
        sdk(app, keys["alice"]).chat.completions.create(model="gpt-4o-mini", messages=HI)
    ids = [call["id"] for call in calls(app, keys["admin"])]
    with database.connection_context():
        for call_id, age in zip(ids, (1, 8, 31)):
            CallRecord.update(created_at=utcnow() - timedelta(days=age)).where(CallRecord.id == call_id).execute()
    assert app.extensions["housekeeping_jobs"]["prune_calls"].call_local() == (1, 2)
    admin = bearer(keys["admin"])
    kept = {call["id"]: app.test_client().get(f"/admin/calls/{call['id']}", headers=admin).get_json()["payload"]
            for call in calls(app, keys["admin"])}
    assert list(kept) == ids[:2] and kept[ids[0]] is not None and kept[ids[1]] is None


def test_each_key_reads_its_own_calls_and_no_other(setup, fake_openai):
    app, keys, ids = setup()
    sdk(app, keys["alice"]).chat.completions.create(model="gpt-4o-mini", messages=HI)
    sdk(app, keys["bob"]).embeddings.create(model="text-embedding-3-small", input=["one", "two"])
    app.extensions["calls"].rows.flush()
    client = app.test_client()
    alice = client.get("/v1/key/calls", headers=bearer(keys["alice"])).get_json()["data"]
    bob = client.get("/v1/key/calls", headers=bearer(keys["bob"])).get_json()["data"]
    assert [c["key_id"] for c in alice] == [ids["alice"]] and [c["key_id"] for c in bob] == [ids["bob"]]
    assert bob[0]["front_door"] == "/v1/embeddings" and bob[0]["prompt_tokens"] > 0
    own = client.get(f"/v1/key/calls/{alice[0]['id']}", headers=bearer(keys["alice"]))
    assert own.status_code == 200 and own.get_json()["payload"] is None
    other = client.get(f"/v1/key/calls/{alice[0]['id']}", headers=bearer(keys["bob"]))
    assert other.status_code == 404 and other.get_json()["error"]["code"] == "call_not_found"
    assert client.get("/v1/key/calls", query_string={"key_id": ids["alice"]},
                      headers=bearer(keys["bob"])).status_code == 404
    assert client.get("/admin/calls", headers=bearer(keys["alice"])).status_code == 403
    assert client.get(f"/admin/calls/{alice[0]['id']}", headers=bearer(keys["bob"])).status_code == 403
    assert client.get("/admin/calls/99999999", headers=bearer(keys["admin"])).status_code == 404
    assert client.get("/v1/key/calls").status_code == 401


def test_filters_and_keyset_pages(setup, fake_openai, database_url):
    app, keys, ids = setup(DATABASE_URL=database_url)
    client = app.test_client()
    for index, (key, model) in enumerate([("alice", "gpt-4o-mini"), ("alice", "gpt-4o"), ("bob", "gpt-4o-mini"),
                                          ("bob", "gpt-3.5-turbo"), ("alice", "gpt-4o-mini")]):
        invalid = {"temperature": "hot"} if index == 3 else {}  # a 400: refused before any attempt
        client.post("/v1/chat/completions", json={"model": model, "messages": HI, **invalid},
                    headers={**bearer(keys[key]), "X-Request-ID": f"req-{index}"}).close()
    everything = calls(app, keys["admin"])
    assert [c["request_id"] for c in everything] == [f"req-{i}" for i in (4, 3, 2, 1, 0)]

    def listed(**query) -> list[str]:
        return [c["request_id"] for c in calls(app, keys["admin"], **query)]

    assert listed(key_id=ids["bob"]) == ["req-3", "req-2"]
    assert listed(model="gpt-4o") == ["req-1"] and listed(model="gpt-3.5-turbo") == ["req-3"]
    assert listed(status="error") == ["req-3"] and listed(status="200") == ["req-4", "req-2", "req-1", "req-0"]
    assert listed(provider="openai") == ["req-4", "req-2", "req-1", "req-0"]
    assert listed(request_id="req-2") == ["req-2"]
    middle = everything[2]["created_at"]
    assert listed(since=middle) == ["req-4", "req-3", "req-2"] and listed(until=middle) == ["req-2", "req-1", "req-0"]
    assert listed(since=isoformat(utcnow() + timedelta(hours=1))) == []

    pages, cursor = [], None
    while True:
        page = client.get("/admin/calls", query_string={"limit": 2, **({"cursor": cursor} if cursor else {})},
                          headers=bearer(keys["admin"])).get_json()
        pages.append([c["request_id"] for c in page["data"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == [["req-4", "req-3"], ["req-2", "req-1"], ["req-0"]]
    mine = client.get("/v1/key/calls", query_string={"limit": 1, "model": "gpt-4o-mini"},
                      headers=bearer(keys["alice"])).get_json()
    assert [c["request_id"] for c in mine["data"]] == ["req-4"] and mine["next_cursor"]
    bad = client.get("/admin/calls", query_string={"cursor": "bm9wZQ", "status": "2000"},
                     headers=bearer(keys["admin"]))
    assert bad.status_code == 400
    bad = client.get("/admin/calls", query_string={"cursor": "bm9wZQ"}, headers=bearer(keys["admin"]))
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "invalid_cursor"


def test_the_call_log_can_be_turned_off(setup, fake_openai):
    app, keys, _ = setup(CALL_LOG=False)
    sdk(app, keys["alice"]).chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert calls(app, keys["admin"]) == []
    assert app.extensions["calls"].rows.flush() == 0


def test_a_gunicorn_gevent_worker_writes_its_calls_in_the_background(live_server, fake_openai):
    server = live_server(**provider_config(openai=fake_openai), USAGE_FLUSH_S=0.2)
    fake_openai.enqueue(Reply(chunks=["one", "two"], prompt_tokens=7), Reply(text="whole answer", prompt_tokens=5))
    with requests.post(f"{server.url}/v1/chat/completions", stream=True, timeout=20, json={
            "model": "gpt-4o-mini", "messages": HI, "stream": True, "stream_options": {"include_usage": True}}) as sse:
        assert "[DONE]" in sse.text
    assert requests.post(f"{server.url}/chat", json={"messages": HI}, timeout=20).status_code == 200
    deadline, found = time.monotonic() + 10, []
    while len(found) < 2 and time.monotonic() < deadline:  # written by the worker's flusher, within its interval
        time.sleep(0.1)
        found = requests.get(f"{server.url}/v1/key/calls", timeout=5).json()["data"]
    plain, streamed = found
    assert (streamed["front_door"], streamed["streamed"], streamed["prompt_tokens"], streamed["completion_tokens"]) \
        == ("/v1/chat/completions", True, 7, 2)
    assert 0 <= streamed["ttft_ms"] <= streamed["latency_ms"]
    assert tried(streamed) == [("openai", "gpt-4o-mini", 200, None)]
    assert (plain["front_door"], plain["streamed"], plain["prompt_tokens"], plain["completion_tokens"]) == \
        ("/chat", False, 5, 2)
