"""The OpenAPI document is honest: every route is in it, and a real answer of every documented
operation, a success and an error each, matches the body the document declares for its status and
content type (validated by openapi-core, which also checks the document itself against OpenAPI 3.0);
a streamed answer is checked event by event, each event's JSON against its `x-contentSchema`."""
from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import ValidationError, validators
from openapi_core import OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from openapi_schema_validator import OAS30Validator
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from app.conversations import service as conversations
from tests.conftest import provider_config
from tests.fakes import Reply
from tests.fakes.github_api import DEFAULT_TOKEN, FakeGitHub

SECRET = "s3cret-for-tasks"
MESSAGES = [{"role": "user", "content": "Hi"}]
ASK = {"question": "What is 2+2?", "client_id": "c1", "user_id": "u1"}
COMPLETION = {"model": "gpt-4o-mini", "messages": MESSAGES}
NUL = "?x=%00"  # every route answers 400 to a NUL character in the URL
NOT_JSON = {"data": "hello", "content_type": "text/plain"}


def task(**changes: Any) -> dict[str, Any]:
    return {"email": "a@example.com", "secret": SECRET, "task": "honest-docs", "round": 1, "nonce": "n1",
            "brief": "Make a page.", "checks": [], "evaluation_url": "http://127.0.0.1:9/notify",
            "attachments": [], **changes}


def gist_action() -> Reply:
    return Reply(text=json.dumps({"explanation": "Saving it.", "action": "create", "gist_id": None,
                                  "description": "Hello", "public": False,
                                  "files": [{"filename": "hello.py", "content": "print(1)", "new_filename": None}]}))


@pytest.fixture
def fake_github():
    with FakeGitHub() as fake:
        yield fake


@pytest.fixture
def app(make_app, fake_openai, fake_github):
    return make_app(**provider_config(openai=fake_openai), GITHUB_TOKEN=DEFAULT_TOKEN, GITHUB_API_URL=fake_github.url,
                    GITHUB_MAX_RATE_WAIT_S=0, VERIFICATION_SECRET=SECRET, NOTIFY_ALLOW_HOSTS=["127.0.0.1"],
                    OPENAI_EMBEDDING_MODELS="text-embedding-3-small")


@pytest.fixture
def document(client) -> dict[str, Any]:
    return client.get("/openapi.json").get_json()


def operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in document["paths"].items() for method in item
            if method != "parameters"}


def openapi_path(rule: str) -> str:
    """`/chat/<provider>` as OpenAPI writes it, `/chat/{provider}`."""
    return "/".join("{" + part[1:-1].split(":")[-1] + "}" if part.startswith("<") else part
                    for part in rule.split("/"))


def test_every_route_is_documented(app, document):
    routes = {(method, openapi_path(rule.rule)) for rule in app.url_map.iter_rules()
              if not rule.rule.startswith(("/static/", "/docs/assets/"))
              for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}}
    assert routes - operations(document) == set()
    assert operations(document) - routes == set()


def test_the_document_is_valid_openapi(document):
    from openapi_spec_validator import validate

    validate(document)


