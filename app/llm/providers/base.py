"""The provider interface, the values it exchanges, and the failures it raises.

A provider wraps one vendor SDK client (made once, pooled) and offers two calls:
`complete(request, model) -> Completion` and `stream(request, model)`, a generator yielding
text deltas (`str`) and finally one `StreamEnd`. Closing the generator early closes the upstream
HTTP response, so an abandoned stream stops costing tokens at once.

Providers translate their SDK's exceptions into the `ProviderFailure` family below; the gateway
(`app.llm.gateway`) decides retries and fallbacks from those types alone, so every vendor fails the
same way.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol, Union

import httpx2


@dataclass(frozen=True)
class CompletionRequest:
    """What the caller wants, vendor-neutral.

    `messages` are `{"role": "system"|"user"|"assistant", "content": str | list[part]}`, a part
    being `{"type": "text", "text": ...}` or `{"type": "image", "media_type": ..., "data": base64}`.
    `json_schema`, when set, asks for structured output: `{"name": ..., "schema": {...}}`.
    """

    messages: list[dict[str, Any]]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    json_schema: dict[str, Any] | None = None


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.total_tokens}


@dataclass(frozen=True)
class StreamEnd:
    """The last item of every stream: the model that actually answered, why it stopped, usage."""

    model: str
    finish_reason: str
    usage: Usage = field(default_factory=Usage)


@dataclass(frozen=True)
class Completion:
    text: str
    model: str
    finish_reason: str
    usage: Usage = field(default_factory=Usage)


StreamItem = Union[str, StreamEnd]


class Provider(Protocol):
    name: str
    default_model: str
    fallback_models: list[str]

    def complete(self, request: CompletionRequest, model: str) -> Completion: ...

    def stream(self, request: CompletionRequest, model: str) -> Iterator[StreamItem]: ...

    def check(self) -> None:
        """Raise a ProviderFailure if the provider is unreachable; spends no tokens."""

    def list_models(self) -> list[str]: ...


class ProviderFailure(Exception):
    """An upstream call failed. Subclasses say what the gateway should do about it."""

    retryable = False

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after


class TransientFailure(ProviderFailure):
    """429, 5xx, timeouts, connection errors: retry with backoff, then fall back."""

    retryable = True


class UpstreamTimedOut(TransientFailure):
    pass


class ModelUnavailable(ProviderFailure):
    """The model does not exist or is not served: try the next model at once."""


class ProviderRejected(ProviderFailure):
    """The provider refused us as a whole (bad key, no permission): try the next provider."""


class CallerFault(ProviderFailure):
    """The request itself is wrong (bad parameter, context too long): returned, never retried."""


def classify_status(status: int, message: str, retry_after: float | None = None) -> ProviderFailure:
    """The one status-to-failure mapping every provider uses."""
    if status == 429 or status == 408 or status >= 500:
        return TransientFailure(message, status=status, retry_after=retry_after)
    if status in (401, 403):
        return ProviderRejected(message, status=status)
    if status == 404:
        return ModelUnavailable(message, status=status)
    return CallerFault(message, status=status)


def connection_limits(max_connections: int) -> httpx2.Limits:
    """One pool per provider per process, as large as the connections one worker serves: each open
    stream holds an upstream connection, and a pool smaller than that would queue streams. Every
    connection may be kept alive (idle ones expire after a few seconds): with the SDKs' default of
    100, a worker serving 200 concurrent requests closed half its connections after each request
    and paid a new connection (and its DNS lookup) for each, doubling its CPU per request."""
    return httpx2.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)


def parse_retry_after(headers: Any) -> float | None:
    """Seconds from `retry-after-ms` or `Retry-After` (seconds form); None when absent or a date."""
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return float(value) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    try:
        return float(value) if value else None
    except ValueError:
        return None
