"""Server-sent events: the event formats we speak (the pump that feeds them is `app.llm.pump`).

`OpenAIChunks` writes OpenAI's `chat.completion.chunk` stream (for `/v1/...`); `ResponsesEvents`
the typed events of OpenAI's Responses API (`/v1/responses`); `AnthropicEvents` Anthropic's
Messages stream (for `/v1/messages`); `NativeEvents` this server's own events for `/chat`
(`start`, `fallback`, `delta`, `done`, `error`).
"""
from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
import time
import uuid
from typing import Any

from app.core.errors import APIError, UpstreamError, UpstreamUnavailable, anthropic_error_body, openai_error_body
from app.llm.gateway import OVERLOADED, FailedAttempt, Started, StreamFailed
from app.llm.providers.base import ChoicePart, NativeEvent, ReasoningDelta, StreamEnd, ThinkingBlock, ToolCallDelta
from app.llm.pump import HEARTBEAT

HEARTBEAT_COMMENT = ": heartbeat\n\n"
log = logging.getLogger("aiserver.sse")
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_END = object()


def data_line(payload: str) -> str:
    return f"data: {payload}\n\n"


def interrupted(event: StreamFailed) -> UpstreamError:
    """A stream that broke after its first text, as the error its last event reports: unavailable (503,
    Anthropic's `overloaded_error`) when the provider said it was overloaded, else a 502."""
    kind = UpstreamUnavailable if event.status in OVERLOADED else UpstreamError
    return kind(event.message, code="stream_interrupted", details={"provider": event.provider, "model": event.model})


class OpenAIChunks:
    """OpenAI's streaming format; content chunks come from a template, so only the text is encoded.
    Reasoning goes out as `delta.reasoning_content`, and each whole Claude thinking block, once its
    signature is in, as one `delta.thinking_blocks` (LiteLLM's convention); tool calls as OpenAI's
    `delta.tool_calls` fragments (the first of a call with its `id`, `type`, `function.name` and
    Gemini's signature as `extra_content`). An answer with several choices (`n` > 1) comes either as an
    OpenAI-compatible upstream's own chunks (`NativeEvent`), each choice's deltas under its `index`, which
    go out with this stream's id, or (any other vendor: Gemini's candidates) as `ChoicePart`s, written
    as chunks under their choice's `index` (a choice's first delta with its `role`); either way each
    choice's own finish chunk ends it, and the stream adds none."""

    def __init__(self, include_usage: bool = False, extra: dict[str, Any] | None = None):
        self.created = int(time.time())
        self.include_usage = include_usage
        self.extra = extra or {}
        self.prefix = self.suffix = ""
        self.model = ""
        self.several = False  # the choices end themselves (`n` > 1)
        self.begun: set[int] = {0}  # the choices whose `role` went out (the first's with `Started`)

    @functools.cached_property
    def id(self) -> str:
        """Made at the first chunk: a whole answer is formatted elsewhere and needs none."""
        return f"chatcmpl-{uuid.uuid4().hex[:24]}"

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None, index: int = 0, **fields: Any) -> str:
        body = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [{"index": index, "delta": delta, "finish_reason": finish_reason}], **fields}
        return data_line(json.dumps(body, ensure_ascii=False))

    def choice(self, event: ChoicePart) -> str:
        """A chunk of one of several choices: its delta, or its end."""
        self.several = True
        if event.part is None:
            return self.chunk({}, event.finish_reason or "stop", event.index)
        part = event.part
        if isinstance(part, str):
            delta: dict[str, Any] = {"content": part}
        elif isinstance(part, ReasoningDelta):
            delta = {"reasoning_content": part.text}
        else:
            delta = {"tool_calls": [tool_call_delta(part)]}
        if event.index not in self.begun:
            self.begun.add(event.index)
            delta = {"role": "assistant", **delta}
        return self.chunk(delta, index=event.index)

    def format(self, event: Any) -> str:
        if isinstance(event, str):
            return self.prefix + json.dumps(event, ensure_ascii=False) + self.suffix
        if isinstance(event, ReasoningDelta):
            return self.chunk({"reasoning_content": event.text})
        if isinstance(event, ThinkingBlock):
            return self.chunk({"thinking_blocks": [event.block]})
        if isinstance(event, ToolCallDelta):
            return self.chunk({"tool_calls": [tool_call_delta(event)]})
        if isinstance(event, ChoicePart):
            return self.choice(event)
        if isinstance(event, NativeEvent):
            self.several = True
            return data_line(json.dumps({**event.event, "id": self.id, "object": "chat.completion.chunk",
                                         "created": self.created}, ensure_ascii=False))
        if event is HEARTBEAT:
            return HEARTBEAT_COMMENT
        if isinstance(event, Started):
            self.model = event.model
            self.prefix, self.suffix = self.chunk({"content": "\x00"}).split('"\\u0000"')
            extra = dict(self.extra, provider=event.provider)
            if event.attempts:
                extra["attempts"] = [a.to_dict() for a in event.attempts]
            return self.chunk({"role": "assistant", "content": ""}, **extra)
        if isinstance(event, StreamEnd):
            out = "" if self.several else self.chunk({}, event.finish_reason)
            if self.include_usage:
                out += data_line(json.dumps({"id": self.id, "object": "chat.completion.chunk",
                                             "created": self.created, "model": event.model, "choices": [],
                                             "usage": event.usage.to_dict()}))
            return out + "data: [DONE]\n\n"
        if isinstance(event, StreamFailed):
            event = interrupted(event)
        if isinstance(event, APIError):
            return data_line(json.dumps(openai_error_body(event)))
        return ""