def test_every_documented_operation_answers_as_documented(app, client, document, fake_openai, fake_github):
    """Each request below is real; its answer is validated against the document, and every operation
    must have been seen answering at least one success and one error."""
    checked = ResponseChecker(app, document)
    call = checked.call
    gist = fake_github.add_gist({"a.txt": "A"}, description="seeded")["id"]

    # what this server is, and its documentation
    for path in ("/", "/openapi.json", "/docs", "/redoc", "/ui", "/ui/", "/ui/admin", "/ping", "/v1/health",
                 "/api/v1/health", "/metrics", "/v1/models", "/api/v1/models", "/health"):
        call("GET", path, expect=200)
        call("GET", path + NUL, expect=400)
    call("GET", "/health/gpt", expect=200)
    call("GET", "/health/gemini", expect=503)  # not configured: the status body, not an error
    call("GET", "/health/nobody", expect=404)

    # the gateway's front doors, answered and streamed
    for path in ("/v1/ask", "/api/v1/ask"):
        call("POST", path, json=ASK, expect=200)
        call("POST", path, json={**ASK, "stream": True}, expect=200, streamed=True)
        call("POST", path, json={"client_id": "c1", "user_id": "u1"}, expect=400)
        call("POST", path, **NOT_JSON, expect=415)
    for path in ("/v1/chat/completions", "/api/v1/chat/completions"):
        call("POST", path, json=COMPLETION, expect=200)
        call("POST", path, json={**COMPLETION, "stream": True, "stream_options": {"include_usage": True}},
             expect=200, streamed=True)
        call("POST", path, json={**COMPLETION, "model": "nobody-9"}, expect=404)
    for prefix in ("/v1", "/api/v1"):
        call("POST", f"{prefix}/embeddings", json={"model": "text-embedding-3-small", "input": ["a", "b"]}, expect=200)
        call("POST", f"{prefix}/embeddings", json={"model": "text-embedding-3-small", "input": "a",
                                                   "encoding_format": "base64"}, expect=200)
        call("POST", f"{prefix}/embeddings", json={"model": "nobody-embed", "input": "a"}, expect=404)
        call("GET", f"{prefix}/models/gpt-4o-mini", expect=200)
        call("GET", f"{prefix}/models/nobody-9", expect=404)
    for path in ("/v1/responses", "/api/v1/responses"):
        kept = call("POST", path, json={"model": "gpt-4o-mini", "input": "Hi"}, expect=200)
        call("POST", path, json={"model": "gpt-4o-mini", "input": "Hi", "stream": True}, expect=200, streamed=True)
        call("POST", path, json={"model": "gpt-4o-mini"}, expect=400)
        call("POST", path, json={"model": "gpt-4o-mini", "input": "Hi", "previous_response_id": "resp_0"}, expect=404)
        call("GET", f"{path}/{kept['id']}", expect=200)
        call("GET", f"{path}/{kept['id']}?stream=true", expect=400)
        call("GET", f"{path}/resp_0", expect=404)
        call("GET", f"{path}/{kept['id']}/input_items?order=asc&limit=1", expect=200)
        call("GET", f"{path}/{kept['id']}/input_items?order=sideways", expect=400)
        call("GET", f"{path}/resp_0/input_items", expect=404)
        call("DELETE", f"{path}/{kept['id']}", expect=200)
        call("DELETE", f"{path}/{kept['id']}", expect=404)
    for prefix in ("", "/anthropic"):
        call("POST", f"{prefix}/v1/messages", json={**COMPLETION, "max_tokens": 50}, expect=200)
        call("POST", f"{prefix}/v1/messages", json={**COMPLETION, "max_tokens": 50, "stream": True}, expect=200,
             streamed=True)
        call("POST", f"{prefix}/v1/messages", json=COMPLETION, expect=400)  # max_tokens is required
        call("POST", f"{prefix}/v1/messages/count_tokens", json=COMPLETION, expect=200)
        call("POST", f"{prefix}/v1/messages/count_tokens", json={**COMPLETION, "model": "nobody-9"}, expect=404)
    call("POST", "/chat/gpt", json={"messages": MESSAGES}, expect=200, streamed=True)
    call("POST", "/chat/gpt", json={"messages": MESSAGES, "stream": False}, expect=200)
    call("POST", "/chat/nobody", json={"messages": MESSAGES}, expect=404)
    fake_openai.enqueue(Reply(status=400, error_message="Invalid value for 'stop': too many sequences."))
    call("POST", "/chat/gpt", json={"messages": MESSAGES, "stream": False}, expect=400)

    # stored conversations
    call("POST", "/chat", json={"messages": MESSAGES}, expect=200)
    call("POST", "/chat", json={"message": "Hello", "chat_id": "docs-1"}, expect=200)
    call("POST", "/chat", json={"message": "Again", "chat_id": "docs-1", "stream": True}, expect=200, streamed=True)
    call("POST", "/chat", json={"message": "Hello", "chat_id": "docs-2"}, expect=200)
    call("POST", "/chat", json={"message": "Hello", "chat_id": "not ok!"}, expect=400)
    call("GET", "/chat/history?limit=1", expect=200)
    call("GET", "/chat/history?limit=0", expect=400)
    call("GET", "/chat/history/docs-1", expect=200)
    call("GET", "/chat/search?q=Hello", expect=200)
    call("GET", "/chat/search?q=", expect=400)
    call("PATCH", "/chat/history/docs-1", json={"title": "Renamed"}, expect=200)
    call("PATCH", "/chat/history/docs-1", json={"system_prompt": "Be brief.", "temperature": 0.5}, expect=200)
    history = call("GET", "/chat/history/docs-1", expect=200)["history"]
    answer_id = history["last_message_id"]
    fake_openai.enqueue(Reply(chunks=["Re", "done"], reasoning="Think."))
    call("POST", "/chat", json={"chat_id": "docs-1", "regenerate": answer_id, "after": answer_id, "stream": True},
         expect=200, streamed=True)
    call("POST", "/chat", json={"chat_id": "docs-1", "regenerate": answer_id, "after": answer_id}, expect=409)
    call("POST", f"/chat/history/docs-1/messages/{answer_id}/activate", expect=200)
    call("POST", "/chat/history/docs-1/messages/999999999/activate", expect=404)
    call("GET", f"/chat/history/docs-1/messages/{answer_id}/stream?offset=2", expect=200, streamed=True)
    call("GET", "/chat/history/docs-1/messages/999999999/stream", expect=404)
    turn = conversations.begin_turn("docs-3", "Hi", "", conversations.ChatSettings())
    call("POST", f"/chat/history/docs-3/messages/{turn.answer_id}/stop", expect=200)
    conversations.finish_turn(turn, "", "partial")
    call("POST", f"/chat/history/docs-3/messages/{turn.answer_id}/stop", expect=409)
    call("PATCH", "/chat/history/nobody", json={"title": "Renamed"}, expect=404)
    call("GET", "/chat/history/nobody", expect=404)
    call("DELETE", "/chat/history/docs-1", expect=200)
    call("DELETE", "/chat/history/docs-1", expect=404)
    call("DELETE", "/chat/delete/docs-2", expect=200)
    call("DELETE", "/chat/delete/docs-2", expect=404)

    # gists
    created = call("POST", "/gists", json={"description": "d", "public": False,
                                           "files": [{"filename": "x.txt", "content": "X"}]}, expect=201)
    call("POST", "/gists", **NOT_JSON, expect=415)
    call("GET", "/gists?per_page=1", expect=200)
    call("GET", "/gists?per_page=1000", expect=400)
    call("GET", f"/gists/{gist}", expect=200)
    call("GET", "/gists/0000deadbeef", expect=404)
    call("PATCH", f"/gists/{created['id']}", json={"description": "changed"}, expect=200)
    call("PATCH", "/gists/0000deadbeef", json={"description": "changed"}, expect=404)
    call("GET", "/gists/local?limit=1", expect=200)
    call("GET", "/gists/local?cursor=nonsense", expect=400)
    call("GET", f"/gists/local/{created['id']}", expect=200)
    call("GET", "/gists/local/0000deadbeef", expect=404)
    call("DELETE", f"/gists/{created['id']}", expect=200)
    call("DELETE", f"/gists/{created['id']}", expect=404)
    fake_openai.enqueue(gist_action())
    call("POST", "/chat/gist", json={"messages": MESSAGES}, expect=201)
    fake_openai.enqueue(gist_action())
    call("POST", "/chat/gist", json={"messages": MESSAGES, "stream": True}, expect=200, streamed=True)
    call("POST", "/chat/gist", json={"messages": []}, expect=400)

    # deployments
    accepted = call("POST", "/task", json=task(), expect=200)
    call("POST", "/task", json=task(secret="wrong"), expect=403)
    call("POST", "/revise", json=task(round=2, nonce="n2"), expect=409)  # round 1 is not done
    finish_round_one(app, accepted["task_id"])
    call("POST", "/revise", json=task(round=2, nonce="n2"), expect=200)
    call("GET", "/tasks", expect=200)
    call("GET", "/tasks?status=bogus", expect=400)
    call("GET", f"/tasks/{accepted['task_id']}", expect=200)
    call("GET", "/tasks/nobody", expect=404)

    # keys: the calling key's view in an open server, then the admin API once a key exists
    for path in ("/v1/key/info", "/api/v1/key/info"):
        call("GET", path, expect=200)
    call("GET", "/usage", expect=200)
    call("GET", "/usage?group_by=colour", expect=400)
    call("GET", "/admin/keys", expect=403)  # an open server has no admin
    call("GET", "/admin/upstreams", expect=403)
    call("GET", "/admin/calls", expect=403)
    app.test_client().post("/v1/embeddings", json={"model": "text-embedding-3-small", "input": "x"}).close()
    app.extensions["calls"].rows.flush()  # a call is logged once its response is closed
    made_calls = call("GET", "/v1/key/calls?limit=200", expect=200)["data"]
    call("GET", f"/v1/key/calls/{made_calls[0]['id']}", expect=200)
    call("GET", "/v1/key/calls/0", expect=404)
    call("GET", "/v1/key/calls?status=bogus", expect=400)
    admin = {"Authorization": f"Bearer {make_admin_key(app)}"}
    call("GET", "/admin/calls?status=error", headers=admin, expect=200)
    call("GET", "/admin/calls?cursor=bm9wZQ", headers=admin, expect=400)
    call("GET", f"/admin/calls/{made_calls[-1]['id']}", headers=admin, expect=200)
    call("GET", "/admin/calls/123456789", headers=admin, expect=404)
    call("GET", "/admin/keys", expect=401)
    call("GET", "/admin/keys", headers=admin, expect=200)
    call("GET", "/admin/upstreams", headers=admin, expect=200)
    made = call("POST", "/admin/keys", json={"name": "docs", "rpm": 10}, headers=admin, expect=201)
    call("POST", "/admin/keys", json={"name": ""}, headers=admin, expect=400)
    call("GET", f"/admin/keys/{made['id']}", headers=admin, expect=200)
    call("GET", "/admin/keys/nobody", headers=admin, expect=404)
    changed = call("PATCH", f"/admin/keys/{made['id']}", json={"rpm": None, "daily_tokens": 5000}, headers=admin,
                   expect=200)
    assert changed["limits"] == {"rpm": None, "tpm": None, "daily_tokens": 5000, "monthly_budget_usd": None}
    call("PATCH", f"/admin/keys/{made['id']}", json={"name": "renamed"}, headers=admin, expect=400)
    call("PATCH", "/admin/keys/nobody", json={"rpm": 5}, headers=admin, expect=404)
    rotated = call("POST", f"/admin/keys/{made['id']}/rotate", headers=admin, expect=200)
    call("POST", "/admin/keys/nobody/rotate", headers=admin, expect=404)
    call("POST", f"/admin/keys/{made['id']}/revoke", headers=admin, expect=200)
    call("DELETE", f"/admin/keys/{made['id']}", headers=admin, expect=200)
    call("DELETE", "/admin/keys/nobody", headers=admin, expect=404)
    call("POST", "/admin/keys/nobody/revoke", headers=admin, expect=404)
    call("GET", "/v1/key/info", headers={"Authorization": f"Bearer {rotated['key']}"}, expect=403)  # revoked
    call("GET", "/v1/key/info", headers=admin, expect=200)
    call("GET", "/api/v1/key/info", expect=401)
    call("GET", "/usage", headers=admin, expect=200)
    call("GET", "/usage", expect=401)

    checked.assert_every_operation_seen()


