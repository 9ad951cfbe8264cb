"""Anthropic's Messages API through the official `anthropic` SDK.

System and developer messages become the `system` parameter; OpenAI-style tool calls become
`tool_use` blocks in the assistant turn and tool results `tool_result` blocks in one user turn
(consecutive results merged, as the API wants every result of a turn in the next user message).
Structured output uses the API's native `output_config.format`; `reasoning_effort` becomes a
thinking budget. The pinned SDK's `messages.create` lacks `temperature` and `top_p`, which the API
takes, so they go as `extra_body`; with thinking on, Anthropic allows only `temperature` 1 and
`top_p` from 0.95, and anything else is a 400 naming it (`seed`, `n`, penalties and logprobs, which
the API lacks, are reported as unsupported).

Thinking survives a tool loop: an answer's signed `thinking` and `redacted_thinking` blocks come out
as `ThinkingBlock`s, and an assistant message's `thinking` goes back first in its turn, as Anthropic
requires while thinking is on. A history that lost them (a client that does not keep them, a turn
another vendor answered) has thinking turned off for that request, the recourse Anthropic's error
names, rather than a 400. Tool-call ids outside Anthropic's `^[a-zA-Z0-9_-]+$` (another vendor's)
are replaced by a stable hash of themselves, the same in the `tool_use` and its `tool_result`.

Prompt caching: a `cache_control` mark on a part, a tool or a message (its last block) goes on the
block or tool it marks; a marked system message turns `system` into text blocks so the mark has a
block to sit on. The usage's cache reads and writes (`cache_read_input_tokens`,
`cache_creation_input_tokens`, which Anthropic's `input_tokens` excludes) are counted into the neutral
`prompt_tokens` (see `Usage`).

A request that came through the Anthropic Messages front door (`CompletionRequest.native`) is sent
as it came, with the route's model (fields the SDK does not know go as `extra_body`), and answered
with Anthropic's own body and events: thinking signatures, cache usage, server tools and any field
added upstream after this SDK reach the client unchanged.
"""
from __future__ import annotations

import hashlib
import json
import re
import types
from typing import Any, Generator, Iterator

import httpx2

from app.core.errors import ANTHROPIC_ERROR_TYPES
from app.llm.providers.base import (
    ANTHROPIC_MESSAGES,
    CACHE_CONTROL,
    CallerFault,
    Completion,
    CompletionRequest,
    Embeddings,
    FirstByteTransport,
    MadeOnFirstUse,
    ModelUnavailable,
    NativeEvent,
    ProviderFailure,
    ReasoningDelta,
    StreamEnd,
    StreamItem,
    ThinkingBlock,
    ToolCall,
    ToolCallDelta,
    TransientFailure,
    UpstreamTimedOut,
    Usage,
    classify_status,
    connection_limits,
    message_marked,
    parse_retry_after,
    text_of,
    unsupported_params,
)

FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
                  "refusal": "content_filter", "pause_turn": "stop", "model_context_window_exceeded": "length"}
SUPPORTED = frozenset({"max_tokens", "temperature", "top_p", "stop", "json_schema", "tools", "tool_choice",
                       "parallel_tool_calls", "reasoning_effort", "user", CACHE_CONTROL})
THINKING_TYPES = ("thinking", "redacted_thinking")
TOOL_ID = re.compile(r"^[a-zA-Z0-9_-]+$")  # the pattern Anthropic checks tool_use ids against
LOWEST_TOP_P_WHILE_THINKING = 0.95
# thinking budget per OpenAI reasoning_effort; "none" turns thinking off (the API's default)
THINKING_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576, "xhigh": 32768}
MIN_THINKING_BUDGET = 1024
TOOL_CHOICES = {"auto": "auto", "required": "any", "none": "none"}
# A Claude stream's events held back until its answer begins: the gateway commits to a route at the first
# item, so an `error` event before the answer (an overload right after `message_start`) is retried or
# falls back like a 529 answered before the stream, and the client sees one `message_start`.
BEFORE_THE_ANSWER = frozenset({"message_start", "ping", "content_block_start"})
# the HTTP status Anthropic documents for each error type, for an `error` event inside a stream
STATUS_OF_ANTHROPIC_ERROR_TYPE = {kind: status for status, kind in ANTHROPIC_ERROR_TYPES.items()}


