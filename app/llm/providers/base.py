"""The provider interface, the values it exchanges, and the failures it raises.

A provider wraps one vendor SDK client (made once, pooled) and offers two calls:
`complete(request, model) -> Completion` and `stream(request, model)`, a generator yielding typed
parts: text deltas (`str`), `ToolCallDelta`, `ReasoningDelta`, and finally one `StreamEnd` (which
carries the usage), and `ThinkingBlock` for reasoning state that must go back with the conversation.
An answer with several choices (`n` > 1) streams each choice's parts wrapped in a `ChoicePart` that
names its choice, and each choice's end as a `ChoicePart` with its finish reason.
Closing the generator early closes the upstream HTTP response, so an abandoned
stream stops costing tokens at once. The parts are vendor-neutral: a front door translates its
wire shape to a `CompletionRequest` and these parts back to its wire shape, never knowing which SDK
answered.

One exception keeps a vendor's own API lossless: a front door that speaks a vendor's wire API (the
Anthropic Messages API) also hands over the body as it came (`CompletionRequest.native`). A provider
that speaks that wire (`native_wires`) sends it as it came, with the route's model, and answers in
that wire too: `Completion.native` holds the vendor's body, and a stream yields `NativeEvent`s (then
the `StreamEnd` for usage). Every other provider works from the neutral fields.

Providers translate their SDK's exceptions into the `ProviderFailure` family below; the gateway
(`app.llm.gateway`) decides retries and fallbacks from those types alone, so every vendor fails the
same way.
"""
from __future__ import annotations

import math
import threading
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any, Callable, Generator, Generic, Iterator, Protocol, TypeVar, Union

import httpcore2._backends.sync
import httpx2

from app.core.http import PooledSocketChecks

# Values that mean "the vendor's default": a parameter holding one of them was not really asked for.
NEUTRAL_VALUES: dict[str, Any] = {"n": 1, "logprobs": False, "parallel_tool_calls": True}


ANTHROPIC_MESSAGES = "anthropic.messages"  # the wire of Anthropic's `POST /v1/messages`
OPENAI_RESPONSES = "openai.responses"  # the wire of OpenAI's `POST /v1/responses`


@dataclass
class FetchedImages:
    """The images one request had fetched by URL, `(media type, bytes)` by URL, and their `total`
    size: kept on its `CompletionRequest`, so the gateway's retries and fallbacks (up to
    RETRY_ATTEMPTS calls) reuse them instead of fetching each image again (`app.llm.images`)."""

    by_url: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    total: int = 0


