"""How a front door answers from the gateway: its accessors, answer headers, the access-log fields
and streamed (SSE) responses."""
from __future__ import annotations

from typing import Any, Iterator
from urllib.parse import quote

from flask import Response, current_app, g

from app.llm.gateway import Answer, Gateway, Started, StreamFailed
from app.llm.providers.base import StreamEnd
from app.llm.pump import SSE_HEADERS, Pump, stream_events
from app.llm.registry import Registry

GATEWAY_ERRORS = (
    (400, "The provider refused the request as the caller's fault (a bad parameter, a context too long)."),
    (404, "Unknown provider or model."),
    (413, "The provider refused the request as too large."),
    (422, "The provider refused the request as unprocessable."),
    (502, "Every route failed before answering; `attempts` lists them."),
    (503, "The provider is not configured (the message names the variable), or every route was overloaded or "
          "rate limited."),
    (504, "The last route timed out."),
)
"""What answering through the gateway can fail with (`Registry.plan`, `Gateway._record`, `all_failed`),
for the OpenAPI document of each front door."""


def registry() -> Registry:
    return current_app.extensions["providers"]


def gateway() -> Gateway:
    return current_app.extensions["gateway"]


def note_answer(provider: str, model: str, tokens: int | None) -> None:
    """Provider, model and tokens of the answer, for the request's access log line."""
    g.request_log.update(provider=provider, model=model, tokens=tokens)


def answer_headers(answer: Answer) -> dict[str, str]:
    headers = {"X-Provider": header_value(answer.provider), "X-Model": header_value(answer.model)}
    if answer.attempts:
        headers["X-Failed-Attempts"] = str(len(answer.attempts))
    return headers


def header_value(text: str) -> str:
    """`text` safe in an HTTP header: the model name comes from upstream, and a header may hold only
    printable Latin-1 without line breaks, so anything outside printable ASCII is percent-encoded."""
    return quote(text.encode("utf-8", "surrogatepass"), safe=HEADER_SAFE)


HEADER_SAFE = "".join(chr(code) for code in range(0x20, 0x7f) if chr(code) != "%")


def event_stream(events: Iterator[Any], formatter: Any) -> Response:
    """An SSE response of `events` written by `formatter`; fails as plain JSON if no route answers
    within the heartbeat interval (see `app.llm.sse`)."""
    heartbeat = current_app.config["SSE_HEARTBEAT_S"]
    pump = Pump(events)
    opened = pump.opening(heartbeat)
    log_fields = g.request_log

    def body() -> Iterator[str]:
        for event in stream_events(pump, opened, heartbeat):
            if isinstance(event, Started):
                log_fields.update(provider=event.provider, model=event.model)
            elif isinstance(event, StreamEnd):
                log_fields.update(model=event.model, tokens=event.usage.total_tokens)
            elif isinstance(event, StreamFailed):
                log_fields.update(error="stream_interrupted")
            yield formatter.format(event)

    return Response(body(), mimetype="text/event-stream", headers=SSE_HEADERS)
