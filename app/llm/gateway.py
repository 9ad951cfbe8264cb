"""The failure policy, the same for every provider: retry, then the next model, then the next provider.

`Gateway.complete` returns one `Answer`; `Gateway.stream` yields events: `FailedAttempt` for each
attempt that failed before any text, `Started` once the first item of an answer is in hand (so a
retry can never duplicate or drop text), the text deltas (`str`), then `StreamEnd`, or
`StreamFailed` if the provider breaks after text was sent. If every route fails before any text,
`stream` raises the `APIError` that `complete` would have raised, and nothing was sent. The parts
of an answer (text, tool-call and reasoning deltas) pass through unchanged.

Which route comes next (`Walk`): a failure that says the upstream or its vendor is unwell (5xx,
overload, timeout, connection error, 429) moves at once to another upstream of the same model, then
to the next tier (an alias's next target, PROVIDER_FALLBACKS), so the budget reaches every vendor of
a chain; a retry of the same route (with backoff) comes only when no other tier is left, and a
vendor's fallback models after that. A model-specific failure (model not found, context too long)
goes to that vendor's fallback models first. Upstream health (`app.llm.health`) is remembered across
requests: a cooling upstream is skipped while another route exists, and one request at a time
probes it. A non-streamed answer is asked for as a stream and assembled where a hang must be found
fast (another endpoint is waiting in the request's routes, or the upstream is suspect: it failed
lately, or a whole answer from it is overdue), so a hung vendor is left after `first_byte` seconds
there too.

Only a provider's typed failure moves on to the next try; any other exception is a bug of ours and
propagates (a 500 with its traceback logged), rather than being mistaken for an outage and answered
silently by another provider. Every request has a retry budget: at most `max_attempts` upstream
calls and a deadline `budget` seconds after it began, so a request cannot multiply into a storm of
calls. No call starts after the deadline, and an attempt's wait for its first byte ends with it;
a stream's also ends after `first_byte` seconds, so a hung route is left quickly (a non-streamed
answer asked for whole has its whole answer as its first byte, which the deadline alone bounds).
Attempts also stop once `wanted()` says the client has gone.
"""
from __future__ import annotations

import itertools
import logging
import math
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Union

from app.core.backoff import backoff_delay
from app.core.errors import APIError, BadRequest, RateLimited, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from app.core.metrics import STREAMS_IN_FLIGHT
from app.llm.genai_spans import AttemptSpans, finish_reasons
from app.llm.health import Health, HealthPolicy, MemoryBoard
from app.llm.images import check_image_parts
from app.llm.providers.base import (
    CallerFault,
    Completion,
    CompletionRequest,
    Embeddings,
    ModelUnavailable,
    ProviderFailure,
    ProviderRejected,
    ReasoningDelta,
    StreamEnd,
    StreamItem,
    ThinkingBlock,
    ToolCall,
    ToolCallDelta,
    UpstreamTimedOut,
    Usage,
    first_byte_within,
)
from app.llm.registry import Route
from app.llm.usage import Demand, Permit, UsageEvent, estimate_tokens

log = logging.getLogger("aiserver.gateway")


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 2
    backoff: float = 0.5
    max_wait: float = 8.0
    budget: float = 30.0  # seconds from the first call after which no further call starts
    max_attempts: int = 6  # upstream calls per request, retries and fallbacks together
    first_byte: float = 10.0  # seconds a stream may take to start answering before the next try

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "RetryPolicy":
        return cls(config["RETRY_ATTEMPTS"], config["RETRY_BACKOFF_S"], config["RETRY_MAX_WAIT_S"],
                   config["RETRY_BUDGET_S"], config["RETRY_MAX_CALLS"], config["FIRST_BYTE_TIMEOUT_S"])

    def wait_before_retry(self, retry_number: int, failure: ProviderFailure) -> float | None:
        """Seconds to wait before retry `retry_number` (1-based), or None to move on to the next route."""
        if not failure.retryable or retry_number > self.retries:
            return None
        if failure.retry_after is not None:
            return failure.retry_after if failure.retry_after <= self.max_wait else None
        return backoff_delay(retry_number, self.backoff, cap=self.max_wait, jitter=0.2)


