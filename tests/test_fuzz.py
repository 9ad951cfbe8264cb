"""schemathesis over `/openapi.json`: every documented operation, generated valid and invalid input,
against the app in process with the fake OpenAI, Anthropic and Gemini as its providers. Checks: no
5xx, and every response's status, content type and body as the document says. `make test` runs a
few examples per operation (FUZZ_EXAMPLES, default 5); `make fuzz` runs many more
(docs/reliability.md). schemathesis's own pytest plugin does not run under pytest 9, so each
operation's strategy is driven by hypothesis here."""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import NO_HEALTH_MEMORY, base_config, provider_config
from tests.fakes import RecordedRequest, Reply
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.gemini_api import FakeGemini
from tests.fakes.github_api import DEFAULT_TOKEN, FakeGitHub
from tests.fakes.openai_api import FakeOpenAI

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "5"))
REPEATABLE = "FUZZ_EXAMPLES" not in os.environ  # `make test` draws the same cases each run; `make fuzz` new ones


def no_server_error(ctx: Any, response: Any, case: Any) -> bool | None:
    """`not_a_server_error`, except the documented 503 for a provider this server has not configured
    (Ollama, a LiteLLM proxy), an operator's choice rather than a fault: a call to it is the error
    `not_configured`, and its `/health/{provider}` status says `"configured": false`."""
    if response.status_code == 503:
        body = response.json()
        if body.get("configured") is False or body.get("error", {}).get("code") == "not_configured":
            return None
    return not_a_server_error(ctx, response, case)


CHECKS = [no_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def model_reply(request: RecordedRequest) -> Reply:
    """The fake model's answer: a valid gist action to `/chat/gist`'s request for one (so that operation
    can succeed, and stream its `gist` event), the usual text to anything else."""
    response_format = request.json.get("response_format") or {}
    if (response_format.get("json_schema") or {}).get("name") == "gist_action":
        return Reply(text=json.dumps({"explanation": "Saved.", "action": "create", "gist_id": None,
                                      "description": "Fuzzed", "public": False,
                                      "files": [{"filename": "a.txt", "content": "A", "new_filename": None}]}))
    return Reply()


@pytest.fixture(scope="module")
def fuzzed_app(tmp_path_factory) -> Iterator[Any]:
    from app import create_app
    from app.core.db import migrate

    with FakeOpenAI() as openai, FakeAnthropic() as anthropic, FakeGemini() as gemini, FakeGitHub() as github:
        openai.default_reply = model_reply
        vendors = provider_config(openai=openai, anthropic=anthropic, gemini=gemini)
        app = create_app(base_config(tmp_path_factory.mktemp("fuzz"), **NO_HEALTH_MEMORY, **vendors,
                                     GITHUB_TOKEN=DEFAULT_TOKEN, GITHUB_API_URL=github.url, GITHUB_MAX_RATE_WAIT_S=0,
                                     VERIFICATION_SECRET="fuzz-secret"))
        migrate(app.extensions["database"])
        yield app


def fuzz(operation: Any) -> tuple[int, list[str]]:
    """Run the operation's generated cases: how many were sent, and the first failure's text (if any)."""
    sent = 0

    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=REPEATABLE,
              database=None)
    def run(case: Any) -> None:
        nonlocal sent
        sent += 1
        case.call_and_validate(checks=CHECKS)

    try:
        run()
    except (Exception, BaseExceptionGroup) as failure:  # a check's failure, with the case that reproduces it
        return sent, [f"{operation.label}: {failure}"]
    return sent, []


def test_every_operation_answers_as_documented(fuzzed_app):
    schema = schemathesis.openapi.from_wsgi("/openapi.json", fuzzed_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20
    results = [fuzz(operation) for operation in operations]
    failures = [text for _, found in results for text in found]
    print(f"{sum(sent for sent, _ in results)} cases over {len(operations)} operations, {len(failures)} failing")
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
    response = case.call()
    assert response.status_code == 200 and response.headers["content-type"][0].startswith("text/event-stream")
    case.validate_response(response, checks=CHECKS)


def test_an_unconfigured_provider_s_health_is_its_documented_503(fuzzed_app):
    """`GET /health/ollama` (no OLLAMA_HOST here) answers the documented 503 with its status body,
    `"configured": false` and the variable to set; the server-error check took it for a fault."""
    schema = schemathesis.openapi.from_wsgi("/openapi.json", fuzzed_app)
    case = schema["/health/{provider}"]["GET"].Case(path_parameters={"provider": "ollama"})
    response = case.call()
    assert response.status_code == 503
    assert response.json() == {"provider": "ollama", "configured": False, "reachable": False, "variable": "OLLAMA_HOST"}
    case.validate_response(response, checks=CHECKS)
