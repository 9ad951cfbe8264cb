"""Slow clients: a deadline for reading a request's body, and a bound on how many requests one client
address may have still sending theirs.

A gevent worker serves WEB_WORKER_CONNECTIONS connections at once. Gunicorn reads a request's head
within its `keepalive` (5 s, gunicorn.conf.py: its gevent worker reads every head under that timeout),
but the body is read by the app when a view asks for it, and nothing limited that: 2,100 connections
that sent their headers to `/task` and then a body byte every 3 s held every connection of both
workers, and `/ping` went unanswered while they stayed open. So, in front of the app (inside ProxyFix,
so the client is the one Caddy saw):

- a request's body must have arrived REQUEST_READ_TIMEOUT_S after the app got the request: reading
  past that raises `RequestTimeout`, a 408 in the API's own error shape, however the bytes trickle
  (one `gevent.Timeout` over each read, not a timeout per socket read, which every byte would reset);
- one client address may have at most REQUEST_READ_MAX_PER_CLIENT requests per worker whose body has
  not yet been read in full; one more is answered at once, before the app, with a 429 in the API's
  shape (`too_many_unfinished_requests`; counted in `aiserver_rate_limit_rejections_total`, logged at most
  every LOG_EVERY_S with a count), so a single
  address cannot hold the worker's connections while it dribbles;
- the connection of a request refused either way is shut once its answer is written: Gunicorn would
  otherwise read the rest of the body before the next request on the connection.

Requests without a body (`/ping`, every GET) pass untouched.
"""
from __future__ import annotations

import json
import logging
import socket
import time
from collections import Counter
from typing import Any, Callable, Iterable, Iterator

from app.core.clock import within
from app.core.errors import RateLimited, RequestTimeout
from app.core.metrics import RATE_LIMIT_REJECTIONS
from app.web.errors import error_body

log = logging.getLogger("aiserver.slow_clients")
LOG_EVERY_S = 10.0


class SlowClientGuard:
    """WSGI middleware: the read deadline and the per-client bound above."""

    def __init__(self, app: Callable, timeout: float, per_client: int):
        self.app = app
        self.timeout = timeout
        self.per_client = per_client
        self.reading: Counter[str] = Counter()  # client address -> requests whose body is still coming
        self.refused, self.logged_at = 0, -LOG_EVERY_S

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if not has_body(environ):
            return self.app(environ, start_response)
        client = environ.get("REMOTE_ADDR") or "-"
        if self.reading[client] >= self.per_client:
            return self.refuse(environ, start_response, client)
        self.reading[client] += 1
        body = DeadlineBody(environ["wsgi.input"], time.monotonic() + self.timeout, content_length(environ),
                            self.timeout, on_done=lambda: self.release(client))
        environ["wsgi.input"] = body
        try:
            result = self.app(environ, start_response)
        except BaseException:
            body.done()
            raise
        return Answered(result, body, environ.get("gunicorn.socket"))

    def refuse(self, environ: dict[str, Any], start_response: Callable, client: str) -> Iterable[bytes]:
        """A 429 without reading the body, its connection shut once the answer is written."""
        self.refused += 1
        if time.monotonic() - self.logged_at >= LOG_EVERY_S:
            log.warning("refused %d requests from clients already sending %d bodies (latest %s); "
                        "REQUEST_READ_MAX_PER_CLIENT", self.refused, self.per_client, client)
            self.refused, self.logged_at = 0, time.monotonic()
        RATE_LIMIT_REJECTIONS.labels("too_many_unfinished_requests").inc()
        error = RateLimited(f"This client already has {self.per_client} requests still sending their body; finish "
                            "those first (REQUEST_READ_MAX_PER_CLIENT).", code="too_many_unfinished_requests")
        payload = json.dumps(error_body(error, environ.get("PATH_INFO", ""))).encode()
        start_response("429 Too Many Requests", [("Content-Type", "application/json"), ("Retry-After", "1"),
                                                 ("Content-Length", str(len(payload)))])
        return Answered([payload], None, environ.get("gunicorn.socket"))

    def release(self, client: str) -> None:
        self.reading[client] -= 1
        if self.reading[client] <= 0:
            del self.reading[client]


def has_body(environ: dict[str, Any]) -> bool:
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    return chunked or content_length(environ) not in (None, 0)


def content_length(environ: dict[str, Any]) -> int | None:
    try:
        return int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None


class ReadDeadline(Exception):
    """The body's deadline passed during a read."""


class DeadlineBody:
    """`wsgi.input` read within a deadline; done (its client's slot released) at the end of the body.
    No `readinto`: Werkzeug would call it, and catch what it raises as a disconnect."""

    def __init__(self, stream: Any, deadline: float, length: int | None, timeout: float,
                 on_done: Callable[[], None]):
        self.stream = stream
        self.deadline = deadline
        self.left = length
        self.timeout = timeout
        self.gave_up = False
        self.on_done: Callable[[], None] | None = on_done

    def read(self, size: int | None = -1) -> bytes:
        return self.within(self.stream.read, size)

    def readline(self, size: int | None = -1) -> bytes:
        return self.within(self.stream.readline, size)

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        return list(iter(self.readline, b""))

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")

    def within(self, read: Callable[[Any], bytes], size: Any) -> bytes:
        left = self.deadline - time.monotonic()
        try:
            if left <= 0:
                raise ReadDeadline
            with within(left, ReadDeadline):
                data = read(size)
        except ReadDeadline:
            self.gave_up = True
            self.done()
            raise RequestTimeout(f"The request's body did not arrive within {self.timeout:g}s "
                                 "(REQUEST_READ_TIMEOUT_S).") from None
        if self.left is not None:
            self.left -= len(data)
        if not data or self.left is not None and self.left <= 0:
            self.done()
        return data

    def done(self) -> None:
        """The body is read (or given up): its client may send another."""
        on_done, self.on_done = self.on_done, None
        if on_done is not None:
            on_done()


class Answered:
    """The app's answer, passed through; when it closes, the body is done, and a connection whose body
    was given up is shut (after the answer was written), so the server does not wait for the rest."""

    def __init__(self, result: Iterable[bytes], body: DeadlineBody | None, connection: socket.socket | None):
        self.result = result
        self.body = body
        self.connection = connection

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.result)

    def close(self) -> None:
        try:
            if hasattr(self.result, "close"):
                self.result.close()
        finally:
            if self.body is not None:
                self.body.done()
            if (self.body is None or self.body.gave_up) and self.connection is not None:
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