@dataclass(frozen=True)
class FailedAttempt:
    provider: str
    model: str
    error: str
    status: int | None
    failure: ProviderFailure = field(repr=False, compare=False)
    route: Route = field(repr=False, compare=False, default=None)  # type: ignore[assignment]

    def to_dict(self) -> dict[str, Any]:
        return {"provider": self.provider, "model": self.model, "error": self.error, "status": self.status}


@dataclass(frozen=True)
class Started:
    provider: str
    model: str
    attempts: tuple[FailedAttempt, ...] = ()


@dataclass(frozen=True)
class StreamFailed:
    message: str
    provider: str
    model: str
    status: int | None = None  # the upstream failure's status, when it had one (an overload reported mid-stream)


@dataclass
class Answer:
    text: str
    provider: str
    model: str
    finish_reason: str
    usage: Usage
    attempts: list[FailedAttempt] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    reasoning: str = ""
    logprobs: Any = None
    native: dict[str, Any] | None = None
    thinking: list[dict[str, Any]] = field(default_factory=list)
    choices: list[dict[str, Any]] = field(default_factory=list)  # every choice, when `n` > 1


Event = Union[FailedAttempt, Started, StreamItem, StreamFailed]


class Gateway:
    def __init__(self, registry, policy: RetryPolicy, sleep: Callable[[float], None] = time.sleep,
                 redact: Callable[[str], str] = str, record: Callable[[UsageEvent], None] = lambda event: None,
                 permit: Callable[[list[Route], Demand], Permit] = lambda routes, demand: Permit(routes),
                 wanted: Callable[[], bool] = lambda: True, health: Health | None = None,
                 strategy: str = "weighted", whole_as_stream: str = "auto", max_images: int = 50,
                 spans: AttemptSpans | None = None):
        """`redact` scrubs secrets from upstream error text, which some vendors echo back (a bad key);
        `record` counts every attempt's outcome, tokens and latency (see `app.llm.usage`); `permit`
        narrows the routes to those the caller may use, or raises (a key's models and limits), and
        reserves the call's `Demand`: every call (chat, stream, embeddings, a token count) asks it
        first and settles its `Permit` once, in a `finally`, with the last usage event (None: nothing
        answered, the reservation is given back);
        `wanted` says whether the current request's client is still connected; `health` remembers
        each upstream's outcomes (this process only unless given a shared board); `strategy` chooses
        among the healthy upstreams of a tier (weighted, least-busy, lowest-latency);
        `whole_as_stream` says when a non-streamed answer is asked for as a stream: "auto" (when its
        upstream is suspect), "always" or "never" (see the module's docstring); a request holding more
        than `max_images` image parts is refused before any attempt (`app.llm.images`); `spans` starts
        each attempt's trace span (`app.llm.genai_spans`; nothing while tracing is off)."""
        self.registry = registry
        self.policy = policy
        self.sleep = sleep
        self.redact = redact
        self.record = record
        self.permit = permit
        self.wanted = wanted
        self.health = health or Health(MemoryBoard(), HealthPolicy())
        self.strategy = strategy
        self.whole_as_stream = whole_as_stream
        self.max_images = max_images
        self.spans = spans or AttemptSpans()

    def complete(self, request: CompletionRequest, routes: list[Route]) -> Answer:
        check_image_parts(request, self.max_images)
        permit = self.permit(routes, Demand.of_request(request))
        spent: list[UsageEvent] = []
        try:
            return self._complete(request, permit.routes, spent)
        finally:
            permit.settle(spent[-1] if spent else None)

    def _complete(self, request: CompletionRequest, routes: list[Route], spent: list[UsageEvent]) -> Answer:
        attempts: list[FailedAttempt] = []
        deadline = time.monotonic() + self.policy.budget
        vendors = {route.provider.name for route in routes}
        for route in self._tries(routes, attempts, deadline, request):
            started = time.perf_counter()
            self.health.begin(route.upstream)
            try:
                with self.spans.start(route, request, number=len(attempts) + 1) as span:
                    result = self._whole(request, route, deadline, vendors)
                    span.answered(result.model, result.finish_reason, result.usage, result.text, finish_reasons(result))
            except ProviderFailure as failure:  # every failure of one route is the next route's chance
                self._record(route, failure, attempts, started)
                continue
            finally:
                self.health.end(route.upstream)
            self._succeeded(route, started, result.usage)
            spent.append(usage_event(route, result.model, "ok", started, result.usage,
                                     self.model_label(route, result.model)))
            self.record(spent[-1])
            return Answer(result.text, route.provider.name, result.model, result.finish_reason, result.usage,
                          attempts, result.tool_calls, result.reasoning, result.logprobs, result.native,
                          result.thinking, result.choices)
        raise all_failed(attempts)

    def _whole(self, request: CompletionRequest, route: Route, deadline: float, vendors: set[str]) -> Completion:
        """One whole answer from `route`. Asked for whole, its first byte is the whole answer, so only the
        deadline bounds the wait; asked for as a stream and assembled, the first-byte limit applies. The
        stream costs more CPU (an event per token to parse), so by default ("auto") it is used only where
        finding a hang fast matters: when another endpoint than this route's is among the request's
        routes (`vendors`: a hang found in seconds leaves the budget for it), or while the upstream is
        suspect (`Health.suspect`: it failed lately, or a whole answer from it has been awaited longer
        than a first byte may take); never when the request needs what only a whole answer carries
        (logprobs, several choices, a vendor's own body)."""
        if not self._as_stream(request, route, vendors):
            with self.health.awaiting_whole(route.upstream), first_byte_within(deadline - time.monotonic()):
                return route.provider.complete(request, route.model)
        items = route.provider.stream(request, route.model)
        try:
            with first_byte_within(min(self.policy.first_byte, deadline - time.monotonic())):
                first = next(items)
            return assembled(itertools.chain((first,), items), route.model)
        finally:
            items.close()

    def _as_stream(self, request: CompletionRequest, route: Route, vendors: set[str]) -> bool:
        if self.whole_as_stream == "never" or not whole_from_stream(request):
            return False
        return (self.whole_as_stream == "always" or bool(vendors - {route.provider.name})
                or self.health.suspect(route.upstream, self.policy.first_byte))

    def stream(self, request: CompletionRequest, routes: list[Route]) -> Iterator[Event]:
        check_image_parts(request, self.max_images)
        permit = self.permit(routes, Demand.of_request(request))
        spent: list[UsageEvent] = []
        try:
            yield from self._stream(request, permit.routes, spent)
        finally:  # also when the generator is closed: the client went away
            permit.settle(spent[-1] if spent else None)

    def _stream(self, request: CompletionRequest, routes: list[Route], spent: list[UsageEvent]) -> Iterator[Event]:
        attempts: list[FailedAttempt] = []
        deadline = time.monotonic() + self.policy.budget
        for route in self._tries(routes, attempts, deadline, request):
            started = time.perf_counter()
            span = self.spans.start(route, request, stream=True, number=len(attempts) + 1)
            items = span.watch(route.provider.stream(request, route.model))
            self.health.begin(route.upstream)
            try:
                with first_byte_within(min(self.policy.first_byte, deadline - time.monotonic())):
                    first = next(items)
            except ProviderFailure as failure:
                self.health.end(route.upstream)
                items.close()
                span.failed(failure)
                span.ended("attempt_failed")
                yield self._record(route, failure, attempts, started)
                continue
            span.first_item()
            first_item_ms = elapsed_ms(started)
            yield Started(route.provider.name, route.model, tuple(attempts))
            outcome, usage, model = "cancelled", Usage(), route.model
            STREAMS_IN_FLIGHT.inc()
            try:
                for item in itertools.chain((first,), items):
                    if isinstance(item, StreamEnd):
                        outcome, usage, model = "ok", item.usage, item.model
                        span.answered(item.model, item.finish_reason, item.usage)
                    yield item
            except ProviderFailure as failure:
                outcome = "interrupted"
                span.failed(failure)
                message = self.redact(failure.message)
                log.warning("%s/%s failed mid-stream: %s", route.provider.name, route.model, message)
                self.health.failed(route.upstream, failure)
                yield StreamFailed(f"The provider failed mid-answer: {message}", route.provider.name, route.model,
                                   failure.status)
            finally:
                STREAMS_IN_FLIGHT.dec()
                self.health.end(route.upstream)
                items.close()
                if outcome == "ok":
                    self._succeeded(route, started, usage)
                spent.append(usage_event(route, model, outcome, started, usage,
                                         self.model_label(route, model), first_item_ms))
                self.record(spent[-1])
                span.ended(outcome)
            return
        raise all_failed(attempts)

    def model_label(self, route: Route, answered: str) -> str:
        """The model a usage row (and so a /metrics label) is counted under: the model that answered or
        else the one asked for, if configured; "other" otherwise, so callers cannot mint labels."""
        configured = self.registry.configured_models(route.provider.name)
        return next((model for model in (answered, route.model) if model in configured), "other")

    def embed(self, route: Route, inputs: list[str], dimensions: int | None) -> Embeddings:
        """Embeddings from one route, retried as the policy allows; permitted, reserved and recorded like
        a chat (its demand: the inputs' estimated tokens, no completion)."""
        permit = self.permit([route], Demand(estimate_tokens(inputs), 0))
        event: UsageEvent | None = None
        attempts: list[FailedAttempt] = []
        deadline = time.monotonic() + self.policy.budget
        try:
            for attempt in self._tries(permit.routes, attempts, deadline):
                started = time.perf_counter()
                try:
                    with self.spans.start(attempt, operation="embeddings", number=len(attempts) + 1) as span, \
                            first_byte_within(deadline - time.monotonic()):
                        result = attempt.provider.embed(inputs, attempt.model, dimensions)
                        span.answered(result.model, None, result.usage)
                except ProviderFailure as failure:
                    self._record(attempt, failure, attempts, started)
                    continue
                event = usage_event(attempt, result.model, "ok", started, result.usage,
                                    self.model_label(attempt, result.model))
                self.record(event)
                return result
            raise all_failed(attempts)
        finally:
            permit.settle(event)

    def count_tokens(self, route: Route, request: CompletionRequest) -> int | None:
        """The vendor's exact count of the request's input tokens (None: it has none), retried as the
        policy allows. Permitted like a call (a key's models and limits), with nothing to reserve: a
        count costs no tokens."""
        permit = self.permit([route], Demand(0, 0))
        permit.settle(None)
        attempts: list[FailedAttempt] = []
        deadline = time.monotonic() + self.policy.budget
        for attempt in self._tries(permit.routes, attempts, deadline):
            try:
                with first_byte_within(deadline - time.monotonic()):
                    return attempt.provider.count_tokens(request, attempt.model)
            except ProviderFailure as failure:
                self._record(attempt, failure, attempts)
        raise all_failed(attempts)

    def _tries(self, routes: list[Route], attempts: list[FailedAttempt], deadline: float,
               request: CompletionRequest | None = None) -> Iterator[Route]:
        """The routes in the order `Walk` chooses, sleeping before retries, within the request's budget of
        calls and its deadline (`time.monotonic()`) while its client is there."""
        walk = Walk(routes, self.health, self.policy, self.strategy, deadline)
        while len(attempts) < self.policy.max_attempts and time.monotonic() < deadline and self.wanted():
            step = walk.next(attempts[-1] if attempts else None)
            if step is None:
                return
            route, wait = step
            if wait:
                self.sleep(wait)
            before = len(attempts)
            yield route
            if len(attempts) == before:
                return

    def _succeeded(self, route: Route, started: float, usage: Usage) -> None:
        self.health.succeeded(route.upstream, elapsed_ms(started))
        if route.tpm and usage.total_tokens:
            self.health.add_tokens(route.upstream, usage.total_tokens)

    def _record(self, route: Route, failure: ProviderFailure, attempts: list[FailedAttempt],
                started: float | None = None) -> FailedAttempt:
        """Count a failed attempt (a caller fault too, before it is answered as the request's 400)."""
        message = self.redact(failure.message)
        self.record(UsageEvent(route.provider.name, route.model, "attempt_failed",
                               latency_ms=0 if started is None else elapsed_ms(started),
                               label=self.model_label(route, route.model), deployment=route.upstream,
                               status=failure.status, error_type=failure_type(failure)))
        if isinstance(failure, CallerFault) and not context_too_long(failure):
            raise BadRequest(f"{route.provider.name} rejected the request: {message}",
                             status=failure.status if failure.status in (400, 413, 422) else 400,
                             code="upstream_rejected_request", details={"provider": route.provider.name})
        log.warning("attempt failed: %s/%s: %s", route.provider.name, route.model, message)
        self.health.failed(route.upstream, failure)
        attempt = FailedAttempt(route.provider.name, route.model, message, failure.status, failure, route)
        attempts.append(attempt)
        return attempt


