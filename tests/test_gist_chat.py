"""`POST /chat/gist`: structured output from the provider fakes, validated, retried once, carried out
on the fake GitHub."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from app.core.jsontext import GrowingField
from app.gists.chat import ACTION_JSON_SCHEMA, InvalidAction, parse_action
from tests.conftest import provider_config
from tests.fakes import Reply
from tests.fakes.github_api import DEFAULT_TOKEN, FakeGitHub

ASK = {"messages": [{"role": "user", "content": "Save my hello world script as a gist."}]}
EXPLANATION = 'You asked for a "hello" script;\nI am creating hello.py. \U0001F600'


def action(**changes: Any) -> dict[str, Any]:
    base = {"explanation": EXPLANATION, "action": "create", "gist_id": None, "description": "Hello world",
            "public": False, "files": [{"filename": "hello.py", "content": "print('hello')", "new_filename": None}]}
    return {**base, **changes}


def reply(**changes: Any) -> Reply:
    return Reply(text=json.dumps(action(**changes)))


@pytest.fixture
def fake_github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        yield fake


@pytest.fixture
def app(make_app, fake_openai, fake_anthropic, fake_github):
    return make_app(GITHUB_TOKEN=DEFAULT_TOKEN, GITHUB_API_URL=fake_github.url,
                    **provider_config(openai=fake_openai, anthropic=fake_anthropic))


def events(response) -> list[dict[str, Any]]:
    assert response.mimetype == "text/event-stream"
    text = response.get_data(as_text=True)
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


def test_a_valid_create_makes_the_gist_and_records_it(client, fake_openai, fake_github):
    fake_openai.enqueue(reply())
    response = client.post("/chat/gist", json=ASK, headers={"X-Client-Id": "chat-user"})
    assert response.status_code == 201, response.json
    body = response.json
    assert body["action"] == "create" and body["gist_id"] in fake_github.gists
    assert body["html_url"].endswith(body["gist_id"]) and body["explanation"] == EXPLANATION
    assert body["files"][0]["content"] == "print('hello')" and body["validation_retries"] == 0
    assert (body["provider"], body["model"]) == ("openai", "gpt-4o-mini")
    sent = fake_openai.requests[-1].json
    assert sent["response_format"]["json_schema"]["name"] == "gist_action"
    assert sent["messages"][0]["role"] == "system" and sent["messages"][-1] == ASK["messages"][0]
    revision = client.get(f"/gists/local/{body['gist_id']}").json["revisions"][0]
    assert (revision["endpoint"], revision["client_id"]) == ("POST /chat/gist", "chat-user")
    assert revision["details"]["model"] == "gpt-4o-mini" and revision["details"]["explanation"] == EXPLANATION


def test_a_valid_update_changes_the_named_gist_and_the_prompt_lists_recent_gists(client, fake_openai,
                                                                                 fake_github):
    gist = client.post("/gists", json={"description": "notes", "files": [{"filename": "a.md", "content": "a"}]}).json
    fake_openai.enqueue(reply(action="update", gist_id=gist["id"], description=None, public=None, files=[
        {"filename": "a.md", "content": "# A", "new_filename": None},
        {"filename": "b.md", "content": "# B", "new_filename": None}]))
    response = client.post("/chat/gist", json=ASK)
    assert response.status_code == 200, response.json
    assert response.json["action"] == "update" and response.json["gist_id"] == gist["id"]
    assert {f["filename"]: f["content"] for f in response.json["files"]} == {"a.md": "# A", "b.md": "# B"}
    assert response.json["description"] == "notes"
    assert f'{gist["id"]}: "notes" files: a.md' in fake_openai.requests[-1].json["messages"][0]["content"]


def test_invalid_json_then_valid_is_retried_once_with_the_error(client, fake_openai, fake_github):
    fake_openai.enqueue(Reply(text="Sure! Here is your gist.", prompt_tokens=40, cached_tokens=8),
                        Reply(text=reply().text, prompt_tokens=60, cached_tokens=16))
    response = client.post("/chat/gist", json=ASK)
    assert response.status_code == 201, response.json
    usage = response.json["usage"]  # both answers' tokens, the cached ones too
    assert (usage["prompt_tokens"], usage["prompt_tokens_details"]["cached_tokens"]) == (100, 24)
    assert response.json["validation_retries"] == 1 and len(fake_github.gists) == 1
    retry = fake_openai.requests[-1].json["messages"]
    assert retry[-2] == {"role": "assistant", "content": "Sure! Here is your gist."}
    assert retry[-1]["role"] == "user" and "Not valid JSON" in retry[-1]["content"]


@pytest.mark.parametrize("first, second, problem", [
    (Reply(text="not json"), Reply(text="still not json"), "Not valid JSON"),
    (reply(action="delete"), reply(action="destroy"), "action: Must be one of"),
    (reply(files=[]), reply(files=[{"filename": "a/b.py", "content": "x", "new_filename": None}]),
     "files.0.filename: A filename must not contain '/'."),
    (reply(action="update"), reply(action="update", gist_id="../user/repos"), "gist_id"),
])
def test_invalid_twice_is_a_502_saying_what_was_wrong_and_github_sees_nothing(client, fake_openai, fake_github,
                                                                              first, second, problem):
    fake_openai.enqueue(first, second)
    response = client.post("/chat/gist", json=ASK)
    assert response.status_code == 502, response.json
    error = response.json["error"]
    assert error["code"] == "invalid_model_output" and problem in error["message"]
    assert "no gist was changed" in error["message"] and error["errors"] and error["first_errors"]
    assert fake_github.requests == [] and len(fake_openai.requests) == 2
    assert client.get("/gists/local").json["gists"] == []


def test_an_update_of_a_missing_gist_is_404(client, fake_openai, fake_github):
    fake_openai.enqueue(reply(action="update", gist_id="0123456789abcdef0123456789abcdef"))
    response = client.post("/chat/gist", json=ASK)
    assert response.status_code == 404 and fake_github.gists == {}


def test_anthropic_answers_through_structured_output(client, fake_anthropic, fake_github):
    fake_anthropic.enqueue(Reply(text=json.dumps(action())))
    response = client.post("/chat/gist", json={**ASK, "provider": "claude"})
    assert response.status_code == 201, response.json
    assert response.json["provider"] == "anthropic" and response.json["gist_id"] in fake_github.gists
    sent = fake_anthropic.requests[-1].json
    assert sent["output_config"] == {"format": {"type": "json_schema", "schema": ACTION_JSON_SCHEMA["schema"]}}


def test_bad_requests(client, fake_openai):
    assert client.post("/chat/gist", json={"messages": []}).status_code == 400
    assert client.post("/chat/gist", json={"messages": [{"role": "robot", "content": "x"}]}).status_code == 400
    assert client.post("/chat/gist", json={**ASK, "provider": "nope"}).status_code == 404
    assert fake_openai.requests == []


# -- streaming -------------------------------------------------------------------------------------------


def test_stream_shows_the_explanation_then_the_gist_then_done(client, fake_openai, fake_github):
    fake_openai.enqueue(Reply(text="no json here", prompt_tokens=40, cached_tokens=8),
                        Reply(text=reply().text, prompt_tokens=60, cached_tokens=16))
    stream = events(client.post("/chat/gist", json={**ASK, "stream": True}))
    kinds = [e["type"] for e in stream]
    assert kinds[0] == "start" and kinds[-2:] == ["gist", "done"]
    assert kinds.index("retry") < kinds.index("start", 1) < kinds.index("delta")
    assert "".join(e["content"] for e in stream if e["type"] == "delta") == EXPLANATION
    gist = stream[-2]
    assert gist["action"] == "create" and gist["gist_id"] in fake_github.gists and gist["validation_retries"] == 1
    assert stream[-1]["usage"]["total_tokens"] == gist["usage"]["total_tokens"] > 0
    assert stream[-1]["usage"]["prompt_tokens_details"]["cached_tokens"] == 24 == \
        gist["usage"]["prompt_tokens_details"]["cached_tokens"]


def test_stream_invalid_twice_ends_with_a_502_error_event_and_no_write(client, fake_openai, fake_github):
    fake_openai.enqueue(Reply(text="{}"), Reply(text="[]"))
    stream = events(client.post("/chat/gist", json={**ASK, "stream": True}))
    assert [e["type"] for e in stream] == ["start", "retry", "start", "error"]
    assert stream[-1]["status"] == 502 and stream[-1]["code"] == "invalid_model_output"
    assert fake_github.requests == []


def test_stream_reports_githubs_refusal_as_an_error_event(client, fake_openai, fake_github):
    fake_openai.enqueue(reply())
    fake_github.set_quota(0, reset_in=600)
    stream = events(client.post("/chat/gist", json={**ASK, "stream": True}))
    assert stream[-1]["type"] == "error" and stream[-1]["status"] == 429 and stream[-1]["retry_after"] >= 600


def test_stream_from_anthropic_structured_output(client, fake_anthropic, fake_github):
    fake_anthropic.enqueue(Reply(chunks=[json.dumps(action())[:10], json.dumps(action())[10:]]))
    stream = events(client.post("/chat/gist", json={**ASK, "stream": True, "provider": "anthropic"}))
    assert "".join(e["content"] for e in stream if e["type"] == "delta") == EXPLANATION
    assert stream[-2]["type"] == "gist" and stream[-2]["gist_id"] in fake_github.gists


def test_stream_whose_providers_all_fail_first_is_a_plain_http_error(client, fake_openai, fake_github):
    fake_openai.default_reply = Reply(status=401, error_message="Incorrect API key provided.")
    response = client.post("/chat/gist", json={**ASK, "stream": True})
    assert response.status_code == 502 and response.mimetype == "application/json"
    assert fake_github.requests == []


# -- the pieces ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 3, 7, 1000])
def test_explanation_stream_decodes_the_field_from_any_split(size):
    text = json.dumps({"action": "create", "files": [{"explanation": "nested, not shown"}],
                       "explanation": EXPLANATION, "description": "d"})
    for encoded in (text, json.dumps(json.loads(text), ensure_ascii=False)):
        extractor = GrowingField("explanation")
        shown = "".join(extractor.feed(encoded[i:i + size]) for i in range(0, len(encoded), size))
        assert shown == EXPLANATION


def test_parse_action_tolerates_a_code_fence_and_reports_nested_errors():
    assert parse_action("```json\n" + json.dumps(action()) + "\n```")["action"] == "create"
    with pytest.raises(InvalidAction) as raised:
        parse_action(json.dumps(action(files=[{"filename": "", "content": "x", "new_filename": None}])))
    assert "files.0.filename" in str(raised.value)


def test_a_json_object_inside_prose_is_accepted(client, fake_openai, fake_github):
    """Models served without a JSON mode (and the echoing fake of the docs) wrap the object in prose."""
    fake_openai.default_reply = fake_openai.echo_reply
    response = client.post("/chat/gist", json={"messages": [{"role": "user", "content": json.dumps(action())}]})
    assert response.status_code == 201, response.json
    assert response.json["gist_id"] in fake_github.gists


def test_a_real_gevent_server_streams_the_action_and_records_it(live_server, fake_openai, fake_github):
    server = live_server(GITHUB_TOKEN=DEFAULT_TOKEN, GITHUB_API_URL=fake_github.url,
                         **provider_config(openai=fake_openai))
    fake_openai.enqueue(Reply(text="```json\n{\"explanation\": "), reply())  # invalid, then valid
    with requests.post(f"{server.url}/chat/gist", json={**ASK, "stream": True}, stream=True, timeout=30) as answer:
        lines = [line for line in answer.iter_lines(decode_unicode=True) if line.startswith("data: ")]
    stream = [json.loads(line[6:]) for line in lines]
    assert [e["type"] for e in stream if e["type"] != "delta"] == ["start", "retry", "start", "gist", "done"]
    gist_id = stream[-2]["gist_id"]
    assert gist_id in fake_github.gists
    record = requests.get(f"{server.url}/gists/local/{gist_id}", timeout=10).json()
    assert record["revisions"][0]["endpoint"] == "POST /chat/gist"
    log_text = "".join(p.read_text() for p in Path(server.config["LOG_DIR"]).glob("*"))
    assert DEFAULT_TOKEN not in log_text and "path=/chat/gist status=200" in log_text
