"""The failure policy, the same for every provider: retry, then the next model, then the next provider.

`Gateway.complete` returns one `Answer`; `Gateway.stream` yields events: `FailedAttempt` for each
attempt that failed before any text, `Started` once the first item of an answer is in hand (so a
retry can never duplicate or drop text), the text deltas (`str`), then `StreamEnd`, or
`StreamFailed` if the provider breaks after text was sent. If every route fails before any text,
`stream` raises the `APIError` that `complete` would have raised, and nothing was sent. The parts
of an answer (text, tool-call and reasoning deltas) pass through unchanged.

Only a provider's typed failure moves on to the next try; any other exception is a bug of ours and
propagates (a 500 with its traceback logged), rather than being mistaken for an outage and answered
silently by another provider. Every request has a retry budget: at most `max_attempts` upstream
calls and a deadline `budget` seconds after it began, so a request cannot multiply into a storm of
calls. No call starts after the deadline, and an attempt's wait for its first byte ends with it;
a stream's also ends after `first_byte` seconds, so a hung route is left quickly (a non-streamed
answer's first byte is the whole answer, which the deadline alone bounds). Attempts also stop once
`wanted()` says the client has gone.
"""
from __future__ import annotations

import itertools
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Union

from app.core.backoff import backoff_delay
from app.core.errors import APIError, BadRequest, RateLimited, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from app.core.metrics import STREAMS_IN_FLIGHT
from app.llm.images import check_image_parts
from app.llm.providers.base import (
    CallerFault,
    CompletionRequest,
    Embeddings,
    ProviderFailure,
    ProviderRejected,
    StreamEnd,
    StreamItem,
    ToolCall,
    UpstreamTimedOut,
    Usage,
    first_byte_within,
)
from app.llm.registry import Route
from app.llm.usage import UsageEvent

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


Event = Union[FailedAttempt, Started, StreamItem, StreamFailed]