def tool_call_delta(delta: ToolCallDelta) -> dict[str, Any]:
    function: dict[str, str] = {"arguments": delta.arguments}
    call: dict[str, Any] = {"index": delta.index}
    if delta.id is not None:
        call.update(id=delta.id, type="function")
    if delta.name is not None:
        function["name"] = delta.name
    call["function"] = function
    return {**call, **signature_content(delta.signature)}


def signature_content(signature: str | None) -> dict[str, Any]:
    """A tool call's `extra_content` holding Gemini's thought signature, where Google's OpenAI-compatible
    API puts it (and the OpenAI Agents SDK reads it); nothing without one."""
    return {"extra_content": {"google": {"thought_signature": signature}}} if signature else {}


ANTHROPIC_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                          "content_filter": "refusal"}


def anthropic_stop_reason(finish_reason: str) -> str:
    """Anthropic's `stop_reason` for a neutral finish reason."""
    return ANTHROPIC_STOP_REASONS.get(finish_reason, "end_turn")


def anthropic_message_id() -> str:
    return f"msg_{uuid.uuid4().hex[:24]}"


class AnthropicEvents:
    """Anthropic's Messages stream: each event an `event: {type}` line and its `data:`. A Claude
    model's own events (`NativeEvent`) go out as they came. Any other provider's parts are written as
    the events Claude sends: `message_start` with the first part, one content block per run of
    text, of thinking, or per tool call (its `input` streamed as `input_json_delta`), then
    `message_delta` with the stop reason and usage, and `message_stop`. A heartbeat is a `ping`."""

    def __init__(self) -> None:
        self.id = anthropic_message_id()
        self.model = ""
        self.native = self.started = False
        self.blocks: dict[Any, int] = {}  # the latest block of each key (kind, or tool call index): its index
        self.open_block: Any = None
        self.count = 0

    @staticmethod
    def event(payload: dict[str, Any]) -> str:
        return f"event: {payload['type']}\n" + data_line(json.dumps(payload, ensure_ascii=False))

    def format(self, event: Any) -> str:
        if isinstance(event, NativeEvent):
            self.native = True
            return self.event(event.event)
        if isinstance(event, Started):
            self.model = event.model
            return ""
        if event is HEARTBEAT:
            return self.event({"type": "ping"})
        if isinstance(event, (str, ReasoningDelta, ToolCallDelta)):
            return self.message_start() + self.part(event)
        if isinstance(event, StreamEnd):
            return "" if self.native else self.message_end(event)
        if isinstance(event, StreamFailed):
            event = interrupted(event)
        if isinstance(event, APIError):
            return self.event(anthropic_error_body(event))
        return ""

    def message_start(self) -> str:
        if self.started:
            return ""
        self.started = True
        message: dict[str, Any] = {"id": self.id, "type": "message", "role": "assistant", "model": self.model,
                                   "content": [], "stop_reason": None, "stop_sequence": None,
                                   "usage": {"input_tokens": 0, "output_tokens": 0}}
        return self.event({"type": "message_start", "message": message})

    def part(self, part: str | ReasoningDelta | ToolCallDelta) -> str:
        if isinstance(part, str):
            return self.delta("text", {"type": "text", "text": ""}, {"type": "text_delta", "text": part})
        if isinstance(part, ReasoningDelta):
            return self.delta("thinking", {"type": "thinking", "thinking": "", "signature": ""},
                              {"type": "thinking_delta", "thinking": part.text})
        block: dict[str, Any] = {"type": "tool_use", "id": part.id, "name": part.name, "input": {}}
        out = self.signed(part.id, part.signature) if part.id is not None and part.signature else ""
        out += self.open(("tool", part.index), block) if part.id is not None else ""
        if part.arguments:
            index = self.blocks[("tool", part.index)]
            out += self.event({"type": "content_block_delta", "index": index,
                               "delta": {"type": "input_json_delta", "partial_json": part.arguments}})
        return out

    def signed(self, call_id: str, signature: str) -> str:
        """A thinking block whose signature seals the call's thought signature (Gemini's), before the
        call: clients keep thinking blocks whole, and send them back with the turn."""
        signed = {"type": "signature_delta", "signature": seal({"signatures": {call_id: signature}})}
        out = self.open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
        return out + self.event({"type": "content_block_delta", "index": self.blocks["thinking"], "delta": signed})

    def delta(self, key: str, block: dict[str, Any], delta: dict[str, Any]) -> str:
        out = self.open(key, block) if self.open_block != key else ""
        return out + self.event({"type": "content_block_delta", "index": self.blocks[key], "delta": delta})

    def open(self, key: Any, block: dict[str, Any]) -> str:
        """Close the open block and start a new one for `key` (a new text run gets a new block)."""
        out = self.close()
        self.blocks[key], self.open_block = self.count, key
        self.count += 1
        return out + self.event({"type": "content_block_start", "index": self.blocks[key], "content_block": block})

    def close(self) -> str:
        if self.open_block is None:
            return ""
        index, self.open_block = self.blocks[self.open_block], None
        return self.event({"type": "content_block_stop", "index": index})

    def message_end(self, end: StreamEnd) -> str:
        delta = {"stop_reason": anthropic_stop_reason(end.finish_reason), "stop_sequence": None}
        usage = anthropic_usage(end.usage)
        return (self.message_start() + self.close() + self.event({"type": "message_delta", "delta": delta,
                                                                  "usage": usage})
                + self.event({"type": "message_stop"}))


