"""Reading a request: its JSON body or query string, loaded by a marshmallow schema into typed errors."""
from __future__ import annotations

import contextvars
import functools
import json
import re
import select
import socket
import time
from typing import Any, Callable

from flask import has_request_context, request
from gevent import get_hub, monkey
from marshmallow import Schema, ValidationError

from app.core.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType, ValidationFailed, size_in_words


def parse_body(schema: type[Schema]) -> dict[str, Any]:
    """The request's JSON body loaded by `schema`: 415 if not JSON, 400 if malformed or invalid."""
    return load(schema, json_object())


MAX_JSON_DEPTH = 32  # the deepest real body (a JSON schema in response_format) nests far less
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def json_object() -> dict[str, Any]:
    """The request's body as a JSON object: 415 if not JSON, 413 if too large, 400 if malformed, not an
    object, nested deeper than MAX_JSON_DEPTH, holding NaN/Infinity, NUL or a lone surrogate."""
    if not request.mimetype or request.mimetype != "application/json" and not request.mimetype.endswith("+json"):
        raise UnsupportedMediaType("Send a JSON body with 'Content-Type: application/json'.")
    raw = request_body()
    try:
        data = json.loads(raw, parse_constant=refuse_constant) if raw else None
    except RecursionError:
        raise too_deep() from None
    except ValueError as exc:
        raise BadRequest(f"Malformed JSON body: {exc}", code="malformed_json") from None
    if not isinstance(data, dict):
        raise BadRequest("The JSON body must be an object.", code="malformed_json")
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and depth(data) > MAX_JSON_DEPTH:
        raise too_deep()
    if (b"\\u0000" in raw or b"\x00" in raw) and find_string(data, lambda text: "\x00" in text) is not None:
        raise BadRequest("The body contains a NUL character (\\u0000), which no field accepts.",
                         code="nul_character")
    if re.search(rb"\\u[dD][89a-fA-F]", raw):
        check_surrogates(data)
    return data


def request_body() -> bytes:
    """The raw body, 413 if it is longer than MAX_CONTENT_LENGTH. Werkzeug refuses a too-long
    Content-Length up front but silently cuts a chunked body at the limit, so that case is checked
    here: one byte more than the limit means the body was too long."""
    raw = request.get_data(cache=True)
    limit = request.max_content_length
    too_long = request.content_length is None and limit is not None and len(raw) >= limit
    if too_long and limit is not None and request.environ["wsgi.input"].read(1):
        raise PayloadTooLarge(f"The request is larger than this server accepts: at most {size_in_words(limit)}.",
                              details={"max_bytes": limit})
    return raw


def refuse_constant(name: str) -> Any:
    """`parse_constant` for json.loads: NaN and Infinity are not JSON (RFC 8259) and no field takes them."""
    raise BadRequest(f"The body holds {name}, which is not a JSON number.", code="malformed_json")


def too_deep() -> BadRequest:
    return BadRequest(f"The JSON body is nested more than {MAX_JSON_DEPTH} levels deep.", code="too_deeply_nested")


def depth(value: Any, limit: int = MAX_JSON_DEPTH + 1) -> int:
    """How deep `value` nests (a scalar is 0), counted no further than `limit`."""
    if limit <= 0 or not isinstance(value, (dict, list)):
        return 0
    children = value.values() if isinstance(value, dict) else value
    return 1 + max((depth(child, limit - 1) for child in children), default=0)


def check_surrogates(data: dict[str, Any]) -> None:
    """400 naming the field that holds a lone UTF-16 surrogate (`\\ud800`): JSON allows the escape, but it
    is no character, so no database, SDK or upstream API can encode it."""
    path = find_string(data, lambda text: LONE_SURROGATE.search(text) is not None)
    if path is not None:
        field = ".".join(str(part) for part in path) or "body"
        raise BadRequest(f"{field}: holds a lone surrogate (\\ud800-\\udfff), which is not a character.",
                         code="invalid_unicode", details={"param": field})


