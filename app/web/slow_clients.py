"""Slow clients: a deadline for receiving a request's body, and a bound on how many requests one client
address may have still sending theirs.

A gevent worker serves WEB_WORKER_CONNECTIONS connections at once. Gunicorn reads a request's head
within its `keepalive` (5 s, gunicorn.conf.py: its gevent worker reads every head under that timeout),
but the body was read by the app when a view asked for it, and nothing limited that: 2,100 connections
that sent their headers to `/task` and then a body byte every 3 s held every connection of both
workers, and `/ping` went unanswered while they stayed open. So, in front of the app (inside ProxyFix,
so the client is the one Caddy saw), the body is received here, before the app runs:

- it must have arrived REQUEST_READ_TIMEOUT_S after the request's head: past that the answer is a 408
  in the API's own error shape, however the bytes trickle (one `gevent.Timeout` over the whole
  receipt, not a timeout per socket read, which every byte would reset);
- one client address may have at most REQUEST_READ_MAX_PER_CLIENT requests per worker whose body is
  still arriving; one more is answered at once with a 429 in the API's shape
  (`too_many_unfinished_requests`; counted in `aiserver_rate_limit_rejections_total`, logged at most
  every LOG_EVERY_S with a count), so a single address cannot hold the worker's connections while it
  dribbles. Only the network receipt counts: a request waiting in the app (for a database connection,
  an upstream) holds no place, so a busy client's burst of quick bodies is never refused;
- the connection of a request refused either way is shut once its answer is written: Gunicorn would
  otherwise read the rest of the body before the next request on the connection.

The app then reads the body from memory (bodies are at most MAX_BODY_BYTES; a larger declared length
is left to the app's 413 unread). Requests without a body (`/ping`, every GET) pass untouched.
"""
from __future__ import annotations

import io
import json
import logging
import socket
import time
from collections import Counter
from typing import Any, Callable, Iterable, Iterator

from gunicorn.http.errors import ParseException

from app.core.clock import within
from app.core.errors import APIError, BadRequest, RateLimited, RequestTimeout
from app.core.metrics import RATE_LIMIT_REJECTIONS
from app.web.errors import error_body

log = logging.getLogger("aiserver.slow_clients")
LOG_EVERY_S = 10.0


class SlowClientGuard:
    """WSGI middleware: the receipt deadline and the per-client bound above."""

    def __init__(self, app: Callable, timeout: float, per_client: int, max_body: int):
        self.app = app
        self.timeout = timeout
        self.per_client = per_client
        self.max_body = max_body
        self.reading: Counter[str] = Counter()  # client address -> requests whose body is still coming
        self.refused, self.logged_at = 0, -LOG_EVERY_S

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        length = content_length(environ)
        if not has_body(environ) or (length is not None and length > self.max_body):
            return self.app(environ, start_response)
        client = environ.get("REMOTE_ADDR") or "-"
        if self.reading[client] >= self.per_client:
            return self.refuse(environ, start_response, client)
        self.reading[client] += 1
        try:
            body = self.receive(environ["wsgi.input"], length)
        except ReadDeadline:
            late = RequestTimeout(f"The request's body did not arrive within {self.timeout:g}s "
                                  "(REQUEST_READ_TIMEOUT_S).")
            return self.answer(environ, start_response, late, "408 Request Timeout")
        except ParseException as problem:  # a chunked body Gunicorn cannot decode (a bad chunk size)
            malformed = BadRequest(f"The chunked body is malformed: {type(problem).__name__} {problem}.",
                                   code="malformed_body")
            return self.answer(environ, start_response, malformed, "400 Bad Request")
        finally:
            self.release(client)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)  # decoded here: the app reads plain bytes
        environ["wsgi.input_terminated"] = True
        if length is None and len(body) > self.max_body:  # a chunked body past the limit: the app's 413,
            return Answered(self.app(environ, start_response), environ.get("gunicorn.socket"))  # then shut
        return self.app(environ, start_response)

    def receive(self, stream: Any, length: int | None) -> bytes:
        """The whole body (a chunked one up to one byte past MAX_BODY_BYTES), within the deadline."""
        wanted = length if length is not None else self.max_body + 1
        parts: list[bytes] = []
        with within(self.timeout, ReadDeadline):
            while wanted > 0:
                data = stream.read(min(wanted, 65536))
                if not data:
                    break
                parts.append(data)
                wanted -= len(data)
        return b"".join(parts)

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
        return self.answer(environ, start_response, error, "429 Too Many Requests", [("Retry-After", "1")])

    def answer(self, environ: dict[str, Any], start_response: Callable, error: APIError, status: str,
               headers: list[tuple[str, str]] | None = None) -> Iterable[bytes]:
        """`error` in the API's shape, without the app; the connection is shut once it is written."""
        payload = json.dumps(error_body(error, environ.get("PATH_INFO", ""))).encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(payload))),
                                 *(headers or [])])
        return Answered([payload], environ.get("gunicorn.socket"))

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
    """The body's deadline passed during its receipt."""


class Answered:
    """An answer whose connection is shut once it is written (its body was not read in full), so the
    server does not wait for the rest of it."""

    def __init__(self, result: Iterable[bytes], connection: socket.socket | None):
        self.result = result
        self.connection = connection

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.result)

    def close(self) -> None:
        try:
            if hasattr(self.result, "close"):
                self.result.close()
        finally:
            if self.connection is not None:
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
