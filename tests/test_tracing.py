"""OpenTelemetry traces (app/core/tracing.py, app/llm/genai_spans.py), read back from a real OTLP/HTTP
receiver on loopback (tests/fakes/otlp_receiver.py) to which the official SDK's exporter sends them.

In-process apps take the standard OTEL_* variables from the environment (as a deployment sets them);
the stream test runs a real Gunicorn + gevent server with them.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from app.core.tracing import OFF, PROCESSOR_LOGGER, tracing_from_environ
from tests.conftest import NO_HEALTH_MEMORY, ROOT, LiveServer, base_config, provider_config
from tests.fakes.otlp_receiver import FakeCollector, ReceivedSpan
from tests.fakes.server import Reply

OTLP_SECRET = "otlp-backend-key-7f3a9c"
PARENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"


def otel_environ(collector: FakeCollector, **more: str) -> dict[str, str]:
    """The standard variables a deployment sets to send traces to `collector`, batches exported fast."""
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "50",
            "OTEL_SERVICE_NAME": "aiserver-under-test", "OTEL_EXPORTER_OTLP_HEADERS": f"x-backend-key={OTLP_SECRET}",
            **more}


@pytest.fixture
def collector():
    with FakeCollector() as running:
        yield running


@pytest.fixture
def traced(monkeypatch, make_app, collector, fake_openai, fake_anthropic):
    """`traced(**settings)`: an in-process app over the OpenAI and Anthropic fakes, tracing to `collector`."""
    apps = []

    def build(capture: bool = False, **settings: Any):
        for name, value in otel_environ(collector).items():
            monkeypatch.setenv(name, value)
        if capture:
            monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
        apps.append(make_app(**provider_config(openai=fake_openai, anthropic=fake_anthropic), **settings))
        return apps[-1]

    yield build
    for app in apps:
        app.extensions["tracing"].shutdown()


def chat(client, model: str = "gpt-4o-mini", headers: dict[str, str] | None = None, **body: Any):
    """The answer to a chat request, read to its end and closed (as a server closes it after sending)."""
    response = client.post("/v1/chat/completions", headers=headers or {},
                           json={"model": model, "messages": [{"role": "system", "content": "Be brief."},
                                                              {"role": "user", "content": "Say hi to Ada"}], **body})
    response.get_data()
    response.close()
    return response


def request_trace(collector: FakeCollector, request_id: str, children: int) -> tuple[ReceivedSpan, list[ReceivedSpan]]:
    """The server span of the request `request_id` and its child spans, once `children` have arrived."""
    def complete(spans: list[ReceivedSpan]) -> bool:
        server = [s for s in spans if s.attributes.get("aiserver.request.id") == request_id]
        return bool(server) and len([s for s in spans if s.parent_id == server[0].span_id]) >= children

    spans = collector.wait_for(complete)
    server = next(s for s in spans if s.attributes.get("aiserver.request.id") == request_id)
    return server, sorted((s for s in spans if s.parent_id == server.span_id), key=lambda s: s.start_ns)


def test_a_plain_answer_is_a_server_span_with_one_attempt_in_the_genai_conventions(traced, collector, fake_openai):
    client = traced().test_client()
    fake_openai.enqueue(Reply(text="Hi Ada", prompt_tokens=21, completion_tokens=5, reasoning="Ada is a name."))
    response = chat(client, temperature=0.2, max_tokens=50)
    assert response.status_code == 200
    server, (attempt,) = request_trace(collector, response.headers["X-Request-ID"], 1)

    assert server.kind == "server" and server.name == "POST /v1/chat/completions" and server.parent_id == ""
    assert {key: server.attributes[key] for key in ("http.request.method", "url.path", "http.route",
                                                     "http.response.status_code")} == {
        "http.request.method": "POST", "url.path": "/v1/chat/completions", "http.route": "/v1/chat/completions",
        "http.response.status_code": 200}
    assert server.status == "unset" and server.resource["service.name"] == "aiserver-under-test"
    usage = response.get_json()["usage"]
    assert attempt.kind == "client" and attempt.name == "chat gpt-4o-mini" and attempt.trace_id == server.trace_id
    assert {key: attempt.attributes.get(key) for key in (
        "gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model", "gen_ai.response.model",
        "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "gen_ai.usage.reasoning.output_tokens",
        "gen_ai.response.finish_reasons", "gen_ai.request.temperature", "gen_ai.request.max_tokens")} == {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": response.get_json()["model"], "gen_ai.usage.input_tokens": usage["prompt_tokens"],
        "gen_ai.usage.output_tokens": usage["completion_tokens"],
        "gen_ai.usage.reasoning.output_tokens": usage["completion_tokens_details"]["reasoning_tokens"],
        "gen_ai.response.finish_reasons": ["stop"], "gen_ai.request.temperature": 0.2,
        "gen_ai.request.max_tokens": 50}
    assert usage["prompt_tokens"] == 21 and usage["completion_tokens_details"]["reasoning_tokens"] > 0
    assert "gen_ai.usage.cache_read.input_tokens" not in attempt.attributes  # none read from a cache
    assert server.start_ns <= attempt.start_ns <= attempt.end_ns <= server.end_ns
    assert all(headers.get("x-backend-key") == OTLP_SECRET for headers in collector.requests)


def test_cached_tokens_of_a_responses_api_answer(traced, collector, fake_openai):
    client = traced(OPENAI_RESPONSES_API=True).test_client()
    fake_openai.enqueue(Reply(text="Hi", prompt_tokens=30, cached_tokens=24))
    response = client.post("/v1/responses", json={"model": "gpt-4o-mini", "input": "Say hi"})
    response.close()
    assert response.status_code == 200, response.get_json()
    _, (attempt,) = request_trace(collector, response.headers["X-Request-ID"], 1)
    assert response.get_json()["usage"]["input_tokens_details"]["cached_tokens"] == 24
    assert attempt.attributes["gen_ai.usage.cache_read.input_tokens"] == 24
    assert attempt.attributes["gen_ai.usage.input_tokens"] == 30


def test_an_incoming_traceparent_is_continued(traced, collector):
    client = traced().test_client()
    response = chat(client, headers={"traceparent": f"00-{PARENT_TRACE}-{PARENT_SPAN}-01"})
    server, (attempt,) = request_trace(collector, response.headers["X-Request-ID"], 1)
    assert (server.trace_id, server.parent_id) == (PARENT_TRACE, PARENT_SPAN)
    assert attempt.trace_id == PARENT_TRACE


def test_no_prompt_or_answer_text_in_spans_unless_content_capture_asks(traced, collector, fake_openai):
    client = traced().test_client()
    fake_openai.enqueue(Reply(text="Hello there, Ada"))
    response = chat(client)
    server, (attempt,) = request_trace(collector, response.headers["X-Request-ID"], 1)
    everything = json.dumps([s.attributes for s in collector.spans] + [s.events for s in collector.spans])
    assert "Ada" not in everything and "Be brief" not in everything
    assert OTLP_SECRET not in everything and "sk-test-openai-key-0001" not in everything


def test_content_capture_puts_redacted_messages_in_the_attempt_span(traced, collector, fake_openai):
    client = traced(capture=True).test_client()
    fake_openai.enqueue(Reply(text="Hello Ada; the key is sk-test-openai-key-0001"))
    response = chat(client)
    _, (attempt,) = request_trace(collector, response.headers["X-Request-ID"], 1)
    assert json.loads(attempt.attributes["gen_ai.system_instructions"]) == [{"type": "text", "content": "Be brief."}]
    assert json.loads(attempt.attributes["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Say hi to Ada"}]}]
    output = json.loads(attempt.attributes["gen_ai.output.messages"])
    assert output[0]["role"] == "assistant" and output[0]["finish_reason"] == "stop"
    assert output[0]["parts"][0]["content"].startswith("Hello Ada; the key is ")
    assert "sk-test-openai-key-0001" not in attempt.attributes["gen_ai.output.messages"]


def test_a_captured_stream_has_its_text_and_first_token_and_a_broken_one_its_error(traced, collector, fake_openai):
    client = traced(capture=True, RETRY_ATTEMPTS=0, **NO_HEALTH_MEMORY).test_client()
    fake_openai.enqueue(Reply(chunks=["Hel", "lo ", "Ada"], prompt_tokens=7))
    response = chat(client, stream=True)
    assert response.status_code == 200 and "Ada" in response.get_data(as_text=True)
    _, (attempt,) = request_trace(collector, response.headers["X-Request-ID"], 1)
    assert json.loads(attempt.attributes["gen_ai.output.messages"])[0]["parts"] == [
        {"type": "text", "content": "Hello Ada"}]
    assert attempt.attributes["gen_ai.request.stream"] is True and attempt.attributes["aiserver.outcome"] == "ok"
    assert attempt.event("gen_ai.first_token")["gen_ai.response.time_to_first_chunk"] > 0

    fake_openai.enqueue(Reply(chunks=["Half", " an answer"], error_after=1, error_status=500))
    response = chat(client, stream=True)
    assert response.status_code == 200  # the text had started: the failure is an event of the stream
    _, (broken,) = request_trace(collector, response.headers["X-Request-ID"], 1)
    assert broken.status == "error" and broken.attributes["aiserver.outcome"] == "interrupted"
    assert broken.attributes["gen_ai.response.finish_reasons"] == ["error"]


def test_a_retry_is_a_sibling_attempt_span_with_the_error(traced, collector, fake_openai):
    client = traced(RETRY_ATTEMPTS=1, **NO_HEALTH_MEMORY).test_client()
    fake_openai.enqueue(Reply(status=503, error_message="overloaded"), Reply(text="second time"))
    response = chat(client)
    assert response.status_code == 200
    _, (failed, answered) = request_trace(collector, response.headers["X-Request-ID"], 2)
    assert failed.name == answered.name == "chat gpt-4o-mini"
    assert failed.status == "error" and failed.attributes["error.type"] == "TransientFailure"
    assert failed.attributes["http.response.status_code"] == 503 and "overloaded" in failed.status_message
    assert (failed.attributes["aiserver.attempt"], answered.attributes["aiserver.attempt"]) == (1, 2)
    assert answered.status == "unset" and answered.attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert failed.end_ns <= answered.start_ns


def test_a_fallback_across_vendors_is_two_attempts_on_two_providers(traced, collector, fake_openai, fake_anthropic):
    client = traced(RETRY_ATTEMPTS=0, MODEL_ALIASES=["smart=openai/gpt-4o|anthropic/claude-haiku-5-5"],
                    **NO_HEALTH_MEMORY).test_client()
    fake_openai.enqueue(Reply(status=500, error_message="boom"))
    fake_anthropic.enqueue(Reply(text="from claude", prompt_tokens=9, completion_tokens=3))
    response = chat(client, model="smart")
    assert response.status_code == 200 and response.headers["X-Provider"] == "anthropic"
    _, (first, second) = request_trace(collector, response.headers["X-Request-ID"], 2)
    assert (first.attributes["gen_ai.provider.name"], first.attributes["gen_ai.request.model"]) == ("openai", "gpt-4o")
    assert first.status == "error" and first.attributes["http.response.status_code"] == 500
    assert second.attributes["gen_ai.provider.name"] == "anthropic"
    assert second.attributes["gen_ai.request.model"] == "claude-haiku-5-5" and second.status == "unset"
    assert (second.attributes["gen_ai.usage.input_tokens"], second.attributes["gen_ai.usage.output_tokens"]) == (9, 3)


def test_a_failure_marks_the_attempts_and_the_server_span(traced, collector, fake_openai):
    client = traced(RETRY_ATTEMPTS=0, **NO_HEALTH_MEMORY).test_client()
    fake_openai.default_reply = Reply(status=503, error_message="down for good")
    response = chat(client, model="openai/gpt-4o-mini")
    assert response.status_code == 503
    server, attempts = request_trace(collector, response.headers["X-Request-ID"], 1)
    assert attempts and all(a.status == "error" and a.attributes["error.type"] == "TransientFailure" for a in attempts)
    assert server.status == "error" and server.attributes["error.type"] == "503"
    assert server.attributes["http.response.status_code"] == 503


def test_tracing_is_off_without_an_endpoint_and_the_tracing_sdk_is_never_imported_then(tmp_path):
    """(redis-py imports the SDK's metrics part by itself when the SDK is installed; its tracing part and
    the exporter are ours alone to import.)"""
    assert tracing_from_environ({}) is OFF
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    assert tracing_from_environ({**endpoint, "OTEL_SDK_DISABLED": "true"}) is OFF
    assert tracing_from_environ({**endpoint, "OTEL_TRACES_EXPORTER": "none"}) is OFF
    script = ("import sys; from app import create_app; app = create_app(%r); app.test_client().get('/ping'); "
              "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry.sdk.trace', 'opentelemetry.exp'))))")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    ran = subprocess.run([sys.executable, "-c", script % base_config(tmp_path)], cwd=ROOT, env=environ,
                         capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip().splitlines()[-1] == "[]"


def test_the_exporters_headers_are_redacted_from_logs(traced):
    """OTEL_EXPORTER_OTLP_HEADERS usually holds the tracing backend's API key."""
    app = traced()
    logging.getLogger("aiserver.test").warning("the header was %s", OTLP_SECRET)
    log = (Path(app.config["LOG_DIR"]) / "app.log").read_text()
    assert "the header was ***" in log and OTLP_SECRET not in log


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_dead_collector_costs_requests_nothing_and_is_logged_once(monkeypatch, make_app, fake_openai, caplog):
    """A port nothing listens on: the exporter's retries run in the processor's thread, not the request's;
    the failure is one line of app.log, and none of the exporter's own lines (one per retry) gets out."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "10")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "4")  # the queue fills while the exporter retries
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "2")
    app = make_app(**provider_config(openai=fake_openai))
    client = app.test_client()
    app_log = Path(app.config["LOG_DIR"]) / "app.log"
    try:
        with caplog.at_level(logging.DEBUG, logger="opentelemetry"):
            chat(client)  # warm up
            started = time.perf_counter()
            for _ in range(20):
                assert chat(client).status_code == 200
            traced_ms = (time.perf_counter() - started) * 1000 / 20
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and "cannot be exported" not in app_log.read_text():
                time.sleep(0.05)
            time.sleep(2.5)  # more batches fail meanwhile (a batch gives up after OTEL_EXPORTER_OTLP_TIMEOUT)
    finally:
        app.extensions["tracing"].shutdown()
    assert app_log.read_text().count("cannot be exported") == 1, app_log.read_text()
    assert "Connection refused" in app_log.read_text() or "timeout" in app_log.read_text()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert traced_ms < 100, f"{traced_ms:.1f} ms per request with a dead collector"


def fill_the_queue_during_slow_exports(monkeypatch, make_app, fake_openai, collector, caplog) -> list[str]:
    """Twenty requests against an exporter queue of 4 while `collector` takes 0.4 s to answer each
    export; the processor's warnings that reached the log, once every export has ended."""
    for name, value in otel_environ(collector, OTEL_BSP_SCHEDULE_DELAY="10", OTEL_BSP_MAX_QUEUE_SIZE="4",
                                    OTEL_BSP_MAX_EXPORT_BATCH_SIZE="2").items():
        monkeypatch.setenv(name, value)
    collector.answer_delay = 0.4
    for sdk_filter in logging.getLogger(PROCESSOR_LOGGER).filters:  # the SDK says a line once in 20 s:
        if hasattr(sdk_filter, "last_log"):  # start as a new process does, not after an earlier test's line
            monkeypatch.delattr(sdk_filter, "last_log")
    app = make_app(**provider_config(openai=fake_openai))
    client = app.test_client()
    try:
        with caplog.at_level(logging.DEBUG, logger="opentelemetry"):
            for _ in range(20):
                assert chat(client).status_code == 200
            time.sleep(1.0)  # the export under way when the queue filled ends
    finally:
        app.extensions["tracing"].shutdown()
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_queue_full_while_an_export_that_then_fails_is_under_way_is_not_logged(
        monkeypatch, make_app, fake_openai, collector, caplog):
    """The queue fills before the first export has failed (nothing said yet): the failure's one warning
    covers the dropped spans."""
    collector.refuse_with = 400  # not retried: the export fails when the answer comes
    assert fill_the_queue_during_slow_exports(monkeypatch, make_app, fake_openai, collector, caplog) == []
    assert collector.spans == []


