"""The pump that keeps a stream alive.

`Pump` runs the gateway's event iterator in its own greenlet, so the response can send a
heartbeat comment while upstream is silent, and can stop upstream at once when the client goes
away (killing the greenlet closes the provider's HTTP response). Views first wait, briefly, for the
answer to start (`Pump.opening`): if every provider fails before any text, the client gets a plain
HTTP error with the right status instead of a stream that ends in an error event.
"""
from __future__ import annotations

import contextvars
import logging
import time
from typing import Any, Iterator

import gevent
from gevent.queue import Empty, Queue

from app.core.errors import APIError
from app.llm.gateway import FailedAttempt

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