def sdk() -> types.ModuleType:
    """The `anthropic` package, imported when a provider first calls its upstream rather than at start-up
    (over a second of CPU here; docs/performance.md, "Third cut"). Bedrock's and Vertex's modules, which
    make their clients themselves, import it at once."""
    import anthropic

    return anthropic


class AnthropicProvider:
    native_wires = frozenset({ANTHROPIC_MESSAGES})
    # fields every request body carries besides the Messages API's own (a cloud's `anthropic_version`)
    body_fields: dict[str, Any] = {}
    # the status each error type named in an `error` event means (a cloud may name its own types)
    error_statuses: dict[str, int] = STATUS_OF_ANTHROPIC_ERROR_TYPE

    def __init__(self, *, api_key: str = "", base_url: str | None = None, default_model: str,
                 fallback_models: list[str], connect_timeout: float, read_timeout: float, max_tokens: int,
                 max_connections: int = 1000, name: str = "anthropic", client: Any = None):
        """`client`: an SDK client made elsewhere (`anthropic.AnthropicBedrock`, `AnthropicVertex`), used
        instead of one built from `api_key` and `base_url`."""
        self.name = name
        self.default_model = default_model
        self.fallback_models = fallback_models
        self.embedding_models: list[str] = []
        self.max_tokens = max_tokens
        self._client = MadeOnFirstUse(lambda: client or sdk().Anthropic(
            api_key=api_key, base_url=base_url or None, max_retries=0,
            timeout=client_timeout(connect_timeout, read_timeout), http_client=http_client(max_connections)))

    @property
    def client(self) -> Any:
        """The SDK client, made at the first call and then kept (`sdk`)."""
        return self._client.get()

    def list_models(self) -> list[str]:
        return [self.default_model, *self.fallback_models]

    def unsupported(self, request: CompletionRequest) -> list[str]:
        if native_params(request, "") is not None:
            return []  # sent as it came: Anthropic itself judges every field
        return unsupported_params(request, SUPPORTED)

    def check(self) -> None:
        try:
            self.client.with_options(timeout=5).models.list(limit=1)
        except sdk().APIError as exc:
            raise translate_error(exc, self.error_statuses) from None

    def embed(self, inputs: list[str], model: str, dimensions: int | None) -> Embeddings:
        raise ModelUnavailable("Anthropic has no embeddings API.", status=404)

    def complete(self, request: CompletionRequest, model: str) -> Completion:
        native = native_params(request, model)
        try:
            message = self.client.messages.create(**self._with_body_fields(native or self._params(request, model)))
        except (sdk().APIError, httpx2.HTTPError) as exc:
            raise translate_error(exc, self.error_statuses) from None
        blocks = message.content
        return Completion(text="".join(block.text for block in blocks if block.type == "text"), model=message.model,
                          finish_reason=FINISH_REASONS.get(message.stop_reason or "", "stop"),
                          usage=usage_from(message.usage.input_tokens, message.usage),
                          tool_calls=[ToolCall(block.id, block.name, json.dumps(block.input))
                                      for block in blocks if block.type == "tool_use"],
                          reasoning="".join(block.thinking for block in blocks if block.type == "thinking"),
                          native=message.to_dict(mode="json") if native else None,
                          thinking=[block.to_dict(mode="json") for block in blocks if block.type in THINKING_TYPES])

    def stream(self, request: CompletionRequest, model: str) -> Generator[StreamItem, None, None]:
        native = native_params(request, model)
        tally, tools, thoughts = Tally(model), ToolIndexes(), Thoughts()
        try:
            with self.client.messages.create(**self._with_body_fields(native or self._params(request, model)),
                                             stream=True) as events:
                held: list[NativeEvent] | None = []
                for event in events:
                    tally.count(event)
                    if not native:
                        yield from event_parts(event, tools, thoughts)
                    elif held is None:
                        yield NativeEvent(event.to_dict(mode="json"))
                    else:
                        held.append(NativeEvent(event.to_dict(mode="json")))
                        if event.type not in BEFORE_THE_ANSWER:
                            yield from held
                            held = None
                yield from held or ()  # a stream that ended before any answer
        except (sdk().APIError, httpx2.HTTPError) as exc:
            raise translate_error(exc, self.error_statuses) from None
        yield tally.end()

    def count_tokens(self, request: CompletionRequest, model: str) -> int | None:
        """Anthropic's exact count of a request in its own wire format (`/v1/messages/count_tokens`)."""
        params = native_params(request, model)
        if params is None:
            return None
        params.pop("max_tokens", None)
        try:
            return self.client.messages.count_tokens(**self._with_body_fields(params)).input_tokens
        except (sdk().APIError, httpx2.HTTPError) as exc:
            raise translate_error(exc, self.error_statuses) from None

    def _with_body_fields(self, params: dict[str, Any]) -> dict[str, Any]:
        """`params` with `body_fields` added to the body (as `extra_body`, which the SDK merges in before
        its cloud clients move the model into the path)."""
        if self.body_fields:
            params["extra_body"] = {**params.get("extra_body", {}), **self.body_fields}
        return params

    def _params(self, request: CompletionRequest, model: str) -> dict[str, Any]:
        system = system_param([m for m in request.messages if m["role"] in ("system", "developer")])
        thinking = bool(request.reasoning_effort and request.reasoning_effort != "none")
        turns = to_anthropic_messages(request.messages)
        if thinking and thinking_lost(turns):
            thinking = False  # Anthropic: "To avoid this requirement, disable `thinking`."
        if not thinking:
            turns = without_thinking(turns)
        params: dict[str, Any] = {"model": model, "max_tokens": request.max_tokens or self.max_tokens,
                                  "messages": turns}
        sampling = sampling_params(request, thinking)
        if sampling:
            params["extra_body"] = sampling
        if system:
            params["system"] = system
        if request.stop:
            params["stop_sequences"] = request.stop
        if request.user:
            params["metadata"] = {"user_id": request.user}
        if request.json_schema and request.json_schema["name"] != "json_object":
            params["output_config"] = {"format": {"type": "json_schema", "schema": request.json_schema["schema"]}}
        elif request.json_schema:
            params["output_config"] = {"format": {"type": "json_schema", "schema": {"type": "object"}}}
        if request.tools:
            params["tools"] = [anthropic_tool(tool) for tool in request.tools]
        choice = tool_choice(request)
        if choice:
            params["tool_choice"] = choice
        if thinking:
            params.update(thinking_params(request, self.max_tokens))
        return params


