"""How a front door answers from the gateway: its accessors, answer headers, the access-log fields
and streamed (SSE) responses."""
from __future__ import annotations

from typing import Any, Callable, Iterator
from urllib.parse import quote

from flask import Response, current_app, g, jsonify

from app.core.errors import BadRequest
from app.llm.gateway import Answer, Gateway, Started, StreamFailed
from app.llm.providers.base import CompletionRequest, StreamEnd
from app.llm.pump import SSE_HEADERS, Pump, stream_events
from app.llm.registry import Registry, Route

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


def answer_headers(answer: Answer | Started) -> dict[str, str]:
    """Who answered (`X-Provider`, `X-Model`) and, when earlier routes failed, which ones
    (`X-Fallbacks`: `provider/model` of each failed attempt, in order)."""
    headers = {"X-Provider": header_value(answer.provider), "X-Model": header_value(answer.model)}
    if answer.attempts:
        headers["X-Fallbacks"] = header_value(", ".join(f"{a.provider}/{a.model}" for a in answer.attempts))
    return headers


def header_value(text: str) -> str:
    """`text` safe in an HTTP header: the model name comes from upstream, and a header may hold only
    printable Latin-1 without line breaks, so anything outside printable ASCII is percent-encoded."""
    return quote(text.encode("utf-8", "surrogatepass"), safe=HEADER_SAFE)


HEADER_SAFE = "".join(chr(code) for code in range(0x20, 0x7f) if chr(code) != "%")


# parameters a provider without them leaves out (named in X-Dropped-Params), never a reason to refuse:
# a message's `name` (AutoGen, CrewAI and langchain send it) is a participant's name, which only OpenAI's
# wire has; the text of the message is what the model needs. `cache_control` marks are Anthropic's
# breakpoints; OpenAI and Gemini cache a repeated prefix by themselves, so without the marks the request
# is cached all the same
ALWAYS_DROPPABLE = ("messages.name", "cache_control")


def refused(provider: Any, request: CompletionRequest) -> list[str]:
    """What `provider` cannot honour of `request` and would not leave out."""
    return [name for name in provider.unsupported(request) if name not in ALWAYS_DROPPABLE]


def honouring_routes(request: CompletionRequest, routes: list[Route],
                     wire_names: dict[str, str] | None = None) -> list[Route]:
    """The routes to try: a parameter the first provider cannot honour is a 400 naming it as the client
    sent it (`wire_names` maps a neutral name to the front door's own; unless DROP_UNSUPPORTED_PARAMS,
    then the providers leave it out; a message's `name` is always left out where it cannot be sent); a
    fallback that cannot honour the request is not tried."""
    if current_app.config["DROP_UNSUPPORTED_PARAMS"]:
        return routes
    unsupported = refused(routes[0].provider, request)
    if unsupported:
        name, provider = (wire_names or {}).get(unsupported[0], unsupported[0]), routes[0].provider.name
        raise BadRequest(f"The parameter '{name}' is not supported by {provider} ({routes[0].model}); "
                         "leave it out, or set DROP_UNSUPPORTED_PARAMS=true to have it dropped.",
                         code="unsupported_parameter", details={"param": name, "provider": provider})
    return [route for route in routes if not refused(route.provider, request)]


def dropped_header(request: CompletionRequest, routes: list[Route], provider: str) -> dict[str, str]:
    """`X-Dropped-Params` naming what the provider that answered could not honour, when anything."""
    dropped = next((r.provider.unsupported(request) for r in routes if r.provider.name == provider), [])
    return {"X-Dropped-Params": ", ".join(dropped)} if dropped else {}


def answer_response(request: CompletionRequest, routes: list[Route], stream: bool, formatter: Any,
                    body: Callable[[Answer], dict[str, Any]], on_end: Callable[[], None] = lambda: None,
                    wire_names: dict[str, str] | None = None) -> Response:
    """The gateway's answer to `request` over `routes` (those that cannot honour it left out, see
    `honouring_routes`, which names a refused parameter by `wire_names`): streamed by `formatter` (then
    `on_end()` once the stream ends), or whole as `body(answer)`; headers say who answered."""
    routes = honouring_routes(request, routes, wire_names)
    if stream:
        return event_stream(gateway().stream(request, routes), formatter,
                            headers=lambda started: dropped_header(request, routes, started.provider), on_end=on_end)
    answer = gateway().complete(request, routes)
    note_answer(answer.provider, answer.model, answer.usage.total_tokens)
    response = jsonify(body(answer))
    response.headers.update({**answer_headers(answer), **dropped_header(request, routes, answer.provider)})
    return response


def event_stream(events: Iterator[Any], formatter: Any,
                 headers: Callable[[Started], dict[str, str]] = lambda started: {},
                 on_end: Callable[[], None] = lambda: None) -> Response:
    """An SSE response of `events` written by `formatter`; fails as plain JSON if no route answers
    within the heartbeat interval (see `app.llm.sse`). When the answer has started by then, the
    response's headers say who answers, plus `headers(started)`. `on_end()` runs when the body
    ends for any reason (done, failed, or the client gone), after the last event was formatted."""
    heartbeat = current_app.config["SSE_HEARTBEAT_S"]
    pump = Pump(events)
    opened = pump.opening(heartbeat)
    log_fields = g.request_log
    started = next((event for event in opened if isinstance(event, Started)), None)
    response_headers = {**SSE_HEADERS, **(answer_headers(started) | headers(started) if started else {})}

    def body() -> Iterator[str]:
        try:
            for event in stream_events(pump, opened, heartbeat):
                if isinstance(event, Started):
                    log_fields.update(provider=event.provider, model=event.model)
                elif isinstance(event, StreamEnd):
                    log_fields.update(model=event.model, tokens=event.usage.total_tokens)
                elif isinstance(event, StreamFailed):
                    log_fields.update(error="stream_interrupted")
                yield formatter.format(event)
        finally:
            on_end()

    return Response(body(), mimetype="text/event-stream", headers=response_headers)