def make_admin_key(app) -> str:
    """An admin key, made as `flask keys create --admin` does; from now on every call needs a key."""
    from app.keys.service import KeySpec, create_key

    with app.app_context(), app.extensions["database"].connection_context():
        return create_key(KeySpec(name="docs-admin", admin=True), app.extensions["key_hash_secret"]())[1]


def finish_round_one(app, task_id: str) -> None:
    """Mark round 1 done in the database, as the worker would have (no worker runs here)."""
    from app.deployments.models import DeployRound

    with app.extensions["database"].connection_context():
        DeployRound.update(status="done", stage_done="notifying").where(DeployRound.task == task_id).execute()


def server_sent_events(body: bytes) -> list[dict[str, str]]:
    """An SSE body's events as a client reads them (and schemathesis checks them): `{"event", "data"}`,
    `event` being `message` where no `event:` line names it; comments (`: heartbeat`) are no events.
    Every line must be an `event: ` or `data: ` line or a comment."""
    events = []
    for block in body.decode("utf-8").split("\n\n"):
        lines = [line.partition(": ") for line in block.split("\n") if line and not line.startswith(":")]
        assert all(name in ("event", "data") and separator for name, separator, _ in lines), block
        names = [value for name, _, value in lines if name == "event"]
        data = [value for name, _, value in lines if name == "data"]
        if data:
            events.append({"event": names[-1] if names else "message", "data": "\n".join(data)})
    return events