def client_timeout(connect_timeout: float, read_timeout: float) -> httpx2.Timeout:
    return httpx2.Timeout(read_timeout, connect=connect_timeout)


def http_client(max_connections: int) -> httpx2.Client:
    """The SDK's HTTP client with this server's transport: one pool, the first-byte timeout."""
    return sdk().DefaultHttpxClient(transport=FirstByteTransport(limits=connection_limits(max_connections)))


def native_params(request: CompletionRequest, model: str) -> dict[str, Any] | None:
    """The SDK's arguments for a request that came in Anthropic's own wire format, else None: the
    body as it came, with the route's model; what the SDK's signature lacks goes as `extra_body`."""
    if request.native is None or request.native.wire != ANTHROPIC_MESSAGES:
        return None
    body = {name: value for name, value in request.native.body.items() if name != "stream"}
    params: dict[str, Any] = {"model": model, "messages": body.pop("messages"), "extra_body": body}
    if "max_tokens" in body:
        params["max_tokens"] = body.pop("max_tokens")
    body.pop("model", None)
    if request.native.headers:
        params["extra_headers"] = request.native.headers
    return params


class Tally:
    """The model that answered, why it stopped and the usage, counted from a stream's events."""

    def __init__(self, model: str):
        self.model, self.finish_reason, self.input_tokens, self.usage = model, "stop", 0, Usage()
        self.start: Any = None  # message_start's usage

    def count(self, event: Any) -> None:
        if event.type == "message_start":
            self.model = event.message.model or self.model
            self.start = event.message.usage
            self.input_tokens = self.start.input_tokens or 0
        elif event.type == "message_delta":
            self.finish_reason = FINISH_REASONS.get(event.delta.stop_reason or "", "stop")
            self.usage = usage_from(event.usage.input_tokens or self.input_tokens, event.usage, self.start)

    def end(self) -> StreamEnd:
        return StreamEnd(self.model, self.finish_reason, self.usage)