class Walk:
    """One request's way through its routes (see the module's docstring for the order)."""

    def __init__(self, routes: list[Route], health: Health, policy: RetryPolicy, strategy: str, deadline: float):
        self.routes = routes
        self.deadline = deadline
        self.health = health
        self.policy = policy
        self.strategy = strategy
        self.tried: set[Route] = set()
        self.retries: dict[Route, int] = {}
        self.sick: set[str] = set()  # providers that failed vendor-wide in this request
        self.rejected: set[str] = set()  # providers that refused us as a whole
        self.states = health.states(route.upstream for route in routes) if len(routes) > 1 else {}
        self.now = time.time()

    def next(self, last: FailedAttempt | None) -> tuple[Route, float] | None:
        """The next route and the seconds to wait before calling it; None when nothing is left."""
        if last is not None:
            self._learn(last)
            if isinstance(last.failure, (ModelUnavailable, CallerFault)):
                same = [r for r in self._untried(fallback=True) if r.provider is last.route.provider]
                if same:
                    return self._take(same[0])
                if isinstance(last.failure, CallerFault):
                    raise BadRequest(f"{last.provider} rejected the request: {last.error}", status=400,
                                     code="upstream_rejected_request", details={"provider": last.provider})
        chosen = self._next_tier() or self._retry(last) or self._next_fallback() or self._last_resort()
        return chosen

    def _learn(self, last: FailedAttempt) -> None:
        route, failure = last.route, last.failure
        if isinstance(failure, ProviderRejected):
            self.rejected.add(route.provider.name)
        elif failure.retryable:
            self.sick.add(route.provider.name)

    def _untried(self, fallback: bool) -> list[Route]:
        return [route for route in self.routes if route.fallback == fallback and route not in self.tried
                and route.provider.name not in self.rejected]

    def _take(self, route: Route, wait: float = 0.0) -> tuple[Route, float]:
        self.tried.add(route)
        return route, wait

    def _next_tier(self) -> tuple[Route, float] | None:
        """An untried upstream of the first tier that has a healthy (or probe-ready) one, on a provider
        that has not failed in this request; spread by the strategy, within each upstream's rpm."""
        candidates = [route for route in self._untried(fallback=False) if route.provider.name not in self.sick]
        for tier in sorted({route.tier for route in candidates}):
            ready = [route for route in candidates if route.tier == tier and self._status(route) == "healthy"]
            probe = self._probe([route for route in candidates if route.tier == tier])
            ready = [probe, *ready] if probe else ready
            while ready:
                route = probe if probe in ready else self._pick(ready)  # a probe claimed is a probe made
                ready.remove(route)
                if not (route.rpm or route.tpm) or self.health.reserve(route.upstream, route.rpm, route.tpm):
                    return self._take(route)
                self.tried.add(route)  # its own rpm/tpm is spent this minute
        return None

    def _status(self, route: Route) -> str:
        state = self.states.get(route.upstream)
        return "healthy" if state is None else state.status(self.now)

    def _probe(self, routes: list[Route]) -> Route | None:
        """The first of `routes` whose cooldown is over and whose probe lease this request took (one at
        most: a lease taken is a call to make)."""
        return next((route for route in routes if self._status(route) == "probing"
                     and self.health.take_probe(route.upstream)), None)

    def _pick(self, ready: list[Route]) -> Route:
        if len(ready) == 1:
            return ready[0]
        if self.strategy == "least-busy":
            return min(ready, key=lambda r: (self.health.in_flight.get(r.upstream, 0) / r.weight, random.random()))
        if self.strategy == "lowest-latency":
            return min(ready, key=lambda r: (self.states[r.upstream].latency_ms, random.random()))
        return random.choices(ready, weights=[route.weight for route in ready])[0]

    def _retry(self, last: FailedAttempt | None) -> tuple[Route, float] | None:
        """The same route again, after its backoff, once no other tier is left."""
        if last is None or not last.failure.retryable or last.route.provider.name in self.rejected:
            return None
        count = self.retries.get(last.route, 0) + 1
        wait = self.policy.wait_before_retry(count, last.failure)
        if wait is None or time.monotonic() + wait >= self.deadline:
            return None
        self.retries[last.route] = count
        return last.route, wait

    def _next_fallback(self) -> tuple[Route, float] | None:
        """A fallback model, those of providers still well in this request first."""
        fallbacks = sorted(self._untried(fallback=True), key=lambda r: (r.provider.name in self.sick, r.tier))
        ready = next((route for route in fallbacks if self._status(route) == "healthy" or self._probe([route])), None)
        return self._take(ready) if ready else None

    def _last_resort(self) -> tuple[Route, float] | None:
        """An upstream skipped so far: cooling, or of a provider that already failed in this request."""
        rest = self._untried(fallback=False) + self._untried(fallback=True)
        return self._take(rest[0]) if rest else None