def json_payload(validator, schema, instance, _parent):
    """`x-contentSchema` (JSON Schema's `contentSchema`, which OpenAPI 3.0 lacks): the string is JSON
    whose value matches `schema`."""
    if not isinstance(instance, str):
        return
    try:
        value = json.loads(instance)
    except ValueError as exc:
        yield ValidationError(f"{instance!r} is not JSON ({exc})")
        return
    yield from validator.descend(value, schema)


EventValidator = validators.extend(OAS30Validator, {"x-contentSchema": json_payload})


def events_as_documented(document: dict[str, Any], method: str, path: str, body: bytes) -> list[dict[str, Any]]:
    """The events of a streamed 200 answer of `method path`, each checked against the event schema the
    document gives (its `data` parsed as JSON against `x-contentSchema`); each event's JSON payload
    (None for a marker such as `[DONE]`)."""
    content = document["paths"][path][method.lower()]["responses"]["200"]["content"]
    validator = EventValidator({**content["text/event-stream"]["schema"], "components": document["components"]})
    events = server_sent_events(body)
    assert events, body
    for event in events:
        validator.validate(event)
    return [json.loads(event["data"]) if event["data"].startswith("{") else None for event in events]


class ResponseChecker:
    """Sends requests through the test client, validates each answer against the document, and keeps
    which operations answered a success and an error."""

    def __init__(self, app, document: dict[str, Any]):
        self.client = app.test_client()
        self.urls = app.url_map.bind("localhost")
        self.document = document
        self.openapi = OpenAPI.from_dict(document)
        self.successes: set[tuple[str, str]] = set()
        self.failures: set[tuple[str, str]] = set()

    def call(self, method: str, url: str, *, expect: int, streamed: bool = False, **kwargs: Any) -> Any:
        response = self.client.open(url, method=method, **kwargs)
        response.get_data()
        assert response.status_code == expect, (method, url, response.status_code, response.get_data(as_text=True))
        assert (response.mimetype == "text/event-stream") is streamed, (method, url, response.mimetype)
        rule, _ = self.urls.match(url.split("?")[0], method=method, return_rule=True)
        if streamed:  # openapi-core reads a body as one value; a stream is checked event by event
            events_as_documented(self.document, method, openapi_path(rule.rule), response.get_data())
        else:
            sent = Request(EnvironBuilder(url, method=method, **kwargs).get_environ())  # the test client's was read
            self.openapi.validate_response(WerkzeugOpenAPIRequest(sent), WerkzeugOpenAPIResponse(response))
        (self.successes if expect < 400 else self.failures).add((method, openapi_path(rule.rule)))
        return response.get_json(silent=True)

    def assert_every_operation_seen(self) -> None:
        documented = operations(self.document)
        assert documented - self.successes == set(), "operations never seen succeeding"
        assert documented - self.failures == set(), "operations never seen failing"