def anthropic_usage(usage: Any) -> dict[str, int]:
    """Anthropic's usage of a neutral `Usage`: its `input_tokens` exclude the tokens read from and
    written to the prompt cache, which it counts apart."""
    return {"input_tokens": usage.uncached_prompt_tokens, "cache_creation_input_tokens": usage.cache_write_tokens,
            "cache_read_input_tokens": usage.cached_tokens, "output_tokens": usage.completion_tokens}


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    """A Responses API output message holding `text` (no content part while it has none and streams)."""
    content = [output_text(text)] if text or status == "completed" else []
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": content}


def output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def function_call_item(item_id: str, call_id: str, name: str, arguments: str,
                       status: str = "completed") -> dict[str, Any]:
    return {"type": "function_call", "id": item_id, "call_id": call_id, "name": name, "arguments": arguments,
            "status": status}


def reasoning_item(item_id: str, text: str, thinking: list[dict[str, Any]] | None = None,
                   signatures: dict[str, str] | None = None) -> dict[str, Any]:
    """The model's reasoning as a Responses API reasoning item, its text as the summary; the reasoning
    state that must go back with the next turn (Claude's signed thinking blocks, Gemini's thought
    signatures by call id) sealed in its `encrypted_content`, as OpenAI's own reasoning state is."""
    item: dict[str, Any] = {"type": "reasoning", "id": item_id,
                            "summary": [{"type": "summary_text", "text": text}] if text else []}
    if thinking or signatures:
        item["encrypted_content"] = seal({"thinking": thinking or [], "signatures": signatures or {}})
    return item


SEALED = "aiserver.v1."  # how this server's encrypted_content begins (OpenAI's own never does)


def seal(state: dict[str, Any]) -> str:
    """Reasoning state as an opaque string for `encrypted_content` (opaque, not secret: the client had it)."""
    return SEALED + base64.urlsafe_b64encode(json.dumps(state, separators=(",", ":")).encode()).decode("ascii")