@dataclass(frozen=True)
class NativeBody:
    """A request body in a vendor's own wire format (`wire`, such as ANTHROPIC_MESSAGES), as it came,
    with the vendor's headers the client sent that change what the body means (`anthropic-beta`)."""

    wire: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CompletionRequest:
    """What the caller wants, vendor-neutral.

    `messages` are `{"role": "system"|"developer"|"user"|"assistant"|"tool", "content": ...}`.
    `content` is a string, a list of parts or (assistant with tool calls) None; a part is
    `{"type": "text", "text"}`, `{"type": "image", "media_type", "data": base64}` or
    `{"type": "image", "url": "https://..."}`. A part, a message (meaning its last part) and a tool may
    carry Anthropic's `cache_control` mark (`{"type": "ephemeral", "ttl"?}`), which only a Claude provider
    sends: every other vendor caches a prompt's prefix by itself. A message may carry `name`; an assistant message
    `tool_calls` (a list of `ToolCall.to_dict()`) and `thinking` (the `ThinkingBlock.block`s of the
    answer it was, to be sent back to the vendor that made them); a tool message the `tool_call_id`
    it answers.

    `tools` are `{"name", "description", "parameters": JSON schema, "strict"}`; `tool_choice` is
    "auto", "none", "required" or `{"name": ...}`. `json_schema` asks for structured output:
    `{"name", "schema", "strict"}`. `extra` holds fields the front door does not know, which only an
    OpenAI-compatible upstream receives (as they came).
    """

    messages: list[dict[str, Any]]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    json_schema: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, str] | None = None
    parallel_tool_calls: bool | None = None
    n: int | None = None
    seed: int | None = None
    reasoning_effort: str | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    metadata: dict[str, str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    native: NativeBody | None = None
    images: FetchedImages = field(default_factory=FetchedImages, compare=False, repr=False)

    def asked(self) -> list[str]:
        """Names of the parameters this request really sets (a vendor default counts as unset), then
        `messages.name` when a message carries a name, then the `extra` fields."""
        return list(self._asked)

    @cached_property
    def _asked(self) -> tuple[str, ...]:
        """`asked`, found once: it is asked for every route a request may take, and again for the
        answer's `X-Dropped-Params` (the request is frozen)."""
        names = [f.name for f in fields(self) if f.name not in ("messages", "extra", "native", "images")
                 and getattr(self, f.name) not in (None, [], {}, NEUTRAL_VALUES.get(f.name))]
        if any(m.get("name") for m in self.messages):
            names.append("messages.name")
        if self.cache_marked:
            names.append(CACHE_CONTROL)
        return (*names, *self.extra)

    @cached_property
    def cache_marked(self) -> bool:
        """Whether a message, a content part or a tool carries a `cache_control` mark (looked for once:
        `asked` is called for every route a request may take)."""
        return cache_marked(self)


CACHE_CONTROL = "cache_control"


def cache_marked(request: CompletionRequest) -> bool:
    """Whether a message, a content part or a tool of `request` carries a `cache_control` mark."""
    for tool in request.tools or ():
        if CACHE_CONTROL in tool:
            return True
    for message in request.messages:
        if message_marked(message):
            return True
    return False


def message_marked(message: dict[str, Any]) -> bool:
    """Whether `message` or one of its content parts carries a `cache_control` mark."""
    if CACHE_CONTROL in message:
        return True
    content = message.get("content")
    if isinstance(content, list):
        for part in content:
            if CACHE_CONTROL in part:
                return True
    return False


@dataclass(frozen=True)
class Usage:
    """A call's tokens, counted as OpenAI counts them: `prompt_tokens` is every input token, those read
    from the vendor's prompt cache (`cached_tokens`) and those written to it (`cache_write_tokens`,
    which only Anthropic reports) included. A provider whose vendor counts otherwise (Anthropic's
    `input_tokens` excludes both) converts on the way in, and a front door whose API counts otherwise
    converts on the way out (`uncached_prompt_tokens`)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0  # included in completion_tokens, as OpenAI counts them
    cached_tokens: int = 0  # included in prompt_tokens: read from the vendor's prompt cache
    cache_write_tokens: int = 0  # included in prompt_tokens: written to the vendor's prompt cache
    cache_write_1h_tokens: int = 0  # of cache_write_tokens, those kept an hour (Anthropic's ttl "1h", dearer)

    @property
    def uncached_prompt_tokens(self) -> int:
        """The prompt tokens neither read from nor written to the cache (Anthropic's `input_tokens`)."""
        return max(0, self.prompt_tokens - self.cached_tokens - self.cache_write_tokens)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: "Usage") -> "Usage":
        """The tokens of two calls together (an answer asked for twice), every count summed."""
        return Usage(*(getattr(self, name.name) + getattr(other, name.name) for name in fields(Usage)))

    def to_dict(self) -> dict[str, Any]:
        usage: dict[str, Any] = {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                                 "total_tokens": self.total_tokens}
        if self.reasoning_tokens:
            usage["completion_tokens_details"] = {"reasoning_tokens": self.reasoning_tokens}
        if self.cached_tokens or self.cache_write_tokens:
            usage["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        if self.cache_write_tokens:  # OpenAI has no such count: LiteLLM's name for Anthropic's
            usage["prompt_tokens_details"]["cache_creation_tokens"] = self.cache_write_tokens
        return usage


@dataclass(frozen=True)
class ToolCall:
    """A whole function call the model made; `arguments` is JSON text, as OpenAI sends it.
    `signature` is the vendor's opaque reasoning state attached to the call (Gemini's thought
    signature, base64), which must come back with the call on the next turn; "" when it has none."""

    id: str
    name: str
    arguments: str
    signature: str = ""

    def to_dict(self) -> dict[str, str]:
        call = {"id": self.id, "name": self.name, "arguments": self.arguments}
        if self.signature:
            call["signature"] = self.signature
        return call


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of the `index`-th tool call of a streamed answer: the first piece of a call carries its
    `id` and `name`, the following ones fragments of `arguments`, in order."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""
    signature: str | None = None  # with the first piece, when the call carries one (see `ToolCall`)


@dataclass(frozen=True)
class ReasoningDelta:
    """A piece of the model's reasoning (thinking) text, streamed before or between its answer."""

    text: str


@dataclass(frozen=True)
class ThinkingBlock:
    """A whole block of reasoning that must go back, unchanged, with the conversation's next turn to
    the vendor that wrote it: Claude's `{"type": "thinking", "thinking", "signature"}` or
    `{"type": "redacted_thinking", "data"}` (Anthropic refuses a tool loop whose assistant turn lost
    it while thinking is on). Yielded when the block is complete, after its `ReasoningDelta`s."""

    block: dict[str, Any]


@dataclass(frozen=True)
class ChoicePart:
    """A part of the `index`-th choice of a streamed answer with several choices (`n` > 1): `part` is
    that choice's text delta, `ReasoningDelta` or `ToolCallDelta`; without a part, `finish_reason`
    says the choice has ended (each choice ends once, before the stream's `StreamEnd`). The neutral
    parts carry no choice, and a front door needs to know which choice a delta belongs to: this
    wrapper says so without making the provider speak any front door's wire. A single-choice stream
    yields its parts bare."""

    index: int
    part: str | ReasoningDelta | ToolCallDelta | None = None
    finish_reason: str | None = None


@dataclass(frozen=True)
class NativeEvent:
    """One event of a stream in the vendor's own wire format (see `NativeBody`), as it came."""

    event: dict[str, Any]


@dataclass(frozen=True)
class StreamEnd:
    """The last item of every stream: the model that actually answered, why it stopped, usage, and
    what it cost in USD when a feature priced it (the stored `/chat` does; providers never do)."""

    model: str
    finish_reason: str
    usage: Usage = field(default_factory=Usage)
    cost_usd: float | None = None


@dataclass(frozen=True)
class Completion:
    text: str
    model: str
    finish_reason: str
    usage: Usage = field(default_factory=Usage)
    tool_calls: list[ToolCall] = field(default_factory=list)
    reasoning: str = ""
    logprobs: Any = None  # OpenAI's `choices[].logprobs`, from upstreams that speak it
    native: dict[str, Any] | None = None  # the vendor's own answer body, for a request with `native`
    thinking: list[dict[str, Any]] = field(default_factory=list)  # `ThinkingBlock.block`s, in order
    choices: list[dict[str, Any]] = field(default_factory=list)  # every choice (OpenAI's shape) when `n` > 1


def openai_choice(index: int, text: str, tool_calls: list[ToolCall], finish_reason: str,
                  reasoning: str = "") -> dict[str, Any]:
    """One choice of `Completion.choices` in OpenAI's shape, for providers whose vendor answers in
    another: `index`, the assistant `message` (its text, `tool_calls` with a call's thought signature
    as `extra_content`, where Google's OpenAI-compatible API puts it, `reasoning_content`) and
    `finish_reason`."""
    message: dict[str, Any] = {"role": "assistant", "content": text or (None if tool_calls else "")}
    if tool_calls:
        message["tool_calls"] = [
            {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments},
             **({"extra_content": {"google": {"thought_signature": call.signature}}} if call.signature else {})}
            for call in tool_calls]
    if reasoning:
        message["reasoning_content"] = reasoning
    return {"index": index, "message": message, "finish_reason": finish_reason}


@dataclass(frozen=True)
class Embeddings:
    vectors: list[list[float]]
    model: str
    usage: Usage = field(default_factory=Usage)
    estimated: bool = False  # the usage is this server's estimate: the vendor reported none


StreamItem = Union[str, ToolCallDelta, ReasoningDelta, ThinkingBlock, ChoicePart, NativeEvent, StreamEnd]


class Provider(Protocol):
    name: str
    default_model: str
    fallback_models: list[str]
    embedding_models: list[str]
    native_wires: frozenset[str]  # the wire formats of `CompletionRequest.native` it sends as they came

    def unsupported(self, request: CompletionRequest) -> list[str]:
        """The parameters of `request` (as named by `CompletionRequest.asked`) this vendor cannot honour."""

    def complete(self, request: CompletionRequest, model: str) -> Completion: ...

    def stream(self, request: CompletionRequest, model: str) -> Generator[StreamItem, None, None]: ...

    def count_tokens(self, request: CompletionRequest, model: str) -> int | None:
        """The vendor's exact count of the request's input tokens; None without a counting API for it."""

    def check(self) -> None:
        """Raise a ProviderFailure if the provider is unreachable; spends no tokens."""

    def list_models(self) -> list[str]: ...

    def embed(self, inputs: list[str], model: str, dimensions: int | None) -> Embeddings:
        """One vector per input; `ModelUnavailable` from a vendor without embeddings."""


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


Made = TypeVar("Made")


class MadeOnFirstUse(Generic[Made]):
    """A value (an SDK client) made by `make` at the first `get`, then kept: one per holder even when
    threads (the queue worker's) reach it at once. The SDKs' imports are most of the start-up's cost."""

    def __init__(self, make: Callable[[], Made]):
        self.make = make
        self.value: Made | None = None
        self.lock = threading.Lock()

    def get(self) -> Made:
        if self.value is None:
            with self.lock:
                if self.value is None:
                    self.value = self.make()
        return self.value


def connection_limits(max_connections: int) -> httpx2.Limits:
    """One pool per provider per process, as large as the connections one worker serves: each open
    stream holds an upstream connection, and a pool smaller than that would queue streams. Every
    connection may be kept alive (idle ones expire after a few seconds): with the SDKs' default of
    100, a worker serving 200 concurrent requests closed half its connections after each request
    and paid a new connection (and its DNS lookup) for each, doubling its CPU per request."""
    return httpx2.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)