def find_string(value: Any, matches: Callable[[str], bool], path: tuple = ()) -> tuple | None:
    """The path (keys and indexes) of the first string in a decoded JSON value, key or value, that
    `matches`; None if there is none."""
    if isinstance(value, str):
        return path if matches(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = path + (key,) if matches(key) else find_string(item, matches, path + (key,))
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = find_string(item, matches, path + (index,))
            if found is not None:
                return found
    return None


def parse_query(schema: type[Schema]) -> dict[str, Any]:
    return load(schema, request.args.to_dict())


def load(schema: type[Schema], data: dict[str, Any]) -> dict[str, Any]:
    try:
        return schema_instance(schema).load(data)
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"body": exc.messages}
        raise ValidationFailed(messages) from None


@functools.cache
def schema_instance(schema: type[Schema]) -> Schema:
    """One instance per schema class: building one costs more than loading a small body with it."""
    return schema()


def socket_readable(sock: Any) -> bool:
    """Whether `sock` has something to read (data, or its end: the peer closed it), without waiting: a
    poll with a zero timeout, made with the operating system's `poll` rather than gevent's, which for
    a call that cannot block started a watcher and a `Timeout` that then expired in the hub (12 µs
    against 0.5 µs alone, and about 5% of a worker's samples under load). A socket without a
    descriptor counts as readable (the next read returns its end). Used for httpcore2's check of a
    pooled upstream connection, and before each attempt of a call by `client_connected`."""
    fd = None if sock is None else sock.fileno()
    if fd is None or fd < 0:
        return True
    poller = system_poll()()  # not select.select, which refuses fds of 1024 and up
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


class PooledSocketChecks:
    """httpcore2's check of its pooled connections, each socket's answer kept for the rest of the event
    loop's turn (`check`). The pool checks every idle connection each time a request enters or leaves
    it: at 50 requests in flight, 33 `poll`s a request (counted), 3% of a worker's CPU. Within one turn
    of gevent's loop nothing was read or written by anyone (gevent waits for sockets only between
    turns), so a second answer for the same socket would only differ by a server's close that arrived
    in the last microseconds, which the check could miss as well just after it answered. A turn ends
    at the loop's next iteration, or after `TURN_S`, whichever is first. Without gevent's patched
    sockets (a process that did not monkey-patch) every check polls."""

    TURN_S = 0.005

    def __init__(self) -> None:
        self.turn: tuple[int, float] = (-1, 0.0)
        self.answers: dict[Any, bool] = {}

    def check(self, sock: Any) -> bool:
        if not monkey.is_module_patched("socket"):
            return socket_readable(sock)
        iteration, now = get_hub().loop.iteration, time.monotonic()
        if iteration != self.turn[0] or now - self.turn[1] > self.TURN_S:
            self.answers.clear()  # the sockets kept as keys go with it: none is reused while it is kept
            self.turn = (iteration, now)
        answer = self.answers.get(sock)
        if answer is None:
            answer = self.answers[sock] = socket_readable(sock)
        return answer


@functools.cache
def system_poll() -> Any:
    """The operating system's `select.poll`, even where gevent patched it (looked up once: the lookup
    cost a third of a check)."""
    return monkey.get_original("select", "poll")


_OUTLIVES_CLIENT: contextvars.ContextVar[bool] = contextvars.ContextVar("outlives_client", default=False)


def outlive_client() -> None:
    """Mark the work of the current context (a copy of a request's) as going on after its client has
    left, as a resumable chat turn does: `client_connected` is then True for it."""
    _OUTLIVES_CLIENT.set(True)


def client_connected() -> bool:
    """False once the client of the current request has closed its connection: its socket reads as
    end-of-file (peeked, so nothing is consumed). True outside a request, for work that outlives its
    client (`outlive_client`), or when the server gives no socket (Flask's test client); Gunicorn puts
    it in the WSGI environ."""
    if not has_request_context() or _OUTLIVES_CLIENT.get():
        return True
    connection = request.environ.get("gunicorn.socket") or request.environ.get("gunicorn.sock")
    if connection is None:
        return True
    try:
        return not socket_readable(connection) or connection.recv(1, socket.MSG_PEEK) != b""
    except OSError:
        return False