def unseal(content: Any) -> dict[str, Any]:
    """The reasoning state `seal` made; {} for anything else (another server's encrypted content)."""
    if not isinstance(content, str) or not content.startswith(SEALED):
        return {}
    try:
        state = json.loads(base64.urlsafe_b64decode(content[len(SEALED):]))
    except (ValueError, binascii.Error):
        return {}
    return state if isinstance(state, dict) else {}


def responses_usage(usage: Any) -> dict[str, Any]:
    return {"input_tokens": usage.prompt_tokens, "input_tokens_details": {"cached_tokens": usage.cached_tokens},
            "output_tokens": usage.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
            "total_tokens": usage.total_tokens}


INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}
RESPONSES_ENDS = ("response.completed", "response.incomplete", "response.failed")


def responses_status(finish_reason: str) -> dict[str, Any]:
    """A Responses answer's `status` and `incomplete_details` for a neutral finish reason: `incomplete`
    when it stopped at the token limit (`max_output_tokens`) or was filtered."""
    reason = INCOMPLETE_REASONS.get(finish_reason)
    return {"status": "incomplete" if reason else "completed",
            "incomplete_details": {"reason": reason} if reason else None}


class ResponsesEvents:
    """The Responses API's typed events, each named by its `event:` line and numbered by
    `sequence_number`: `response.created` and `response.in_progress`; per output item
    `response.output_item.added`, its deltas (`response.content_part.added` then
    `response.output_text.delta`, or `response.function_call_arguments.delta`), their `.done`
    events and `response.output_item.done`; then `response.completed` with the whole response, or
    `response.incomplete` when it stopped at `max_output_tokens`.
    Reasoning is one reasoning item, its text as the summary, sent when it is complete. A failure
    after the answer began is `response.failed`. `envelope` is the response object without its
    output (the request's echo: `id`, `model`, `instructions`, `tools`...). `final()` is the whole
    response as the stream left it, for storing.

    An upstream with the Responses API itself streams its own events (`NativeEvent`): they go out as
    they came, each response object in them saying what this server did with it (`previous_response_id`,
    `store`), and its output items are kept for `final()`. Which kind of stream it is shows in the
    first item after `Started`, so the opening events wait for it."""

    def __init__(self, envelope: dict[str, Any]):
        self.envelope = envelope
        self.sequence = 0
        self.output: list[dict[str, Any]] = []
        self.open_item: dict[str, Any] | None = None
        self.calls: dict[int, dict[str, Any]] = {}  # tool call index to its item
        self.reasoning = ""
        self.thinking: list[dict[str, Any]] = []  # Claude's signed blocks, for the next reasoning item
        self.signatures: dict[str, str] = {}  # Gemini's signatures by call id, likewise
        self.provider: str | None = None
        self.ended: dict[str, Any] | None = None  # the response of the last event, once sent
        self.opened = False
        self.native = False

    def event(self, kind: str, **fields: Any) -> str:
        payload = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return f"event: {kind}\n" + data_line(json.dumps(payload, ensure_ascii=False))

    def response(self, status: str, **fields: Any) -> dict[str, Any]:
        return {**self.envelope, "status": status, "output": self.output, **fields}

    def format(self, event: Any) -> str:
        if isinstance(event, Started):
            self.envelope["model"], self.provider = event.model, event.provider
            return ""
        if event is HEARTBEAT:
            return HEARTBEAT_COMMENT
        if isinstance(event, NativeEvent) and not self.opened:
            self.opened = self.native = True
        if self.native:
            return self.native_event(event)
        return self.opening() + self.translated(event)

    def opening(self) -> str:
        """`response.created` and `response.in_progress`, before the first event of a translated answer."""
        if self.opened:
            return ""
        self.opened = True
        snapshot = self.response("in_progress", output=[])
        return self.event("response.created", response=snapshot) + self.event("response.in_progress",
                                                                               response=snapshot)

    def translated(self, event: Any) -> str:
        if isinstance(event, str):
            return self.text(event)
        if isinstance(event, ReasoningDelta):
            self.reasoning += event.text
            return ""
        if isinstance(event, ThinkingBlock):
            self.thinking.append(event.block)
            return ""
        if isinstance(event, ToolCallDelta):
            return self.tool_call(event)
        if isinstance(event, StreamEnd):
            closing = self.close()
            status = responses_status(event.finish_reason)
            self.ended = self.response(model=event.model, usage=responses_usage(event.usage), **status)
            return closing + self.event(f"response.{status['status']}", response=self.ended)
        return self.failure(event, self.close)

    def failure(self, event: Any, closing: Any) -> str:
        """`response.failed` for a stream that broke after it began (`closing()` ends its open item)."""
        if isinstance(event, StreamFailed):
            event = interrupted(event)
        if isinstance(event, APIError):
            out = closing()
            self.ended = self.response("failed", error={"code": event.code, "message": event.message})
            return out + self.event("response.failed", response=self.ended)
        return ""

    def native_event(self, event: Any) -> str:
        """An upstream's own event as it came (its response object saying what this server did with it);
        its end was its last event, and a failure after it began is `response.failed` numbered after it."""
        if not isinstance(event, NativeEvent):
            return "" if isinstance(event, StreamEnd) else self.failure(event, self.cut)
        payload = event.event
        if isinstance(payload.get("response"), dict):
            response = {**payload["response"], "previous_response_id": self.envelope["previous_response_id"],
                        "store": self.envelope["store"]}
            payload = {**payload, "response": response}
            self.envelope = {key: value for key, value in response.items() if key not in ("status", "output")}
            if payload.get("type") in RESPONSES_ENDS:
                self.ended = response
        else:
            self.follow(payload)
        if isinstance(payload.get("sequence_number"), int):
            self.sequence = payload["sequence_number"]
        self.sequence += 1
        return f"event: {payload.get('type')}\n" + data_line(json.dumps(payload, ensure_ascii=False))

    def cut(self) -> str:
        """Mark the items still in progress `incomplete` (an upstream stream that broke off)."""
        for item in self.output:
            if item.get("status") == "in_progress":
                item["status"] = "incomplete"
        return ""

    def follow(self, payload: dict[str, Any]) -> None:
        """Keep the output items of an upstream's stream as they grow, for a stream that ends early."""
        kind, index = payload.get("type"), payload.get("output_index")
        if kind in ("response.output_item.added", "response.output_item.done") and isinstance(index, int):
            item = json.loads(json.dumps(payload.get("item") or {}))
            self.output[index:index + 1] = [item]
            return
        item = self.output[index] if isinstance(index, int) and index < len(self.output) else None
        if item is None:
            return
        if kind == "response.content_part.added":
            item.setdefault("content", []).append(dict(payload.get("part") or {}))
        elif kind == "response.output_text.delta" and item.get("content"):
            part = item["content"][min(payload.get("content_index") or 0, len(item["content"]) - 1)]
            part["text"] = part.get("text", "") + str(payload.get("delta", ""))
        elif kind == "response.function_call_arguments.delta":
            item["arguments"] = item.get("arguments", "") + str(payload.get("delta", ""))

    def final(self) -> dict[str, Any] | None:
        """The whole response as the stream left it, with `provider`: completed or failed as its last
        event said, else (the client left) `incomplete` with the output so far, its open item
        `incomplete` too; None if no event was sent."""
        if not self.sequence:
            return None
        if self.ended is None:
            self.flush_reasoning()
            for item in self.output:
                if item.get("status") == "in_progress":
                    item["status"] = "incomplete"
            self.ended = self.response("incomplete")
        return {**self.ended, "provider": self.provider}

    def add(self, item: dict[str, Any]) -> str:
        out = self.close() + self.flush_reasoning()
        self.output.append(item)
        self.open_item = item
        return out + self.event("response.output_item.added", output_index=len(self.output) - 1, item=item)

    def flush_reasoning(self) -> str:
        """The reasoning so far as one whole reasoning item, before the next item starts."""
        if not (self.reasoning or self.thinking or self.signatures):
            return ""
        item = reasoning_item(new_id("rs"), self.reasoning, self.thinking, self.signatures)
        self.reasoning, self.thinking, self.signatures = "", [], {}
        self.output.append(item)
        index = len(self.output) - 1
        return (self.event("response.output_item.added", output_index=index, item={**item, "summary": []})
                + self.event("response.output_item.done", output_index=index, item=item))

    def text(self, delta: str) -> str:
        out, item = "", self.open_item
        if item is None or item["type"] != "message":
            item = message_item(new_id("msg"), "", "in_progress")
            out = self.add(item)
            out += self.event("response.content_part.added", **self.place(), content_index=0, part=output_text(""))
            item["content"] = [output_text("")]
        item["content"][0]["text"] += delta
        return out + self.event("response.output_text.delta", **self.place(), content_index=0, delta=delta,
                                logprobs=[])

    def tool_call(self, delta: ToolCallDelta) -> str:
        out = ""
        if delta.id is not None and delta.signature:
            self.signatures[delta.id] = delta.signature  # in the reasoning item sent before the call
        if delta.id is not None:
            self.calls[delta.index] = function_call_item(new_id("fc"), delta.id, delta.name or "", "", "in_progress")
            out = self.add(self.calls[delta.index])
        item = self.calls[delta.index]
        if delta.arguments:
            item["arguments"] += delta.arguments
            index = self.output.index(item)
            out += self.event("response.function_call_arguments.delta", item_id=item["id"], output_index=index,
                              delta=delta.arguments)
        return out

    def place(self) -> dict[str, Any]:
        assert self.open_item is not None
        return {"item_id": self.open_item["id"], "output_index": self.output.index(self.open_item)}

    def close(self) -> str:
        """The `.done` events of the open item (then it is complete)."""
        item = self.open_item
        if item is None:
            return self.flush_reasoning()
        place, out = self.place(), ""
        item["status"], self.open_item = "completed", None
        if item["type"] == "message":
            part = item["content"][0]
            out += self.event("response.output_text.done", **place, content_index=0, text=part["text"], logprobs=[])
            out += self.event("response.content_part.done", **place, content_index=0, part=part)
        else:
            out += self.event("response.function_call_arguments.done", **place, name=item["name"],
                              arguments=item["arguments"])
        return out + self.event("response.output_item.done", output_index=place["output_index"], item=item) \
            + self.flush_reasoning()