@pytest.mark.parametrize("body, schema", [
    ({"error": {"message": "m", "type": "t"}, "success": False}, "Error"),  # no code
    ({"error": {"message": "m", "type": "t", "code": "c"}}, "Error"),  # no success
    ({"error": {"message": "m", "type": "t", "code": "c", "param": None}, "success": False}, "OpenAIError"),
    ({"choices": []}, "ChatCompletion"),
])
def test_a_body_that_does_not_match_is_caught(document, body, schema):
    """The validation can fail: a body in the wrong shape for the declared schema is refused."""
    spec = {**document["components"]["schemas"][schema], "components": document["components"]}
    with pytest.raises(ValidationError):
        OAS30Validator(spec).validate(body)


# -- every front door's streamed events, as the document describes them ---------------------------

CALL = [{"name": "lookup", "arguments": {"q": "moon"}}]
THOUGHTFUL = Reply(chunks=["Looking", " it up."], reasoning="Which tool?", tool_calls=CALL)
OPENAI_TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
CLAUDE_TOOLS = [{"name": "lookup", "input_schema": {"type": "object"}}]
RESPONSES_TOOLS = [{"type": "function", "name": "lookup", "parameters": {"type": "object"}}]
CUT = Reply(chunks=["Half", " an", " answer"], reset_after=2, chunk_delay=0.1)  # the connection drops mid-answer
STREAMED = {"messages": MESSAGES, "stream": True}
CLAUDE = {"model": "claude-sonnet-5-5", "max_tokens": 2000, "messages": MESSAGES, "stream": True}


