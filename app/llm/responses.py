"""How a front door answers from the gateway: its accessors, answer headers, the access-log fields,
streamed (SSE) responses, and the response cache's part in an answer (`cache_use`)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator
from urllib.parse import quote

from flask import Response, current_app, g, jsonify
from flask import request as incoming

from app.core.caller import current_caller
from app.core.errors import BadRequest
from app.llm.gateway import Answer, Gateway, Started, StreamFailed
from app.llm.providers.base import CompletionRequest, StreamEnd
from app.llm.pump import SSE_HEADERS, Pump, stream_events
from app.llm.registry import Registry, Route
from app.llm.response_cache import CachedAnswer, ResponseCache, cache_key, replay, replayed_answer
from app.llm.usage import Demand, UsageEvent

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
    `on_end()` once the stream ends), or whole as `body(answer)`; headers say who answered. With the
    response cache on, a stored answer is replayed the same way (`cache_use`)."""
    routes = honouring_routes(request, routes, wire_names)
    cache = cache_use(request, routes, stream)
    if cache.entry is not None:
        return cached_response(cache.entry, request, routes, stream, formatter, body, on_end)
    if stream:
        events = gateway().stream(request, routes)
        return event_stream(cache.storing(events), formatter, on_end=on_end,
                            headers=lambda started: {**dropped_header(request, routes, started.provider),
                                                     **cache.headers})
    answer = gateway().complete(request, routes)
    cache.put(answer)
    note_answer(answer.provider, answer.model, answer.usage.total_tokens)
    response = jsonify(body(answer))
    response.headers.update({**answer_headers(answer), **dropped_header(request, routes, answer.provider),
                             **cache.headers})
    return response


@dataclass
class CacheUse:
    """What the response cache does for one request: nothing (`cache` None: off for the server or the
    key), nothing but say so (`key` None: `Cache-Control: no-store`), or look up and keep its answer
    (`entry`: the stored answer found)."""

    cache: ResponseCache | None = None
    key: str | None = None
    entry: CachedAnswer | None = None

    @property
    def headers(self) -> dict[str, str]:
        """`X-Cache`: MISS when the answer was looked for (or `no-cache` skipped the look) and is kept,
        BYPASS for `no-store`; none when the cache is off."""
        if self.cache is None:
            return {}
        return {"X-Cache": "MISS" if self.key else "BYPASS"}

    def storing(self, events: Iterator[Any]) -> Iterator[Any]:
        return events if self.cache is None or self.key is None else self.cache.storing(self.key, events)

    def put(self, answer: Answer) -> None:
        if self.cache is not None and self.key is not None:
            self.cache.put_answer(self.key, answer)


OFF = CacheUse()


def cache_use(request: CompletionRequest, routes: list[Route], stream: bool) -> CacheUse:
    """The response cache's part in answering `request`: looked up under the caller's namespace (none:
    not cached) and the front door's endpoint, unless the request says `Cache-Control: no-store`
    (neither read nor kept) or `no-cache` (not read, the fresh answer kept)."""
    cache: ResponseCache | None = current_app.extensions.get("response_cache")
    namespace = None if cache is None else current_caller().cache_namespace
    if cache is None or namespace is None:
        return OFF
    directives = incoming.cache_control
    if directives.no_store:
        g.request_log["cache"] = "bypass"
        return CacheUse(cache)
    key = cache_key(namespace, incoming.endpoint or incoming.path, routes, request, stream)
    entry = None if directives.no_cache else cache.get(key)
    g.request_log["cache"] = "hit" if entry else "miss"
    return CacheUse(cache, key, entry)


def cached_response(entry: CachedAnswer, request: CompletionRequest, routes: list[Route], stream: bool,
                    formatter: Any, body: Callable[[Answer], dict[str, Any]], on_end: Callable[[], None]) -> Response:
    """A stored answer, as `answer_response` would have answered it, with `X-Cache: HIT` and its `Age`.
    The key is permitted as for a call (its models, its limits: a hit reserves nothing) and a usage row
    says `cache_hit`, with no tokens and no cost; the answer's own `usage` is the stored one's."""
    permit = gateway().permit(routes, Demand(0, 0))
    route = next((route for route in routes if route.provider.name == entry.provider), None)
    event = UsageEvent(entry.provider, entry.model, "cache_hit",
                       label=gateway().model_label(route, entry.model) if route else "other")
    permit.settle(event)
    gateway().record(event)
    headers = {"X-Cache": "HIT", "Age": str(max(0, int(time.time() - entry.stored_at)))}
    if stream:
        return event_stream(replay(entry), formatter, on_end=on_end,
                            headers=lambda started: {**dropped_header(request, routes, started.provider), **headers})
    answer = replayed_answer(entry)
    note_answer(answer.provider, answer.model, answer.usage.total_tokens)
    response = jsonify(body(answer))
    response.headers.update({**answer_headers(answer), **dropped_header(request, routes, answer.provider), **headers})
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
