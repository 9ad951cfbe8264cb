"""schemathesis over `/openapi.json`: every documented operation, generated valid and invalid input,
against the app in process with the fake OpenAI, Anthropic and Gemini as its providers and an admin
key. Checks: no 5xx, every response's status, content type and body as the document says, valid
data accepted (valid as the document's words say too: `as_the_document_words_it`) and invalid
data refused. `make test` runs a
few examples per operation (FUZZ_EXAMPLES, default 5); `make fuzz` runs many more
(docs/reliability.md). schemathesis's own pytest plugin does not run under pytest 9, so each
operation's strategy is driven by hypothesis here."""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.generation.meta import CoveragePhaseData, CoverageScenario
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from app.core.clock import parse_iso
from app.core.paging import encode_cursor
from app.gists.chat import SYSTEM_PROMPT
from app.llm.schemas import THINKING_TYPES
from tests.conftest import NO_HEALTH_MEMORY, base_config, provider_config
from tests.fakes import RecordedRequest, Reply
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.gemini_api import FakeGemini
from tests.fakes.github_api import DEFAULT_TOKEN, FakeGitHub
from tests.fakes.openai_api import FakeOpenAI
from tests.test_openapi import make_admin_key

GIST_PROMPT = SYSTEM_PROMPT.splitlines()[0]
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "5"))
REPEATABLE = "FUZZ_EXAMPLES" not in os.environ  # `make test` draws the same cases each run; `make fuzz` new ones


def no_server_error(ctx: Any, response: Any, case: Any) -> bool | None:
    """`not_a_server_error`, except the documented 503 for a provider this server has not configured
    (Ollama, a LiteLLM proxy), an operator's choice rather than a fault: a call to it is the error
    `not_configured`, and its `/health/{provider}` status says `"configured": false`."""
    if response.status_code == 503:
        body = response.json()
        error = body.get("error") or {}
        if body.get("configured") is False or error.get("code") == "not_configured" or (  # Anthropic's shape:
                error.get("type") == "api_error" and "is not configured" in error.get("message", "")):  # no code
            return None
    return not_a_server_error(ctx, response, case)