class Gateway:
    def __init__(self, registry, policy: RetryPolicy, sleep: Callable[[float], None] = time.sleep,
                 redact: Callable[[str], str] = str, record: Callable[[UsageEvent], None] = lambda event: None,
                 permit: Callable[[list[Route]], list[Route]] = lambda routes: routes,
                 wanted: Callable[[], bool] = lambda: True, max_images: int = 50):
        """`redact` scrubs secrets from upstream error text, which some vendors echo back (a bad key);
        `record` counts every attempt's outcome, tokens and latency (see `app.llm.usage`); `permit`
        narrows the routes to those the caller may use, or raises (a key's models and limits);
        `wanted` says whether the current request's client is still connected; a request holding more
        than `max_images` image parts is refused before any attempt (`app.llm.images`)."""
        self.registry = registry
        self.policy = policy
        self.sleep = sleep
        self.redact = redact
        self.record = record
        self.permit = permit
        self.wanted = wanted
        self.max_images = max_images

    def complete(self, request: CompletionRequest, routes: list[Route]) -> Answer:
        check_image_parts(request, self.max_images)
        routes = self.permit(routes)
        attempts: list[FailedAttempt] = []
        deadline = time.monotonic() + self.policy.budget
        for route in self._tries(routes, attempts, deadline):
            started = time.perf_counter()
            try:
                with first_byte_within(deadline - time.monotonic()):
                    result = route.provider.complete(request, route.model)
            except ProviderFailure as failure:  # every failure of one route is the next route's chance
                self._record(route, failure, attempts)
                continue
            self.record(usage_event(route.provider.name, result.model, "ok", started, result.usage,
                                    self.model_label(route, result.model)))
            return Answer(result.text, route.provider.name, result.model, result.finish_reason, result.usage,
                          attempts, result.tool_calls, result.reasoning, result.logprobs, result.native)
        raise all_failed(attempts)

    def stream(self, request: CompletionRequest, routes: list[Route]) -> Iterator[Event]:
        check_image_parts(request, self.max_images)
        routes = self.permit(routes)
        attempts: list[FailedAttempt] = []
        deadline = time.monotonic() + self.policy.budget
        for route in self._tries(routes, attempts, deadline):
            started = time.perf_counter()
            items = route.provider.stream(request, route.model)
            try:
                with first_byte_within(min(self.policy.first_byte, deadline - time.monotonic())):
                    first = next(items)
            except ProviderFailure as failure:
                items.close()
                yield self._record(route, failure, attempts)
                continue
            first_item_ms = elapsed_ms(started)
            yield Started(route.provider.name, route.model, tuple(attempts))
            outcome, usage, model = "cancelled", Usage(), route.model
            STREAMS_IN_FLIGHT.inc()
            try:
                for item in itertools.chain((first,), items):
                    if isinstance(item, StreamEnd):
                        outcome, usage, model = "ok", item.usage, item.model
                    yield item
            except ProviderFailure as failure:
                outcome = "interrupted"
                message = self.redact(failure.message)
                log.warning("%s/%s failed mid-stream: %s", route.provider.name, route.model, message)
                yield StreamFailed(f"The provider failed mid-answer: {message}", route.provider.name, route.model,
                                   failure.status)
            finally:
                STREAMS_IN_FLIGHT.dec()
                items.close()
                self.record(usage_event(route.provider.name, model, outcome, started, usage,
                                        self.model_label(route, model), first_item_ms))
            return
        raise all_failed(attempts)

    def model_label(self, route: Route, answered: str) -> str:
        """The model a usage row (and so a /metrics label) is counted under: the model that answered or
        else the one asked for, if configured; "other" otherwise, so callers cannot mint labels."""
        configured = self.registry.configured_models(route.provider.name)
        return next((model for model in (answered, route.model) if model in configured), "other")

    def embed(self, route: Route, inputs: list[str], dimensions: int | None) -> Embeddings:
        """Embeddings from one route, retried as the policy allows; usage recorded like a chat's."""
        attempts: list[FailedAttempt] = []
        deadline = time.monotonic() + self.policy.budget
        for attempt in self._tries([route], attempts, deadline):
            started = time.perf_counter()
            try:
                with first_byte_within(deadline - time.monotonic()):
                    result = attempt.provider.embed(inputs, attempt.model, dimensions)
            except ProviderFailure as failure:
                self._record(attempt, failure, attempts)
                continue
            self.record(usage_event(attempt.provider.name, result.model, "ok", started, result.usage,
                                    self.model_label(attempt, result.model)))
            return result
        raise all_failed(attempts)

    def count_tokens(self, route: Route, request: CompletionRequest) -> int | None:
        """The vendor's exact count of the request's input tokens (None: it has none), retried as the
        policy allows."""
        attempts: list[FailedAttempt] = []
        deadline = time.monotonic() + self.policy.budget
        for attempt in self._tries([route], attempts, deadline):
            try:
                with first_byte_within(deadline - time.monotonic()):
                    return attempt.provider.count_tokens(request, attempt.model)
            except ProviderFailure as failure:
                self._record(attempt, failure, attempts)
        raise all_failed(attempts)

    def _tries(self, routes: list[Route], attempts: list[FailedAttempt], deadline: float) -> Iterator[Route]:
        """Each route as often as the policy allows, sleeping between retries, within the request's
        budget of calls and its deadline (`time.monotonic()`) while its client is there; skips the
        rest of a provider that rejected us as a whole."""
        rejected: set[str] = set()
        for route in routes:
            retry = 0
            while route.provider.name not in rejected:
                if len(attempts) >= self.policy.max_attempts or time.monotonic() >= deadline or not self.wanted():
                    return
                before = len(attempts)
                yield route
                if len(attempts) == before:
                    return
                failure = attempts[-1].failure
                if isinstance(failure, ProviderRejected):
                    rejected.add(route.provider.name)
                    break
                retry += 1
                wait = self.policy.wait_before_retry(retry, failure)
                if wait is None or time.monotonic() + wait >= deadline:
                    break
                self.sleep(wait)

    def _record(self, route: Route, failure: ProviderFailure, attempts: list[FailedAttempt]) -> FailedAttempt:
        message = self.redact(failure.message)
        if isinstance(failure, CallerFault):
            raise BadRequest(f"{route.provider.name} rejected the request: {message}",
                             status=failure.status if failure.status in (400, 413, 422) else 400,
                             code="upstream_rejected_request", details={"provider": route.provider.name})
        log.warning("attempt failed: %s/%s: %s", route.provider.name, route.model, message)
        attempt = FailedAttempt(route.provider.name, route.model, message, failure.status, failure)
        attempts.append(attempt)
        self.record(UsageEvent(route.provider.name, route.model, "attempt_failed",
                               label=self.model_label(route, route.model)))
        return attempt


def usage_event(provider: str, model: str, outcome: str, started: float, usage: Usage, label: str,
                first_item_ms: int | None = None) -> UsageEvent:
    return UsageEvent(provider, model, outcome, usage.prompt_tokens, usage.completion_tokens, elapsed_ms(started),
                      label, first_item_ms, usage.reasoning_tokens)


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