def event_parts(event: Any, tools: "ToolIndexes", thoughts: "Thoughts") -> Iterator[StreamItem]:
    """The neutral parts of one streamed event."""
    if event.type == "content_block_delta":
        thoughts.add(event.index, event.delta)
        yield from delta_parts(event.index, event.delta, tools)
    elif event.type == "content_block_start" and event.content_block.type == "tool_use":
        block = event.content_block
        yield ToolCallDelta(tools.start(event.index), block.id, block.name)
    elif event.type == "content_block_start" and event.content_block.type in THINKING_TYPES:
        thoughts.start(event.index, event.content_block.to_dict(mode="json"))
    elif event.type == "content_block_stop" and tools.unfinished(event.index):
        yield ToolCallDelta(tools.index[event.index], arguments="{}")  # a call without input
    elif event.type == "content_block_stop" and event.index in thoughts.blocks:
        yield ThinkingBlock(thoughts.blocks.pop(event.index))


class Thoughts:
    """The thinking blocks of a stream being put together: the text of `thinking_delta`s and the
    `signature_delta` (a `redacted_thinking` block comes whole in its start)."""

    def __init__(self) -> None:
        self.blocks: dict[int, dict[str, Any]] = {}

    def start(self, block_index: int, block: dict[str, Any]) -> None:
        self.blocks[block_index] = block

    def add(self, block_index: int, delta: Any) -> None:
        block = self.blocks.get(block_index)
        if block is None:
            return
        if delta.type == "thinking_delta":
            block["thinking"] = block.get("thinking", "") + delta.thinking
        elif delta.type == "signature_delta":
            block["signature"] = block.get("signature", "") + delta.signature


class ToolIndexes:
    """OpenAI numbers tool calls 0, 1, ...; Anthropic numbers every content block. This maps the
    second to the first, and remembers which calls have had input, so one without gets `{}`."""

    def __init__(self) -> None:
        self.index: dict[int, int] = {}
        self.with_input: set[int] = set()

    def start(self, block_index: int) -> int:
        self.index[block_index] = len(self.index)
        return self.index[block_index]

    def unfinished(self, block_index: int) -> bool:
        return block_index in self.index and block_index not in self.with_input


def delta_parts(block_index: int, delta: Any, tools: ToolIndexes) -> Iterator[StreamItem]:
    if delta.type == "text_delta" and delta.text:
        yield delta.text
    elif delta.type == "thinking_delta" and delta.thinking:
        yield ReasoningDelta(delta.thinking)
    elif delta.type == "input_json_delta" and delta.partial_json and block_index in tools.index:
        tools.with_input.add(block_index)
        yield ToolCallDelta(tools.index[block_index], arguments=delta.partial_json)


def usage_from(input_tokens: int, usage: Any, start: Any = None) -> Usage:
    """The neutral usage of Anthropic's: its `input_tokens` excludes the tokens read from and written to
    the prompt cache, which the neutral `prompt_tokens` includes (`Usage`). `start` is a stream's first
    usage (`message_start`'s), for the cache counts its `message_delta` leaves out."""
    details = getattr(usage, "output_tokens_details", None)
    read = getattr(usage, "cache_read_input_tokens", None) or getattr(start, "cache_read_input_tokens", None) or 0
    written = (getattr(usage, "cache_creation_input_tokens", None)
               or getattr(start, "cache_creation_input_tokens", None) or 0)
    split = getattr(usage, "cache_creation", None) or getattr(start, "cache_creation", None)
    return Usage(input_tokens + read + written, usage.output_tokens or 0, getattr(details, "thinking_tokens", 0) or 0,
                 read, written, getattr(split, "ephemeral_1h_input_tokens", None) or 0)