_first_byte_limit: ContextVar[float | None] = ContextVar("first_byte_limit", default=None)
SHORTEST_WAIT_S = 0.05
POOLED_SOCKET_CHECKS = PooledSocketChecks()  # one per process, like the pool it serves


@contextmanager
def first_byte_within(seconds: float) -> Iterator[None]:
    """Upstream requests made inside this block wait at most `seconds` to connect and for the response
    to start (status line and headers); reading the body afterwards keeps the client's read timeout.
    The gateway sets it per attempt (`FIRST_BYTE_TIMEOUT_S`, the request's deadline); a context
    variable, so it follows the greenlet or thread that makes the call."""
    token = _first_byte_limit.set(max(seconds, SHORTEST_WAIT_S))
    try:
        yield
    finally:
        _first_byte_limit.reset(token)


class FirstByteTransport(httpx2.HTTPTransport):
    """The providers' HTTP transport. None of the three SDKs has a time-to-first-byte timeout (httpx's
    `read` timeout is the longest silence between any two reads, first byte included, and
    google-genai has a single timeout), so this shortens the connect and read timeouts while the
    response has not started (`first_byte_within`), then restores them for the body: a hung route is
    left in seconds while a long answer may still pause for READ_TIMEOUT_S between chunks.
    httpcore reads the timeouts from the request's `extensions` at every read, which this relies on.
    It also makes httpcore2's check of a pooled connection a plain `poll`, asked once per socket in a
    turn of the event loop (`PooledSocketChecks`)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        httpcore2._backends.sync.is_socket_readable = POOLED_SOCKET_CHECKS.check

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        limit = _first_byte_limit.get()
        if limit is None:
            return super().handle_request(request)
        timeouts = request.extensions.get("timeout", {})
        request.extensions["timeout"] = {**timeouts, "connect": _shorter(timeouts.get("connect"), limit),
                                         "read": _shorter(timeouts.get("read"), limit)}
        try:
            return super().handle_request(request)
        finally:
            request.extensions["timeout"] = timeouts


def _shorter(timeout: float | None, limit: float) -> float:
    return min(math.inf if timeout is None else timeout, limit)


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


def unsupported_params(request: CompletionRequest, supported: frozenset[str]) -> list[str]:
    """The parameters `request` asks for that are not in `supported` (`extra` fields never are)."""
    return [name for name in request.asked() if name not in supported]


def text_of(content: str | list[dict[str, Any]] | None) -> str:
    """The text of a message's content (its text parts joined), for vendors that take text only there."""
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content)
    return content or ""
