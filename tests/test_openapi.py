"""The OpenAPI document is honest: every route is in it, and a real answer of every documented
operation, a success and an error each, matches the body the document declares for its status and
content type (validated by openapi-core, which also checks the document itself against OpenAPI 3.0)."""
from __future__ import annotations

import json
from typing import Any

import pytest
from openapi_core import Config, OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

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
    for path in ("/", "/openapi.json", "/docs", "/redoc", "/ui", "/ui/", "/ping", "/v1/health", "/api/v1/health",
                 "/metrics", "/v1/models", "/api/v1/models", "/health"):
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
    fake_openai.enqueue(Reply(status=400, error_message="This model's maximum context length is exceeded."))
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
    admin = {"Authorization": f"Bearer {make_admin_key(app)}"}
    call("GET", "/admin/keys", expect=401)
    call("GET", "/admin/keys", headers=admin, expect=200)
    made = call("POST", "/admin/keys", json={"name": "docs", "rpm": 10}, headers=admin, expect=201)
    call("POST", "/admin/keys", json={"name": ""}, headers=admin, expect=400)
    call("GET", f"/admin/keys/{made['id']}", headers=admin, expect=200)
    call("GET", "/admin/keys/nobody", headers=admin, expect=404)
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


def server_sent_events(body: bytes) -> str:
    """An SSE body as the document's `string`, once every event is a `data:` line of JSON (or the
    OpenAI stream's `[DONE]`), maybe named by an `event:` line, or a comment."""
    text = body.decode("utf-8")
    for line in filter(None, text.splitlines()):
        assert line.startswith(("data: ", ":", "event: ")), line
        if line.startswith("data: ") and line != "data: [DONE]":
            assert isinstance(json.loads(line[6:]), dict), line
    return text


class ResponseChecker:
    """Sends requests through the test client, validates each answer against the document, and keeps
    which operations answered a success and an error."""

    def __init__(self, app, document: dict[str, Any]):
        self.client = app.test_client()
        self.urls = app.url_map.bind("localhost")
        self.document = document
        self.openapi = OpenAPI.from_dict(document, config=Config(
            extra_media_type_deserializers={"text/event-stream": server_sent_events}))
        self.successes: set[tuple[str, str]] = set()
        self.failures: set[tuple[str, str]] = set()

    def call(self, method: str, url: str, *, expect: int, streamed: bool = False, **kwargs: Any) -> Any:
        response = self.client.open(url, method=method, **kwargs)
        response.get_data()
        assert response.status_code == expect, (method, url, response.status_code, response.get_data(as_text=True))
        assert (response.mimetype == "text/event-stream") is streamed, (method, url, response.mimetype)
        sent = Request(EnvironBuilder(url, method=method, **kwargs).get_environ())  # the test client's was read
        self.openapi.validate_response(WerkzeugOpenAPIRequest(sent), WerkzeugOpenAPIResponse(response))
        rule, _ = self.urls.match(url.split("?")[0], method=method, return_rule=True)
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
    from jsonschema import ValidationError
    from openapi_schema_validator import OAS30Validator

    spec = {**document["components"]["schemas"][schema], "components": document["components"]}
    with pytest.raises(ValidationError):
        OAS30Validator(spec).validate(body)