CHECKS = [no_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
FULL_CHECKS = [*CHECKS, positive_data_acceptance, negative_data_rejection]


def model_reply(request: RecordedRequest) -> Reply:
    """Each fake model's answer (OpenAI, Claude or Gemini, whichever `provider` a body names): a valid
    gist action to `/chat/gist`'s request for one (so that operation can succeed, and stream its `gist`
    event), the usual text to anything else."""
    if GIST_PROMPT in json.dumps(request.json, ensure_ascii=False):
        return Reply(text=json.dumps({"explanation": "Saved.", "action": "create", "gist_id": None,
                                      "description": "Fuzzed", "public": False,
                                      "files": [{"filename": "a.txt", "content": "A", "new_filename": None}]}))
    return Reply()


@pytest.fixture(scope="module")
def fuzzed_app(tmp_path_factory) -> Iterator[Any]:
    from app import create_app
    from app.core.db import migrate

    with FakeOpenAI() as openai, FakeAnthropic() as anthropic, FakeGemini() as gemini, FakeGitHub() as github:
        openai.default_reply = anthropic.default_reply = gemini.default_reply = model_reply
        vendors = provider_config(openai=openai, anthropic=anthropic, gemini=gemini)
        app = create_app(base_config(tmp_path_factory.mktemp("fuzz"), **NO_HEALTH_MEMORY, **vendors,
                                     GITHUB_TOKEN=DEFAULT_TOKEN, GITHUB_API_URL=github.url, GITHUB_MAX_RATE_WAIT_S=0,
                                     VERIFICATION_SECRET="fuzz-secret"))
        migrate(app.extensions["database"])
        app.config["FUZZ_ADMIN_KEY"] = make_admin_key(app)
        yield app


# A cursor is whatever `next_cursor` this server sent (the document says so): schema-valid data for a list
# carries one of the shape each list reads (a sort key past every row: an empty page), as a client would.
SENT_CURSORS = {"/chat/history": encode_cursor(datetime(2000, 1, 1), "fuzz-chat"),
                "/chat/search": encode_cursor(datetime(2000, 1, 1), "fuzz-chat"),
                "/gists/local": encode_cursor(1),
                "/tasks": encode_cursor(datetime(2000, 1, 1), "fuzz-task"),
                "/admin/calls": encode_cursor(datetime(2000, 1, 1), 1),
                "/v1/key/calls": encode_cursor(datetime(2000, 1, 1), 1)}


def as_a_client_sends(case: Any) -> Any:
    if case.query and case.query.get("cursor") and case.operation.path in SENT_CURSORS:
        case.query["cursor"] = SENT_CURSORS[case.operation.path]
    return case


# Rules across fields, against the clock or about what a vendor takes, which the document states in words
# (a field's or operation's description) because JSON Schema cannot: schema-valid data as a client who read
# them sends it. Each repairs a generated case in place, so `positive_data_acceptance` holds everywhere.
NOT_CLAUDE = "gpt-4o-mini"
NEUTRAL_BLOCKS = {"text", "image", "tool_use", "tool_result", "thinking", "redacted_thinking"}


def message_roles(messages: Any) -> None:
    """A message's fields by its role (`Message`'s description): only an assistant carries tool_calls or
    thinking_blocks and may leave content null (with tool_calls); a tool message names its tool_call_id."""
    calls: set[Any] = set()
    for message in messages if isinstance(messages, list) else ():
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        if role != "assistant":
            message.pop("tool_calls", None)
            message.pop("thinking_blocks", None)
        if role == "tool" and not message.get("tool_call_id"):
            message["tool_call_id"] = "call_fuzz"
        if role == "tool" and message["tool_call_id"] not in calls:
            message["role"] = role = "user"  # a tool message answers a call of the assistant before it
            message.pop("tool_call_id")
        calls = {call.get("id") for call in message.get("tool_calls") or [] if isinstance(call, dict)}
        content = message.get("content")
        if isinstance(content, list) and role == "assistant" and content and all(
                isinstance(part, dict) and part.get("type") in THINKING_TYPES for part in content):
            content = None  # thinking parts join thinking_blocks: no content is left
        if content is None and not (role == "assistant" and message.get("tool_calls")):
            message["content"] = "Hi"


def bodies_with_messages(body: dict[str, Any]) -> None:
    message_roles(body.get("messages"))
    message_roles(body.get("history"))
    choice = body.get("tool_choice")  # a function it names is one of tools
    if isinstance(choice, dict) and choice["function"]["name"] not in {
            (tool.get("function") or {}).get("name") for tool in body.get("tools") or [] if isinstance(tool, dict)}:
        body["tool_choice"] = "auto"


def stored_chat(body: dict[str, Any]) -> None:
    """`POST /chat` as a stored chat: provider or model, not both; one of replace, regenerate and edit,
    with a chat_id; "answer" and regenerate take no message or files, anything else a message;
    resumable only with stream; files are base64 of UTF-8 text."""
    if "messages" in body:
        return bodies_with_messages(body)
    if body.get("provider") and body.get("model"):
        del body["model"]
    for later in [name for name in ("replace", "regenerate", "edit") if body.get(name)][1:]:
        del body[later]
    if any(body.get(name) for name in ("replace", "regenerate", "edit")) and not body.get("chat_id"):
        body["chat_id"] = "fuzz-chat"
    if body.get("files"):
        body["files"] = [{"name": "notes.txt", "data": "bm90ZXM="}]
    if body.get("resumable") and not body.get("stream"):
        del body["resumable"]
    if body.get("replace") == "answer" or body.get("regenerate"):
        body.pop("message", None)
        body.pop("files", None)
    elif body.get("message") is None:
        body["message"] = "Hi"


def each_once(key: str, name: str) -> Callable[[dict[str, Any]], None]:
    """Each item of `body[key]` by its own `name` (a filename, an attachment's name): the first of each."""
    def once(body: dict[str, Any]) -> None:
        if isinstance(body.get(key), list):
            seen: set[Any] = set()
            body[key] = [item for item in body[key] if not (item.get(name) in seen or seen.add(item.get(name)))]
    return once


def declared_only(body: dict[str, Any], declared: set[str]) -> None:
    """A field the server does not declare is passed on to the vendor, who may refuse it: none is sent."""
    for field in set(body) - declared:
        del body[field]


OTHER_VENDORS = ("claude", "anthropic", "gemini", "google")
PLAIN_COMPLETION = {"model", "messages", "stream", "max_tokens", "temperature", "top_p", "stop", "tools", "tool_choice"}


def another_vendor(body: dict[str, Any]) -> bool:
    return str(body.get("model", "")).lower().startswith(OTHER_VENDORS)


def openai_parameters(body: dict[str, Any]) -> None:
    """Chat completions: a parameter the model's provider does not take is refused unless
    DROP_UNSUPPORTED_PARAMS: a body with more than the plain ones names an OpenAI model."""
    if another_vendor(body) and set(body) - PLAIN_COMPLETION:
        body["model"] = NOT_CLAUDE
    bodies_with_messages(body)


def served_by_the_responses_api(body: dict[str, Any]) -> None:
    """Responses: another vendor's model is translated (function tools only, its provider's parameters):
    valid data names an OpenAI model, which the Responses API judges."""
    if another_vendor(body):
        body["model"] = NOT_CLAUDE


def translated_blocks(body: dict[str, Any]) -> None:
    """A Claude model receives the body as it came, for Anthropic's own rules to judge (which the document
    leaves to Anthropic's): the body names another model, and so takes only text, image, tool_use,
    tool_result and thinking blocks, and no server tool."""
    if any(word in str(body.get("model", "")).lower() for word in ("claude", "anthropic")):
        body["model"] = NOT_CLAUDE
    body["tools"] = [tool for tool in body.get("tools") or [] if tool.get("type") in (None, "custom")] or None
    if body["tools"] is None:
        del body["tools"]
    if isinstance(body.get("system"), list):
        body["system"] = neutral_blocks(body["system"])
    for message in body.get("messages") or []:
        if isinstance(message.get("content"), list):
            message["content"] = neutral_blocks(message["content"])


def neutral_blocks(blocks: list[Any]) -> list[Any]:
    kept = [block for block in blocks if block.get("type") in NEUTRAL_BLOCKS]
    for block in kept:
        if block.get("type") == "tool_result" and isinstance(block.get("content"), list):
            block["content"] = neutral_blocks(block["content"])
    return kept


def in_the_future(body: dict[str, Any]) -> None:
    moment = body.get("expires_at")
    if isinstance(moment, str) and datetime.fromisoformat(moment) <= datetime.now(timezone.utc):
        body["expires_at"] = (datetime.now(timezone.utc) + timedelta(days=30)).isoformat()


def ordered_moments(query: dict[str, Any]) -> None:
    """`since` not after `until` (`GET /gists`)."""
    since, until = parse_iso(query.get("since")), parse_iso(query.get("until"))
    if since and until and since > until:
        query["since"], query["until"] = query["until"], query["since"]


def usage_days(query: dict[str, Any]) -> None:
    """`GET /usage`: since not after until (today by default), at most 366 days apart (since is 29 days
    before until by default)."""
    today = datetime.now(timezone.utc).date()
    for name in ("since", "until"):  # x-minimum, x-maximum
        if query.get(name):
            query[name] = min(max(query[name], "1970-01-01"), "9999-12-30")
    since = date.fromisoformat(query["since"]) if query.get("since") else None
    until = date.fromisoformat(query["until"]) if query.get("until") else today
    if since and since > until:
        since, until = until, since
        query["until"] = until.isoformat()
    if since and (until - since).days > 366:
        query["since"] = (until - timedelta(days=366)).isoformat()
    elif since:
        query["since"] = since.isoformat()
    if not query.get("since") and until < date(1970, 1, 30):
        query["since"] = "1970-01-01"
    if query.get("since") and not query.get("until") and query["since"] > today.isoformat():
        query["until"] = query["since"]


BODY_RULES: dict[str, list[Callable[[dict[str, Any]], None]]] = {
    "POST /chat": [stored_chat],
    "POST /gists": [each_once("files", "filename")],
    "PATCH /gists/{gist_id}": [each_once("files", "filename")],
    "POST /task": [each_once("attachments", "name")],
    "POST /revise": [each_once("attachments", "name")],
    "POST /admin/keys": [in_the_future],
    "POST /v1/chat/completions": [openai_parameters],
    "POST /api/v1/chat/completions": [openai_parameters],
    "POST /v1/responses": [served_by_the_responses_api],
    "POST /api/v1/responses": [served_by_the_responses_api],
    "POST /v1/messages": [translated_blocks],
    "POST /anthropic/v1/messages": [translated_blocks],
    "POST /v1/messages/count_tokens": [translated_blocks],
    "POST /anthropic/v1/messages/count_tokens": [translated_blocks],
}
QUERY_RULES = {"GET /gists": ordered_moments, "GET /usage": usage_days}
PASSED_ON = ("/responses", "/messages", "/chat/completions")  # bodies whose undeclared fields go to the vendor


def declared_fields(operation: Any) -> set[str]:
    reference = operation.definition.raw["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    return set(operation.schema.raw_schema["components"]["schemas"][reference.rsplit("/", 1)[1]]["properties"])


def as_the_document_words_it(case: Any) -> Any:
    label = case.operation.label
    if isinstance(case.body, dict):
        if label.endswith(PASSED_ON):
            declared_only(case.body, declared_fields(case.operation))
        for rule in BODY_RULES.get(label, [bodies_with_messages]):
            rule(case.body)
    if case.query and label in QUERY_RULES:
        QUERY_RULES[label](case.query)
    return case


def admin(app: Any) -> dict[str, str]:
    """The headers of the admin key the fuzzed app was made with: every operation is open to it."""
    return {"Authorization": f"Bearer {app.config['FUZZ_ADMIN_KEY']}"}


def has_input(operation: Any) -> bool:
    """Whether the operation takes anything (parameters or a body) that negative data could break."""
    return bool(list(operation.iter_parameters())) or bool(operation.definition.raw.get("requestBody"))


def fuzz(operation: Any, mode: GenerationMode, headers: dict[str, str]) -> tuple[int, list[str]]:
    """Run the operation's generated cases: how many were sent, and the first failure's text (if any)."""
    sent = 0
    checks = FULL_CHECKS
    strategy = operation.as_strategy(generation_mode=mode)
    if mode is GenerationMode.POSITIVE:
        strategy = strategy.map(as_a_client_sends).map(as_the_document_words_it)

    @given(case=strategy)
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=REPEATABLE,
              database=None)
    def run(case: Any) -> None:
        nonlocal sent
        sent += 1
        case.call_and_validate(checks=checks, headers=headers)

    try:
        run()
    except (Exception, BaseExceptionGroup) as failure:  # a check's failure, with the case that reproduces it
        return sent, [f"{operation.label} [{mode.value}]: {failure}"]
    return sent, []


def test_every_operation_answers_as_documented(fuzzed_app):
    schema = schemathesis.openapi.from_wsgi("/openapi.json", fuzzed_app)
    schema.config.generation.update(allow_x00=False)  # the document says no string holds U+0000: a 400
    # A body over MAX_BODY_BYTES (more items than a list's maxItems, say) is refused before it is read: 413.
    schema.config.checks.negative_data_rejection.expected_statuses = [
        *schema.config.checks.negative_data_rejection.expected_statuses, "413"]
    headers = admin(fuzzed_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20
    results = [fuzz(operation, mode, headers) for operation in operations
               for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
               if mode is GenerationMode.POSITIVE or has_input(operation)]
    failures = [text for _, found in results for text in found]
    print(f"{sum(sent for sent, _ in results)} cases over {len(operations)} operations, {len(failures)} failing")
    assert not failures, "\n\n".join(failures)


def test_every_path_refuses_an_undocumented_method_with_405_and_allow(fuzzed_app):
    """schemathesis's `unsupported_method` (Allow headers): its coverage phase sends each path every method
    its operations do not document (PUT, PATCH, TRACE, QUERY... and OPTIONS, which must be answered),
    once per path; each must be a 405 with an `Allow` header."""
    schema = schemathesis.openapi.from_wsgi("/openapi.json", fuzzed_app)
    schema.config.generation.update(allow_x00=False)
    headers = admin(fuzzed_app)
    probed, failures = set(), []
    methods = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
    # `get_all_operations` leaves out the document's own `GET /openapi.json`; each path's first operation here
    operations = [schema[path][next(method for method in item if method in methods).upper()]
                  for path, item in schema.raw_schema["paths"].items()]
    for operation in operations:
        for case in schema.iter_coverage_cases(operation, generation_modes=[GenerationMode.NEGATIVE],
                                               generation_config=schema.config.generation):
            data = case.meta.phase.data
            if isinstance(data, CoveragePhaseData) and data.scenario is CoverageScenario.UNSPECIFIED_HTTP_METHOD:
                probed.add(case.operation.path)
                try:
                    case.call_and_validate(checks=[unsupported_method], headers=headers)
                except (Exception, BaseExceptionGroup) as failure:
                    failures.append(f"{case.method} {case.operation.path}: {failure}")
    assert probed == set(schema.raw_schema["paths"])
    assert not failures, "\n\n".join(failures)


# -- what the fuzzing found ------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["until=0001-01-01", "since=0001-01-01", "until=9999-12-31"])
def test_usage_days_out_of_range_are_a_400(client, query):
    """`until=0001-01-01` was a 500 (its 30-day default range began before year 1)."""
    response = client.get(f"/usage?{query}")
    assert response.status_code == 400, response.json
    assert response.json["error"]["param"] == query.split("=")[0]


STREAMED_MESSAGES = {"messages": [{"role": "user", "content": "Hi"}], "stream": True}


@pytest.mark.parametrize("path, body", [
    ("/v1/ask", {"question": "Hi", "client_id": "c1", "user_id": "u1", "stream": True}),
    ("/v1/chat/completions", {**STREAMED_MESSAGES, "model": "gpt-4o-mini", "stream_options": {"include_usage": True}}),
    ("/v1/messages", {**STREAMED_MESSAGES, "model": "claude-sonnet-5-5", "max_tokens": 50}),  # Claude's own events
    ("/v1/messages", {**STREAMED_MESSAGES, "model": "gpt-4o-mini", "max_tokens": 50}),  # translated
    ("/v1/responses", {"model": "gpt-4o-mini", "input": "Hi", "stream": True}),
    ("/chat/{provider}", STREAMED_MESSAGES),
    ("/chat", {"message": "Hi", "chat_id": "fuzz-stream", "stream": True}),
    ("/chat/gist", STREAMED_MESSAGES),
])
def test_streamed_events_are_as_documented(fuzzed_app, path, body):
    """Every streamed operation's events failed schemathesis's check ("SSE event violates schema"):
    the document gave the whole body as a string, while schemathesis checks each event
    (`{"event", "data"}`) against it. Each stream now passes the same checks as the fuzzing."""
    schema = schemathesis.openapi.from_wsgi("/openapi.json", fuzzed_app)
    case = schema[path]["POST"].Case(body=body, path_parameters={"provider": "gpt"} if "{" in path else None,
                                     media_type="application/json")
    response = case.call(headers=admin(fuzzed_app))
    assert response.status_code == 200 and response.headers["content-type"][0].startswith("text/event-stream")
    case.validate_response(response, checks=CHECKS)


def test_an_unconfigured_provider_s_health_is_its_documented_503(fuzzed_app):
    """`GET /health/ollama` (no OLLAMA_HOST here) answers the documented 503 with its status body,
    `"configured": false` and the variable to set; the server-error check took it for a fault."""
    schema = schemathesis.openapi.from_wsgi("/openapi.json", fuzzed_app)
    case = schema["/health/{provider}"]["GET"].Case(path_parameters={"provider": "ollama"})
    response = case.call(headers=admin(fuzzed_app))
    assert response.status_code == 503
    assert response.json() == {"provider": "ollama", "configured": False, "reachable": False, "variable": "OLLAMA_HOST"}
    case.validate_response(response, checks=CHECKS)


@pytest.mark.parametrize("group_by, status", [("key,model", 200), (" day , provider ", 200), ("day,,model", 200),
                                              ("", 200), ("days", 400), ("day model", 400), ("day;model", 400)])
def test_group_by_is_checked_by_the_rule_the_document_gives(client, group_by, status):
    """Unknown `group_by` values were refused by a rule the document did not state (any string was valid)."""
    import re

    document = client.get("/openapi.json").json
    parameter = next(p for p in document["paths"]["/usage"]["get"]["parameters"] if p["name"] == "group_by")
    assert bool(re.fullmatch(parameter["schema"]["pattern"][1:-1], group_by)) == (status == 200)
    response = client.get("/usage", query_string={"group_by": group_by})
    assert response.status_code == status, response.json


def test_path_and_cursor_rules_are_in_the_document(client):
    """Chat ids, gist ids and cursors were refused by rules the parameters did not state; stored
    responses' refused options were documented as accepted."""
    document = client.get("/openapi.json").json
    chat_id = document["paths"]["/chat/history/{chat_id}"]["parameters"][0]["schema"]
    assert chat_id["pattern"] == "^[A-Za-z0-9_-]{1,64}$"
    gist_id = next(p for p in document["paths"]["/gists/{gist_id}"]["parameters"] if p["name"] == "gist_id")
    assert gist_id["schema"]["pattern"] == "^[0-9A-Za-z]{1,100}$"
    cursor = next(p for p in document["paths"]["/chat/history"]["get"]["parameters"] if p["name"] == "cursor")
    assert "pattern" in cursor["schema"] and "invalid_cursor" in cursor["description"]
    retrieve = {p["name"] for p in document["paths"]["/v1/responses/{response_id}"]["get"]["parameters"]}
    assert retrieve == {"stream", "include_obfuscation"}  # response_id is the path's parameter
    assert client.get("/v1/responses/resp_x?include=a").status_code == 400


def test_several_choices_are_answered_as_documented(fuzzed_app):
    """With `n` > 1 OpenAI's choices come back as it sent them (`refusal`, `annotations`, `logprobs`), which
    the document's choice did not allow: "Response violates schema" at 50 cases per operation."""
    schema = schemathesis.openapi.from_wsgi("/openapi.json", fuzzed_app)
    case = schema["/v1/chat/completions"]["POST"].Case(
        body={"messages": [{"role": "user", "content": "Hi"}], "model": "gpt-4o-mini", "n": 3},
        media_type="application/json")
    response = case.call(headers=admin(fuzzed_app))
    assert response.status_code == 200 and len(response.json()["choices"]) == 3
    case.validate_response(response, checks=CHECKS)


def test_a_body_with_messages_is_only_the_stateless_chat(client):
    """`POST /chat`'s `oneOf`: a body with `messages` (and `"stream": null`, say) matched both the stateless
    and the stored chat, so the document called it invalid while the server (rightly) answered it."""
    document = client.get("/openapi.json").json
    assert document["components"]["schemas"]["ConversationChat"]["not"] == {"required": ["messages"]}