def test_a_queue_full_while_a_slow_export_succeeds_is_logged(monkeypatch, make_app, fake_openai, collector, caplog):
    """Export works but cannot keep up: a full queue is news, logged once the export under way succeeds."""
    warnings = fill_the_queue_during_slow_exports(monkeypatch, make_app, fake_openai, collector, caplog)
    assert warnings and all(w.startswith("Queue full") for w in warnings), warnings
    assert collector.spans


def test_a_stream_through_gunicorn_ends_its_server_span_with_the_stream(tmp_path, collector):
    """Gunicorn + gevent: the processor's thread is a greenlet; time to first token is an event."""
    from tests.fakes.openai_api import FakeOpenAI

    with FakeOpenAI() as fake:
        config = base_config(tmp_path, **otel_environ(collector), **provider_config(openai=fake), RETRY_ATTEMPTS=0,
                             LOG_LEVEL="INFO")
        server = LiveServer(config)
        try:
            fake.enqueue(Reply(chunks=["Str", "eam", "ed"], chunk_delay=0.3, prompt_tokens=4, first_byte_delay=0.2))
            client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
            response = client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True,
                stream_options={"include_usage": True},
                extra_headers={"traceparent": f"00-{PARENT_TRACE}-{PARENT_SPAN}-01"})
            chunks = list(response.parse())
            finished = time.time_ns()
            request_id = response.headers["X-Request-ID"]
            server_span, (attempt,) = request_trace(collector, request_id, 1)
        finally:
            server.stop()
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Streamed"
    assert server_span.trace_id == PARENT_TRACE and server_span.name == "POST /v1/chat/completions"
    assert attempt.attributes["gen_ai.request.stream"] is True
    assert attempt.attributes["gen_ai.usage.output_tokens"] == chunks[-1].usage.completion_tokens
    first_token = attempt.event("gen_ai.first_token")
    assert first_token is not None and 0.2 <= first_token["gen_ai.response.time_to_first_chunk"] < 0.6
    # the view returned at the first token; the span lasted until the last chunk (two 0.3 s pauses later)
    assert server_span.end_ns - server_span.start_ns >= 0.6e9
    # it ends with the stream: after the attempt, and within moments of the client reading the last byte
    # (the server closes its response just after writing that byte, so it may end a little after)
    assert attempt.end_ns <= server_span.end_ns <= finished + 0.2e9