@pytest.mark.parametrize("path, body, fallback, replies, seen", [
    ("/chat/{provider}", {"messages": MESSAGES}, True, [], {"fallback", "start", "delta", "done"}),
    ("/chat/{provider}", {"messages": MESSAGES}, False, [CUT], {"start", "delta", "error"}),
    ("/chat", {"message": "Hi", "chat_id": "events-1", "stream": True}, False, [], {"start", "delta", "done"}),
    ("/chat", STREAMED, False, [CUT], {"start", "delta", "error"}),
    ("/v1/chat/completions", {**COMPLETION, "tools": OPENAI_TOOLS, "stream": True,
                              "stream_options": {"include_usage": True}}, False, [THOUGHTFUL],
     {"role", "reasoning_content", "content", "tool_calls", "finish_reason", "usage", "[DONE]"}),
    ("/v1/chat/completions", {**COMPLETION, "stream": True}, True, [CUT], {"attempts", "content", "error"}),
    ("/v1/ask", {**ASK, "stream": True}, False, [], {"role", "content", "finish_reason", "[DONE]"}),
    ("/v1/messages", {**CLAUDE, "tools": CLAUDE_TOOLS, "thinking": {"type": "enabled", "budget_tokens": 1024}},
     False, [THOUGHTFUL], {"message_start", "content_block_start", "thinking_delta", "text_delta",
                           "input_json_delta", "content_block_stop", "message_delta", "message_stop"}),
    ("/v1/messages", {**COMPLETION, "max_tokens": 50, "tools": CLAUDE_TOOLS, "stream": True}, False, [THOUGHTFUL],
     {"message_start", "content_block_start", "thinking_delta", "text_delta", "input_json_delta",
      "content_block_stop", "message_delta", "message_stop"}),
    ("/v1/messages", {**COMPLETION, "max_tokens": 50, "stream": True}, False, [CUT], {"text_delta", "error"}),
    ("/v1/responses", {"model": "gpt-4o-mini", "input": "Hi", "tools": RESPONSES_TOOLS, "stream": True}, False,
     [THOUGHTFUL], {"response.created", "response.in_progress", "response.output_item.added",
                    "response.content_part.added", "response.output_text.delta", "response.output_text.done",
                    "response.content_part.done", "response.function_call_arguments.delta",
                    "response.function_call_arguments.done", "response.output_item.done", "response.completed"}),
    ("/v1/responses", {"model": "gpt-4o-mini", "input": "Hi", "stream": True}, False, [CUT],
     {"response.output_text.delta", "response.failed"}),
    ("/chat/gist", STREAMED, False, [Reply(text="not json"), gist_action()], {"start", "delta", "retry", "done",
                                                                              "gist"}),
])
def test_every_stream_sends_the_events_its_document_describes(make_app, fake_openai, fake_anthropic, fake_github,
                                                              path, body, fallback, replies, seen):
    """Each front door streams its richest answers (reasoning, tool calls, a fallback, a Claude model's
    own events, a connection cut after the first text, a gist asked for twice), and every event is
    checked against the event schema the document gives for it."""
    app = make_app(**provider_config(openai=fake_openai, anthropic=fake_anthropic), RETRY_ATTEMPTS=0,
                   GITHUB_TOKEN=DEFAULT_TOKEN, GITHUB_API_URL=fake_github.url, GITHUB_MAX_RATE_WAIT_S=0)
    claude = body.get("model", "").startswith("claude")
    (fake_anthropic if claude else fake_openai).enqueue(*replies)
    if fallback:  # the default model fails before answering, so its fallback answers
        fake_openai.set_model_reply("gpt-4o-mini", Reply(status=503))
    client = app.test_client()
    response = client.post(path.replace("{provider}", "gpt"), json=body)
    assert response.status_code == 200 and response.mimetype == "text/event-stream", response.get_data(as_text=True)
    payloads = events_as_documented(client.get("/openapi.json").get_json(), "POST", path, response.get_data())
    assert seen <= set().union(*map(kinds, payloads))


def kinds(payload: dict[str, Any] | None) -> set[str]:
    """What an event is: its `type` (and its delta's), or for an OpenAI chunk what it carries."""
    if payload is None:
        return {"[DONE]"}
    if "type" in payload:
        delta = payload.get("delta")
        return {payload["type"], *([delta["type"]] if isinstance(delta, dict) and "type" in delta else [])}
    if "error" in payload:
        return {"error"}
    choices = payload["choices"]
    return ({key for choice in choices for key in choice["delta"]} | {key for key in ("usage", "attempts")
                                                                       if key in payload}
            | ({"finish_reason"} if any(choice["finish_reason"] for choice in choices) else set()))


