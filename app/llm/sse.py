"""Server-sent events: the two event formats we speak (the pump that feeds them is `app.llm.pump`).

`OpenAIChunks` writes OpenAI's `chat.completion.chunk` stream (for `/v1/...`); `NativeEvents`
writes this server's own events for `/chat` (`start`, `fallback`, `delta`, `done`, `error`).
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from app.core.errors import APIError, UpstreamError, openai_error_body
from app.llm.gateway import FailedAttempt, Started, StreamFailed
from app.llm.providers.base import ReasoningDelta, StreamEnd, ToolCallDelta
from app.llm.pump import HEARTBEAT

HEARTBEAT_COMMENT = ": heartbeat\n\n"
log = logging.getLogger("aiserver.sse")
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_END = object()


def data_line(payload: str) -> str:
    return f"data: {payload}\n\n"


def interrupted(event: StreamFailed) -> UpstreamError:
    """A stream that broke after its first text, as the error its last event reports."""
    return UpstreamError(event.message, code="stream_interrupted",
                         details={"provider": event.provider, "model": event.model})


class OpenAIChunks:
    """OpenAI's streaming format; content chunks come from a template, so only the text is encoded.
    Reasoning goes out as `delta.reasoning_content`, tool calls as OpenAI's `delta.tool_calls`
    fragments (the first of a call with its `id`, `type` and `function.name`)."""

    def __init__(self, include_usage: bool = False, extra: dict[str, Any] | None = None):
        self.id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        self.include_usage = include_usage
        self.extra = extra or {}
        self.prefix = self.suffix = ""
        self.model = ""

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None, **fields: Any) -> str:
        body = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}], **fields}
        return data_line(json.dumps(body, ensure_ascii=False))

    def format(self, event: Any) -> str:
        if isinstance(event, str):
            return self.prefix + json.dumps(event, ensure_ascii=False) + self.suffix
        if isinstance(event, ReasoningDelta):
            return self.chunk({"reasoning_content": event.text})
        if isinstance(event, ToolCallDelta):
            return self.chunk({"tool_calls": [tool_call_delta(event)]})
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
            out = self.chunk({}, event.finish_reason)
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
    return call


class NativeEvents:
    """This server's own stream events for `/chat`, `/chat/{provider}` and `/chat/gist`: `start`,
    `fallback`, `delta`, `done` and `error`, plus any event that writes itself (a `native_event()`
    method returning its payload, e.g. the gist chat's `retry` and `gist`). With `error_status`, an
    error event also carries the HTTP `status` the error would have had."""

    def __init__(self, extra_done: dict[str, Any] | None = None, error_status: bool = False):
        self.extra_done = extra_done or {}
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
            return data_line(json.dumps({"type": "start", "provider": event.provider, "model": event.model}))
        if isinstance(event, StreamEnd):
            return data_line(json.dumps({"type": "done", "provider": self.provider, "model": event.model,
                                         "finish_reason": event.finish_reason, "usage": event.usage.to_dict(),
                                         **self.extra_done}))
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
