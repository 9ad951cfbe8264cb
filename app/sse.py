"""Server-sent events: the pump that keeps a stream alive, and the two event formats we speak.

`Pump` runs the gateway's event iterator in its own greenlet, so the response can send a
heartbeat comment while upstream is silent, and can stop upstream at once when the client goes
away (killing the greenlet closes the provider's HTTP response). Views first wait, briefly, for the
answer to start (`Pump.opening`): if every provider fails before any text, the client gets a plain
HTTP error with the right status instead of a stream that ends in an error event.

`OpenAIChunks` writes OpenAI's `chat.completion.chunk` stream (for `/v1/...`); `NativeEvents`
writes this server's own events for `/chat` (`start`, `fallback`, `delta`, `done`, `error`).
"""
from __future__ import annotations

import contextvars
import json
import logging
import time
import uuid
from typing import Any, Iterator

import gevent
from gevent.queue import Empty, Queue

from app.errors import APIError, UpstreamError, openai_error_body
from app.gateway import FailedAttempt, Started, StreamFailed
from app.providers.base import StreamEnd

HEARTBEAT_COMMENT = ": heartbeat\n\n"
log = logging.getLogger("aiserver.sse")
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_END = object()


class _Heartbeat:
    """Yielded by `Pump.events` after a silence; formatters turn it into `HEARTBEAT_COMMENT`."""


HEARTBEAT = _Heartbeat()


class _Raised:
    def __init__(self, error: BaseException):
        self.error = error


class Pump:
    def __init__(self, events: Iterator[Any]):
        self.queue: Queue = Queue()
        # the request's context (its id for log lines) goes along into the producer greenlet
        self.greenlet = gevent.spawn(contextvars.copy_context().run, self._run, events)

    def _run(self, events: Iterator[Any]) -> None:
        try:
            for event in events:
                self.queue.put(event)
            self.queue.put(_END)
        except gevent.GreenletExit:
            raise
        except APIError as error:  # handed to the consumer, which raises or reports it
            self.queue.put(_Raised(error))
        except Exception:  # a bug, not a provider failure: logged, and the stream still ends with an error
            log.exception("stream producer failed")
            self.queue.put(_Raised(APIError("Internal server error; the request id is in X-Request-ID.")))
        finally:
            close = getattr(events, "close", None)
            if close:
                close()

    def opening(self, wait: float) -> list[Any]:
        """Events up to the answer's start, waiting at most `wait` seconds; raises if all routes failed."""
        opened: list[Any] = []
        deadline = time.monotonic() + wait
        while not opened or isinstance(opened[-1], FailedAttempt):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                item = self.queue.get(timeout=remaining)
            except Empty:
                break
            if isinstance(item, _Raised):
                self.close()
                raise item.error
            opened.append(item)
            if item is _END:
                break
        return opened

    def events(self, heartbeat: float) -> Iterator[Any]:
        """Every remaining event, or `HEARTBEAT` after `heartbeat` seconds of silence; a failure before
        any text arrives as the APIError, after text as a StreamFailed from the gateway."""
        while True:
            try:
                item = self.queue.get(timeout=heartbeat)
            except Empty:
                yield HEARTBEAT
                continue
            if item is _END:
                return
            if isinstance(item, _Raised):
                yield item.error
                return
            yield item

    def close(self) -> None:
        """Stop the producer now; its generators close, and with them the upstream response."""
        self.greenlet.kill(block=True, timeout=5)


def stream_events(pump: Pump, opened: list[Any], heartbeat: float) -> Iterator[Any]:
    """The opened events then the rest; closing this iterator (client gone) stops upstream."""
    try:
        for item in opened:
            if item is not _END:
                yield item
        if not opened or opened[-1] is not _END:
            yield from pump.events(heartbeat)
    finally:
        pump.close()


def data_line(payload: str) -> str:
    return f"data: {payload}\n\n"


def interrupted(event: StreamFailed) -> UpstreamError:
    """A stream that broke after its first text, as the error its last event reports."""
    return UpstreamError(event.message, code="stream_interrupted",
                         details={"provider": event.provider, "model": event.model})


class OpenAIChunks:
    """OpenAI's streaming format; content chunks come from a template, so only the text is encoded."""

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


class NativeEvents:
    """This server's own stream events for `/chat` and `/chat/{provider}`."""

    def __init__(self, extra_done: dict[str, Any] | None = None):
        self.extra_done = extra_done or {}
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
        if isinstance(event, StreamFailed):
            event = interrupted(event)
        if isinstance(event, APIError):
            return data_line(json.dumps(self.error_event(event)))
        return ""

    def error_event(self, error: APIError) -> dict[str, Any]:
        """`{"type": "error", "message", "code", ...}`: the error's own fields (`APIError.to_dict`),
        under the event type `error`."""
        fields = {key: value for key, value in error.to_dict().items() if key != "type"}
        return {"type": "error", **fields, **self.extra_done}