CONTEXT_TOO_LONG = re.compile(r"context.length|context.window|too long|maximum context|too many tokens|"
                              r"exceeds the (maximum|context)|input token count", re.IGNORECASE)


def context_too_long(failure: ProviderFailure) -> bool:
    """Whether a caller fault is the prompt outgrowing the model, which a larger fallback model may take."""
    return isinstance(failure, CallerFault) and bool(CONTEXT_TOO_LONG.search(failure.message))


def whole_from_stream(request: CompletionRequest) -> bool:
    """Whether a non-streamed answer to `request` can be assembled from a stream without loss."""
    return request.native is None and not request.logprobs and (request.n or 1) == 1


def assembled(items: Iterator[StreamItem], model: str) -> Completion:
    """A whole answer from a stream's parts: text, reasoning, thinking blocks and tool calls joined in order."""
    text: list[str] = []
    reasoning: list[str] = []
    thinking: list[dict[str, Any]] = []
    calls: dict[int, dict[str, str]] = {}
    end = StreamEnd(model, "stop")
    for item in items:
        if isinstance(item, str):
            text.append(item)
        elif isinstance(item, ReasoningDelta):
            reasoning.append(item.text)
        elif isinstance(item, ThinkingBlock):
            thinking.append(item.block)
        elif isinstance(item, ToolCallDelta):
            call = calls.setdefault(item.index, {"id": "", "name": "", "arguments": "", "signature": ""})
            call["id"] = item.id or call["id"]
            call["name"] = item.name or call["name"]
            call["signature"] = item.signature or call["signature"]
            call["arguments"] += item.arguments
        elif isinstance(item, StreamEnd):
            end = item
    tool_calls = [ToolCall(**call) for _, call in sorted(calls.items())]
    return Completion("".join(text), end.model, end.finish_reason, end.usage, tool_calls, "".join(reasoning),
                      thinking=thinking)