def thinking_params(request: CompletionRequest, default_max_tokens: int) -> dict[str, Any]:
    """`thinking` with the budget of `reasoning_effort`, which must stay below `max_tokens`: without a
    caller's max_tokens the answer keeps its usual allowance on top of the budget."""
    budget = THINKING_BUDGETS.get(request.reasoning_effort or "", THINKING_BUDGETS["medium"])
    if request.max_tokens is None:
        return {"thinking": {"type": "enabled", "budget_tokens": budget}, "max_tokens": budget + default_max_tokens}
    budget = min(budget, request.max_tokens - 1)
    if budget < MIN_THINKING_BUDGET:
        raise CallerFault(f"reasoning_effort needs max_tokens above {MIN_THINKING_BUDGET} on Anthropic "
                          f"(its smallest thinking budget).", status=400)
    return {"thinking": {"type": "enabled", "budget_tokens": budget}}


def sampling_params(request: CompletionRequest, thinking: bool) -> dict[str, float]:
    """`temperature` and `top_p` for `extra_body`; with thinking on, a 400 for any value Anthropic
    refuses then (temperature other than 1, top_p below 0.95), naming it."""
    params = {name: value for name, value in (("temperature", request.temperature), ("top_p", request.top_p))
              if value is not None}
    if thinking and params.get("temperature", 1) != 1:
        raise CallerFault("temperature: Anthropic takes only 1 (or no temperature) while thinking is on "
                          "(reasoning_effort); leave temperature out or turn reasoning off.", status=400)
    if thinking and params.get("top_p", 1) < LOWEST_TOP_P_WHILE_THINKING:
        raise CallerFault(f"top_p: Anthropic takes only {LOWEST_TOP_P_WHILE_THINKING} to 1 (or no top_p) while "
                          "thinking is on (reasoning_effort).", status=400)
    return params


def thinking_lost(turns: list[dict[str, Any]]) -> bool:
    """Whether the conversation is inside a tool loop (it ends with tool results) whose last assistant
    turn does not start with its thinking: Anthropic refuses that while thinking is on."""
    if not turns or turns[-1]["role"] != "user":
        return False
    if not any(block["type"] == "tool_result" for block in turns[-1]["content"]):
        return False
    answer = next((turn for turn in reversed(turns) if turn["role"] == "assistant"), None)
    return answer is not None and (not answer["content"] or answer["content"][0]["type"] not in THINKING_TYPES)


def without_thinking(turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The turns without thinking blocks, for a request with thinking off."""
    return [{**turn, "content": [b for b in turn["content"] if b["type"] not in THINKING_TYPES]}
            if turn["role"] == "assistant" else turn for turn in turns]


def system_param(messages: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """The system and developer messages as Anthropic's `system`: their texts joined, or, when one
    carries a `cache_control` mark, text blocks (one per part, the marks where they were)."""
    if not any(map(message_marked, messages)):
        return "\n\n".join(text_of(m["content"]) for m in messages)
    blocks: list[dict[str, Any]] = []
    for message in messages:
        blocks += marked_last([block for block in content_blocks(message["content"]) if block["type"] == "text"],
                              message.get(CACHE_CONTROL))
    return blocks


def marked_last(blocks: list[dict[str, Any]], mark: dict[str, Any] | None) -> list[dict[str, Any]]:
    """`blocks` with a message's `cache_control` mark on its last block (LiteLLM's meaning of the mark)."""
    if mark and blocks:
        blocks[-1] = {**blocks[-1], CACHE_CONTROL: mark}
    return blocks


def anthropic_tool(tool: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": tool["name"], "input_schema": tool.get("parameters") or {"type": "object"}}
    if tool.get("description"):
        spec["description"] = tool["description"]
    if tool.get("strict") is not None:
        spec["strict"] = tool["strict"]
    if CACHE_CONTROL in tool:
        spec[CACHE_CONTROL] = tool[CACHE_CONTROL]
    return spec


def tool_choice(request: CompletionRequest) -> dict[str, Any] | None:
    """OpenAI's tool_choice and parallel_tool_calls as Anthropic's one `tool_choice`."""
    choice = request.tool_choice
    if choice is None and request.parallel_tool_calls is not False:
        return None
    if isinstance(choice, dict):
        spec: dict[str, Any] = {"type": "tool", "name": choice["name"]}
    else:
        spec = {"type": TOOL_CHOICES[choice or "auto"]}
    if request.parallel_tool_calls is False and spec["type"] != "none":
        spec["disable_parallel_tool_use"] = True
    return spec


def to_anthropic_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation without its system messages, as alternating turns: a tool result is a
    `tool_result` block of a user turn, and consecutive messages of one role share one turn."""
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message["role"] in ("system", "developer"):
            continue
        role = "assistant" if message["role"] == "assistant" else "user"
        blocks = message_blocks(message)
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += blocks
        else:
            turns.append({"role": role, "content": blocks})
    return turns