class NativeEvents:
    """This server's own stream events for `/chat`, `/chat/{provider}` and `/chat/gist`: `start`,
    `fallback`, `delta`, `done` and `error`, plus any event that writes itself (a `native_event()`
    method returning its payload, e.g. the gist chat's `retry` and `gist`). With `error_status`, an
    error event also carries the HTTP `status` the error would have had; `extra_start` is added to
    `start`, `extra_done` to `done` and `error`; with `reasoning`, the model's reasoning is sent as
    `reasoning` events (else dropped, as the stateless `/chat` always did)."""

    def __init__(self, extra_done: dict[str, Any] | None = None, error_status: bool = False,
                 extra_start: dict[str, Any] | None = None, reasoning: bool = False):
        self.extra_done = extra_done or {}
        self.extra_start = extra_start or {}
        self.reasoning = reasoning
        self.error_status = error_status
        self.provider = ""
        self.model = ""

    def format(self, event: Any) -> str:
        if isinstance(event, str):
            return data_line(json.dumps({"type": "delta", "content": event}, ensure_ascii=False))
        if event is HEARTBEAT:
            return HEARTBEAT_COMMENT
        if isinstance(event, FailedAttempt):
            return data_line(json.dumps({"type": "fallback", **event.to_dict()}))
        if isinstance(event, Started):
            self.provider, self.model = event.provider, event.model
            return data_line(json.dumps({"type": "start", "provider": event.provider, "model": event.model,
                                         **self.extra_start}))
        if isinstance(event, ReasoningDelta):
            return data_line(json.dumps({"type": "reasoning", "content": event.text}, ensure_ascii=False)
                             ) if self.reasoning else ""
        if isinstance(event, StreamEnd):
            priced = {} if event.cost_usd is None else {"cost_usd": event.cost_usd}
            return data_line(json.dumps({"type": "done", "provider": self.provider, "model": event.model,
                                         "finish_reason": event.finish_reason, "usage": event.usage.to_dict(),
                                         **priced, **self.extra_done}))
        if hasattr(event, "native_event"):
            return data_line(json.dumps(event.native_event(), ensure_ascii=False))
        if isinstance(event, StreamFailed):
            event = interrupted(event)
        if isinstance(event, Exception) and not isinstance(event, APIError):
            log.error("stream failed", exc_info=event)
            event = APIError("Internal server error; the request id is in X-Request-ID.")
        if isinstance(event, APIError):
            return data_line(json.dumps(self.error_event(event)))
        return ""

    def error_event(self, error: APIError) -> dict[str, Any]:
        """`{"type": "error", "message", "code", ...}`: the error's own fields (`APIError.to_dict`),
        under the event type `error`."""
        fields = {key: value for key, value in error.to_dict().items() if key != "type"}
        if self.error_status:
            fields["status"] = error.status
        return {"type": "error", **fields, **self.extra_done}