@pytest.mark.parametrize("path, body", [
    ("/v1/chat/completions", b'data: {"id": "chatcmpl-1", "object": "chat.completion.chunk"}\n\n'),  # no choices
    ("/v1/chat/completions", b'data: {"error": {"message": "m"}}\n\n'),
    ("/chat/{provider}", b"data: [DONE]\n\n"),  # only OpenAI's stream ends with a marker
    ("/chat/{provider}", b'data: {"type": "delta", "content": 1}\n\n'),
    ("/chat/{provider}", b'event: delta\ndata: {"type": "delta", "content": "a"}\n\n'),
    ("/chat/gist", b"data: not json\n\n"),
    ("/v1/messages", b'event: pong\ndata: {"type": "pong"}\n\n'),
    ("/v1/messages", b'event: content_block_delta\ndata: {"type": "content_block_delta", "delta": {}}\n\n'),
    ("/v1/responses", b'event: response.completed\ndata: {"type": "response.completed", "sequence_number": 3}\n\n'),
])
def test_an_event_that_does_not_match_is_caught(document, path, body):
    """The event check can fail: an event of the wrong name or shape, for the stream it is in, is refused."""
    with pytest.raises(ValidationError):
        events_as_documented(document, "POST", path, body)


@pytest.mark.parametrize("path, body", [
    ("/v1/ask", {"question": "Hi", "client_id": "c1", "user_id": "u1", "stream": "yes"}),
    ("/v1/ask", {"question": "Hi", "client_id": "c1", "user_id": "u1", "stream": 0}),
    ("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}], "stream": 1}),
    ("/v1/messages", {"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "Hi"}],
                      "stream": "true"}),
    ("/v1/responses", {"model": "gpt-4o-mini", "input": "Hi", "store": "on"}),
    ("/chat", {"message": "Hi", "stream": "yes"}),
    ("/gists", {"files": [{"filename": "a.txt", "content": "A"}], "public": 1}),
])
def test_a_boolean_is_true_or_false_not_yes_or_0(client, path, body):
    """`"stream": "yes"` and `0` were taken as booleans (marshmallow's truthy/falsy sets), which the
    document (`type: boolean`) refuses."""
    response = client.post(path, json=body)
    assert response.status_code == 400, response.get_json()
    field = [name for name, value in body.items() if value in ("yes", 0, 1, "true", "on")][0]
    assert field in json.dumps(response.get_json())


@pytest.mark.parametrize("path, methods", [("/chat/history", {"GET", "HEAD", "OPTIONS"}),
                                           ("/chat/search", {"GET", "HEAD", "OPTIONS"}),
                                           ("/chat/gpt", {"POST", "OPTIONS"})])
def test_options_allows_only_the_documented_methods(client, path, methods):
    """`OPTIONS /chat/history` advertised POST: `/chat/<provider>` matched the name `history`."""
    allowed = client.options(path).headers["Allow"]
    assert {method.strip() for method in allowed.split(",")} == methods
    assert client.post("/chat/history", json={"messages": [{"role": "user", "content": "Hi"}]}).status_code == 405


def test_the_key_is_a_security_scheme_and_every_route_lists_what_a_key_brings(document):
    """The document had no security scheme, and 401/403/429 were missing on most routes, 414 on list
    routes and 429 on `/task` and `/revise`."""
    assert set(document["components"]["securitySchemes"]) == {"bearer", "x-api-key", "x-goog-api-key"}
    assert document["security"] == [{"bearer": []}, {"x-api-key": []}, {"x-goog-api-key": []}]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in ("get", "post", "patch", "delete", "put"):
                continue
            statuses = set(operation["responses"])
            assert {"414", "431"} <= statuses, (method, path)
            if operation.get("security") == []:
                assert path in ("/ping", "/health", "/v1/health", "/api/v1/health", "/ui", "/ui/", "/ui/admin", "/docs",
                                "/openapi.json", "/task", "/revise"), path
            else:
                assert {"401", "403", "429"} <= statuses, (method, path)
    for path in ("/task", "/revise"):
        operation = document["paths"][path]["post"]
        assert operation["security"] == [] and "429" in operation["responses"]