def test_a_deployment_round_in_the_huey_worker_is_one_trace_with_a_span_per_stage(tmp_path, collector, monkeypatch):
    """The round's trace links to the trace of the request that queued it."""
    from app import create_app
    from app.core.db import migrate
    from tests.fakes.deploy_stack import answer_brief
    from tests.fakes.evaluator import FakeEvaluator
    from tests.fakes.github_repos_api import FakeGitHubRepos
    from tests.fakes.openai_api import FakeOpenAI
    from tests.test_deploy import SECRET, Worker

    with FakeOpenAI() as llm, FakeGitHubRepos(build_delay=0.05) as github, FakeEvaluator() as evaluator:
        llm.default_reply = answer_brief
        llm.enqueue(Reply(text="no file set here"))  # the first generation fails the file-set check
        config = base_config(tmp_path, LOG_LEVEL="INFO", **provider_config(openai=llm), GITHUB_TOKEN=github.api_key,
                             GITHUB_API_URL=github.url, VERIFICATION_SECRET=SECRET, NOTIFY_ALLOW_HOSTS=["127.0.0.1"],
                             PAGES_POLL_S=0.05, NOTIFY_BACKOFF_S=0.05, DEPLOY_RETRY_S=0.05, RETRY_ATTEMPTS=0,
                             **otel_environ(collector))
        for name, value in otel_environ(collector).items():
            monkeypatch.setenv(name, value)  # the web app in this process traces too
        app = create_app(config)
        migrate(app.extensions["database"])
        response = app.test_client().post("/task", json={
            "email": "a@example.com", "secret": SECRET, "task": "traced-app", "round": 1, "nonce": "n1",
            "brief": "Make a page.", "checks": [], "evaluation_url": evaluator.url_for("/notify/traced"),
            "attachments": []})
        response.close()
        assert response.status_code == 200, response.get_json()
        asked, _ = request_trace(collector, response.headers["X-Request-ID"], 0)
        app.extensions["tracing"].shutdown()
        worker = Worker(config, tmp_path / "worker.log").start()
        try:
            spans = collector.wait_for(lambda found: any(s.name == "deploy round" and s.attributes.get(
                "aiserver.deploy.outcome") == "done" for s in found), timeout=30)
            round_span = next(s for s in spans if s.name == "deploy round")
            trace = collector.wait_for(lambda found: len([s for s in found if s.trace_id == round_span.trace_id]) >= 7)
        finally:
            worker.stop()
    trace = [s for s in trace if s.trace_id == round_span.trace_id]
    assert round_span.parent_id == "" and round_span.trace_id != asked.trace_id
    assert round_span.links == [(asked.trace_id, asked.span_id)] and asked.name == "POST /task"
    assert round_span.attributes["aiserver.deploy.task_id"] == response.get_json()["task_id"]
    stages = sorted((s for s in trace if s.parent_id == round_span.span_id), key=lambda s: s.start_ns)
    assert [s.name for s in stages] == ["deploy generating", "deploy committing", "deploy publishing",
                                        "deploy notifying"]
    generating = stages[0]
    assert [attributes["error.type"] for name, attributes in generating.events
            if name == "stage attempt failed"] == ["InvalidFileSet"]
    attempts = [s for s in trace if s.parent_id == generating.span_id]
    assert [a.name for a in attempts] == ["chat gpt-4o-mini"] * 2
    assert all(a.attributes["gen_ai.provider.name"] == "openai" for a in attempts)
    assert round_span.resource["service.name"] == "aiserver-under-test"