def message_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    """A message's blocks: an assistant's thinking first (as Anthropic wants it), text, tool calls."""
    if message["role"] == "tool":
        return marked_last([{"type": "tool_result", "tool_use_id": tool_id(message["tool_call_id"]),
                             "content": content_blocks(message["content"])}], message.get(CACHE_CONTROL))
    blocks = [dict(block) for block in message.get("thinking") or () if block.get("type") in THINKING_TYPES]
    blocks += content_blocks(message.get("content"))
    for call in message.get("tool_calls") or ():
        blocks.append({"type": "tool_use", "id": tool_id(call["id"]), "name": call["name"],
                       "input": parse_arguments(call["arguments"])})
    return marked_last(blocks, message.get(CACHE_CONTROL))


def tool_id(call_id: str) -> str:
    """`call_id` if Anthropic takes it as a tool_use id, else a stable id made from it."""
    if TOOL_ID.match(call_id):
        return call_id
    return "toolu_" + hashlib.sha256(call_id.encode()).hexdigest()[:24]


def content_blocks(content: str | list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    if not content:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    blocks: list[dict[str, Any]] = []
    for part in content:
        if part["type"] == "image" and part.get("url"):
            block: dict[str, Any] = {"type": "image", "source": {"type": "url", "url": part["url"]}}
        elif part["type"] == "image":
            block = {"type": "image", "source": {"type": "base64", "media_type": part["media_type"],
                                                 "data": part["data"]}}
        else:
            block = {"type": "text", "text": part["text"]}
        if CACHE_CONTROL in part:
            block[CACHE_CONTROL] = part[CACHE_CONTROL]
        blocks.append(block)
    return blocks


def parse_arguments(arguments: str) -> dict[str, Any]:
    """A tool call's JSON arguments as the object Anthropic wants; a caller's malformed JSON is a 400."""
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        raise CallerFault("A tool call's function.arguments is not valid JSON.", status=400) from None
    if not isinstance(value, dict):
        raise CallerFault("A tool call's function.arguments must be a JSON object.", status=400)
    return value


def failure_status(response_status: int, error: dict[str, Any],
                   error_statuses: dict[str, int] = STATUS_OF_ANTHROPIC_ERROR_TYPE) -> int:
    """The status of a failure: the response's, or for an `error` event inside a stream (which began
    with a 200, and which the SDK raises with that status) the one Anthropic documents for the
    error's type, so an `overloaded_error` mid-stream is retried like a 529, not refused like a 4xx."""
    if response_status >= 400:
        return response_status
    return error_statuses.get(str(error.get("type")), 500)


def translate_error(exc: Exception, error_statuses: dict[str, int] = STATUS_OF_ANTHROPIC_ERROR_TYPE) -> ProviderFailure:
    anthropic = sdk()
    if isinstance(exc, (anthropic.APITimeoutError, httpx2.TimeoutException)):
        return UpstreamTimedOut("timed out waiting for the provider")
    if isinstance(exc, anthropic.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        nested = body.get("error")
        error = nested if isinstance(nested, dict) else body
        status = failure_status(exc.status_code, error, error_statuses)
        message = f"{status}: {error.get('message') or exc.message}"
        return classify_status(status, message, parse_retry_after(exc.response.headers))
    if isinstance(exc, (anthropic.APIConnectionError, httpx2.HTTPError)):
        return TransientFailure(f"connection to the provider failed: {type(exc).__name__}")
    if isinstance(exc, anthropic.APIError):
        return TransientFailure(f"provider error: {exc.message}")
    return TransientFailure(str(exc))