def usage_event(route: Route, model: str, outcome: str, started: float, usage: Usage, label: str,
                first_item_ms: int | None = None) -> UsageEvent:
    return UsageEvent(route.provider.name, model, outcome, usage.prompt_tokens, usage.completion_tokens,
                      elapsed_ms(started), label, first_item_ms, usage.reasoning_tokens, usage.cached_tokens,
                      usage.cache_write_tokens, usage.cache_write_1h_tokens, deployment=route.upstream)


def failure_type(failure: ProviderFailure) -> str:
    """A failure's type as the call log names it: its class in snake case (`upstream_timed_out`)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(failure).__name__).lower()


def elapsed_ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


OVERLOADED = frozenset({429, 503, 529})  # upstream statuses that mean "too busy now", not "broken"


def all_failed(attempts: list[FailedAttempt]) -> APIError:
    """The error for a request on which every route failed: 429 with the shortest upstream wait as
    `Retry-After` if every one was rate limited, 504 if the last was a timeout, 503 if the providers
    are overloaded, 502 otherwise; the attempts are listed."""
    details = {"attempts": [a.to_dict() for a in attempts]}
    if not attempts:
        return UpstreamUnavailable("No provider route is available.", details=details)
    last = attempts[-1]
    summary = f"All {len(attempts)} attempts failed; last: {last.provider}/{last.model}: {last.error}"
    if all(a.status == 429 for a in attempts):
        waits = [a.failure.retry_after for a in attempts if a.failure.retry_after is not None]
        retry_after = str(max(1, math.ceil(min(waits)))) if waits else "1"
        return RateLimited(f"Every route is rate limited; retry after {retry_after}s. {summary}", details=details,
                           headers={"Retry-After": retry_after})
    if isinstance(last.failure, UpstreamTimedOut):
        return UpstreamTimeout(summary, details=details)
    if last.status in OVERLOADED:
        return UpstreamUnavailable(summary, details=details)
    return UpstreamError(summary, details=details)
