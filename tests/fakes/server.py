"""Shared machinery of the fake LLM vendor servers.

A fake is a real HTTP/1.1 server on loopback (``ThreadingHTTPServer``, keep-alive,
one daemon thread per connection) that answers with scripted ``Reply`` objects and
records every request, so the official SDKs can be pointed at it by base URL.
Protocol subclasses only describe their wire format; pacing, faults and
disconnect detection live here.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import re
import select
import signal
import socket
import struct
import sys
import termios
import threading
import time
from collections import deque
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable
from urllib.parse import parse_qsl, urlsplit

IDLE_TIMEOUT = 30.0  # seconds a connection may sit idle or blocked before the server drops it
STOP_GRACE = 2.0  # seconds stop() waits for handler threads in total
SEND_DRAIN_TIMEOUT = 2.0  # seconds a reset waits for the chunks before it to be acknowledged
GONE_POLL = 0.02  # seconds between client-gone checks while pacing a stream
STATUS_PHRASES = {529: "Overloaded"}  # vendor statuses http.HTTPStatus does not know


@dataclass
class Reply:
    """One scripted answer.

    ``chunks`` are the stream pieces; when given they also make up the full text
    of a non-streamed answer, so both modes carry the same content. ``status`` >= 400
    answers with the protocol's error body instead (``retry_after`` adds the retry
    headers). ``finish_reason`` is vendor-neutral ("stop", "length"); each fake maps
    it to its own vocabulary.

    Faults and pacing: ``first_byte_delay`` delays the status line, ``chunk_delay``
    separates content chunks, ``hang`` sends nothing for that long and then closes,
    ``reset_after`` sends that many content chunks and then resets the
    connection (TCP RST) instead of finishing the stream, and ``error_after``
    sends that many content chunks and then the vendor's error event for
    ``error_status`` inside the stream (which began with a 200), ending it there
    (streams only).

    Tools and reasoning: ``tool_calls`` makes the answer call tools, each
    ``{"name": ..., "arguments": {...}}`` (no name: the forced tool, else the first
    offered); several are parallel calls, streamed with their arguments in fragments.
    With tool calls the answer has text only when ``chunks`` are given. ``reasoning``
    is thinking text, sent the vendor's way before the answer.
    """

    text: str = "Hello from the fake."
    chunks: list[str] | None = None
    model: str | None = None
    status: int = 200
    error_message: str | None = None
    retry_after: float | None = None
    first_byte_delay: float = 0.0
    chunk_delay: float = 0.0
    hang: float = 0
    reset_after: int | None = None
    error_after: int | None = None
    error_status: int = 500
    finish_reason: str = "stop"
    prompt_tokens: int = 11
    cached_tokens: int = 0  # of the prompt tokens, read from the vendor's cache (beside the fake's own cache)
    completion_tokens: int | None = None
    tool_calls: list[dict] | None = None
    reasoning: str | None = None

    def pieces(self) -> list[str]:
        """Stream pieces: ``chunks``, else ``text`` split into words that keep their leading spaces
        (none when the answer calls tools without ``chunks``)."""
        if self.tool_calls and self.chunks is None:
            return []
        if self.chunks is not None:
            return list(self.chunks)
        return re.findall(r"\s*\S+(?:\s+$)?", self.text) or ([self.text] if self.text else [])

    @property
    def full_text(self) -> str:
        return "".join(self.pieces()) if self.tool_calls or self.chunks is not None else self.text

    def calls(self, offered: list[str]) -> list[tuple[str, str]]:
        """(name, JSON arguments) of each tool call; a call without a name uses ``offered[0]``."""
        return [(call.get("name") or (offered or ["tool"])[0], json.dumps(call.get("arguments", {})))
                for call in self.tool_calls or ()]

    @property
    def output_tokens(self) -> int:
        return self.completion_tokens if self.completion_tokens is not None else len(self.pieces())

    @property
    def message(self) -> str:
        """The error message sent for an error status."""
        return self.error_message or status_phrase(self.status)


CHARS_PER_TOKEN = 4  # the fakes' token count of a prompt: one per four characters of its JSON
MIN_CACHED_PREFIX = 1024  # the fewest prompt tokens OpenAI, Gemini (2.5 Flash) and Claude (Sonnet, Opus) cache


class PromptCache:
    """The prompt prefixes a vendor has cached: each a JSON-able value (what the prompt holds up to a
    point, in the vendor's order), stored by its hash with its tokens (``tokens``). Only a prefix of
    at least MIN_CACHED_PREFIX tokens is cached, as every vendor documents."""

    def __init__(self) -> None:
        self._stored: dict[str, int] = {}
        self._lock = threading.Lock()

    @staticmethod
    def tokens(prefix: Any) -> int:
        return len(json.dumps(prefix, separators=(",", ":"))) // CHARS_PER_TOKEN

    @staticmethod
    def _key(prefix: Any) -> str:
        return hashlib.sha256(json.dumps(prefix, sort_keys=True).encode()).hexdigest()

    def hit(self, prefixes: list[Any]) -> int:
        """The tokens of the longest of ``prefixes`` that is cached (0: none is)."""
        with self._lock:
            return max((self._stored.get(self._key(prefix), 0) for prefix in prefixes), default=0)

    def store(self, prefixes: list[Any]) -> int:
        """Cache those of ``prefixes`` long enough; returns the tokens of the longest newly cached (0: none)."""
        written = 0
        with self._lock:
            for prefix in prefixes:
                tokens, key = self.tokens(prefix), self._key(prefix)
                if tokens >= MIN_CACHED_PREFIX and key not in self._stored:
                    self._stored[key] = tokens
                    written = max(written, tokens)
        return written

    def automatic(self, reply: "Reply", prefixes: list[Any], increment: int = 1) -> tuple[int, int]:
        """(prompt tokens, cached tokens) of a prompt at a vendor that caches every prompt by itself
        (OpenAI, Gemini's implicit caching): ``prefixes`` are the prompt's own, shortest first, the last
        the whole prompt. The longest one cached is read, counted in ``increment``s past the minimum
        (OpenAI's 128), and each one long enough is cached. A prompt too short to cache has the
        scripted reply's counts."""
        total = self.tokens(prefixes[-1]) if prefixes else 0
        if total < MIN_CACHED_PREFIX:
            return reply.prompt_tokens, reply.cached_tokens
        hit = self.hit(prefixes)
        self.store(prefixes)
        cached = MIN_CACHED_PREFIX + (hit - MIN_CACHED_PREFIX) // increment * increment if hit else 0
        return max(reply.prompt_tokens, total), max(reply.cached_tokens, cached)

    def clear(self) -> None:
        with self._lock:
            self._stored.clear()


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased
    json: Any  # parsed body; None when there was none or it was not JSON
    body: bytes = b""  # the body as it came (what a signature covers, or a form)


@dataclass(frozen=True)
class Frame:
    """One piece of a streamed body; ``content`` marks the pieces that carry generated output."""

    data: bytes
    content: bool = False


def sse(payload: dict | str, *, event: str | None = None, content: bool = False, eol: str = "\n") -> Frame:
    """A Server-Sent Event: optional ``event:`` line, one ``data:`` line, blank line."""
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    lines = ([f"event: {event}"] if event else []) + [f"data: {data}", "", ""]
    return Frame(eol.join(lines).encode(), content)


def status_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return STATUS_PHRASES.get(status, "Error")


def fragments(text: str, size: int = 8) -> list[str]:
    """``text`` in pieces of ``size`` characters, as vendors stream tool-call arguments."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def embedding(text: str, dimensions: int) -> list[float]:
    """A deterministic unit-free vector for ``text`` (the same text always gives the same vector)."""
    digest = hashlib.sha256(text.encode()).digest()
    return [round((digest[i % len(digest)] - 128) / 128, 6) for i in range(dimensions)]


def text_of(content: Any) -> str:
    """Plain text of a chat message's content: a string or a list of parts with ``text``."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT
    server: _HTTPServer

    @property
    def fake(self) -> FakeServer:
        return self.server.fake

    def setup(self) -> None:
        super().setup()
        # as vendors' servers do: each chunk leaves when written, not held back by Nagle's algorithm
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.fake._track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.fake._untrack(self.connection)

    def do_GET(self) -> None:
        self.fake._handle(self, self._record())

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: the recorded requests are the log."""

    def _record(self) -> RecordedRequest:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = {name.lower(): value for name, value in self.headers.items()}
        return RecordedRequest(self.command, url.path, dict(parse_qsl(url.query)), headers, body, raw)

    def send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status, status_phrase(status))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def start_stream(self, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()

    def write_chunk(self, data: bytes) -> bool:
        """Send one HTTP chunk at once (the socket writer is unbuffered); False when the client is gone."""
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        except OSError:
            return False
        return True

    def end_stream(self) -> None:
        try:
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True

    def client_gone(self) -> bool:
        """True when the peer closed or reset the connection.

        HTTP/1.1 clients send nothing while a response is in flight, so a readable
        socket here means EOF or an error. Checking this beats waiting for a write
        to fail: the first write after the peer closed still succeeds locally.
        """
        poller = select.poll()
        poller.register(self.connection, select.POLLIN)
        try:
            return bool(poller.poll(0)) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def reset(self) -> None:
        """Abort the connection with a TCP RST instead of an orderly FIN, once the chunks written
        before it have reached the peer: an abortive close discards whatever the kernel has not
        yet sent, so a client would otherwise randomly miss the last chunk before the cut."""
        self._wait_until_acknowledged(SEND_DRAIN_TIMEOUT)
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.drop()

    def _wait_until_acknowledged(self, timeout: float) -> None:
        """Wait (at most `timeout`) until the peer's kernel has acknowledged every byte written."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                unacknowledged = fcntl.ioctl(self.connection.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
            except OSError:
                return
            if struct.unpack("i", unacknowledged)[0] == 0:
                return
            time.sleep(0.001)

    def drop(self) -> None:
        self.close_connection = True
        self.rfile.close()  # the read side holds a reference that would defer the real close
        self.connection.close()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], fake: FakeServer) -> None:
        self.fake = fake
        super().__init__(address, Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet when a client left mid-answer (timeouts, early closes); report anything else."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class FakeServer:
    """Base of the protocol fakes; see the module docstring.

    Replies are chosen per request: a sticky reply set for the requested model with
    ``set_model_reply``, else the next one queued with ``enqueue``, else
    ``default_reply`` (a ``Reply``, or a callable taking the ``RecordedRequest``).
    With ``api_key`` set, requests not carrying it are refused like the vendor does.
    """

    base_path = ""  # what the SDK's base URL adds to the server root
    stream_content_type = "text/event-stream"  # the Content-Type of a streamed answer
    default_models: tuple[str, ...] = ()

    def __init__(self, *, api_key: str | None = None, echo: bool = False, host: str = "127.0.0.1", port: int = 0):
        self.api_key = api_key
        self.default_reply: Reply | Callable[[RecordedRequest], Reply] = Reply()
        if echo:
            self.default_reply = self.echo_reply
        self.disconnects = 0
        self.completed_streams = 0
        self._address = (host, port)
        self._requests: list[RecordedRequest] = []
        self._queue: deque[Reply] = deque()
        self._model_replies: dict[str, Reply] = {}
        self.prompt_cache = PromptCache()  # the prompt prefixes this vendor has cached
        self._lock = threading.RLock()  # reentrant: wait_until predicates may read properties that lock
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> FakeServer:
        self._stopping.clear()
        self._httpd = _HTTPServer(self._address, self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=type(self).__name__, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, end slow and idle handlers, and release the port; bounded by ``STOP_GRACE``."""
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        with self._lock:
            connections = dict(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)  # wakes handlers blocked reading the next request
            except OSError:
                pass
        self._httpd.server_close()
        deadline = time.monotonic() + STOP_GRACE
        for thread in [self._thread, *connections.values()]:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._httpd = None

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the fake server is not running")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def base_url(self) -> str:
        return self.url + self.base_path

    # -- scripting and inspection -----------------------------------------------

    def enqueue(self, *replies: Reply) -> None:
        with self._lock:
            self._queue.extend(replies)

    def set_model_reply(self, model: str, reply: Reply | None) -> None:
        """Answer every request for ``model`` with ``reply`` (None removes it)."""
        with self._lock:
            if reply is None:
                self._model_replies.pop(model, None)
            else:
                self._model_replies[model] = reply

    def reset(self) -> None:
        """Forget scripted replies, recorded requests and counters (the default reply stays)."""
        with self._lock:
            self._queue.clear()
            self._model_replies.clear()
            self._requests.clear()
            self.disconnects = self.completed_streams = 0
        self.prompt_cache.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def wait_for_disconnect(self, timeout: float, count: int = 1) -> bool:
        """Wait until ``count`` streams have lost their client; False on timeout."""
        return self.wait_until(lambda: self.disconnects >= count, timeout)

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate`` holds, re-checked whenever a request arrives or a stream ends; False on timeout."""
        with self._changed:
            return self._changed.wait_for(predicate, timeout)

    def echo_reply(self, request: RecordedRequest) -> Reply:
        """"You said: ..." to a question; with tools offered, a call of the first one (its required
        string arguments set to the question) and, once its result is back, "The tool said: ..."."""
        result = self.tool_result(request)
        if result is not None:
            return Reply(text=f"The tool said: {result}")
        question, tools = self.last_user_text(request), self.offered_tools(request)
        if not tools:
            return Reply(text=f"You said: {question}")
        name, schema = tools[0]
        properties = schema.get("properties") or {}
        arguments = {p: question for p in schema.get("required") or () if properties.get(p, {}).get("type") == "string"}
        return Reply(tool_calls=[{"name": name, "arguments": arguments}])

    def models(self) -> list[str]:
        with self._lock:
            scripted = list(self._model_replies)
        return list(dict.fromkeys([*self.default_models, *scripted]))

    # -- protocol hooks ----------------------------------------------------------

    def route(self, handler: Handler, request: RecordedRequest) -> None:
        raise NotImplementedError

    def auth_error(self, request: RecordedRequest) -> tuple[int, str] | None:
        """(status, message) when ``request`` lacks ``self.api_key``; only called when a key is set."""
        raise NotImplementedError

    def error_body(self, status: int, message: str, reply: Reply | None = None) -> dict:
        raise NotImplementedError

    def completion(self, reply: Reply, model: str, request: RecordedRequest) -> dict:
        raise NotImplementedError

    def stream_error(self, status: int, message: str) -> Frame:
        """The event a failure inside a started stream is sent as: by default a `data:` line holding
        the protocol's error body (OpenAI's Chat Completions)."""
        return sse(self.error_body(status, message))

    def frames(self, reply: Reply, model: str, request: RecordedRequest) -> Iterable[Frame]:
        raise NotImplementedError

    def last_user_text(self, request: RecordedRequest) -> str:
        raise NotImplementedError

    def offered_tools(self, request: RecordedRequest) -> list[tuple[str, dict]]:
        """(name, JSON schema of the arguments) of each tool the request offers."""
        raise NotImplementedError

    def tool_result(self, request: RecordedRequest) -> str | None:
        """The text of the tool results the request ends with; None when it does not end with any."""
        raise NotImplementedError

    def invalid(self, request: RecordedRequest) -> str | None:
        """The message of the 400 the real API answers ``request`` with, or None when it is valid."""
        return None

    def response_headers(self) -> dict[str, str]:
        """Headers the vendor adds to every answer, such as a request id."""
        return {}

    def retry_headers(self, reply: Reply) -> dict[str, str]:
        if reply.retry_after is None:
            return {}
        return {"Retry-After": f"{reply.retry_after:g}", "retry-after-ms": str(round(reply.retry_after * 1000))}

    # -- serving -------------------------------------------------------------------

    def reject(self, handler: Handler, status: int, message: str, reply: Reply | None = None) -> None:
        headers = {**self.response_headers(), **(self.retry_headers(reply) if reply else {})}
        handler.send_json(status, self.error_body(status, message, reply), headers)

    def serve(self, handler: Handler, request: RecordedRequest, model: str, stream: bool) -> None:
        """Answer a generation request with the reply scripted for it."""
        reply = self._pick_reply(model, request)
        if reply.hang > 0:
            self._stopping.wait(reply.hang)
            handler.drop()
        elif not self._pause(reply.first_byte_delay):
            handler.drop()
        elif reply.status >= 400:
            self.reject(handler, reply.status, reply.message, reply)
        elif stream:
            self._stream(handler, reply, self.frames(reply, reply.model or model, request))
        else:
            handler.send_json(200, self.completion(reply, reply.model or model, request), self.response_headers())

    def _handle(self, handler: Handler, request: RecordedRequest) -> None:
        with self._changed:
            self._requests.append(request)
            self._changed.notify_all()
        failure = self.auth_error(request) if self.api_key else None
        if failure:
            self.reject(handler, *failure)
        elif request.method == "POST" and not isinstance(request.json, dict):
            self.reject(handler, 400, "The request body is not valid JSON.")
        elif request.method == "POST" and (problem := self.invalid(request)):
            self.reject(handler, 400, problem)
        else:
            self.route(handler, request)

    def _pick_reply(self, model: str, request: RecordedRequest) -> Reply:
        with self._lock:
            if model in self._model_replies:
                return self._model_replies[model]
            if self._queue:
                return self._queue.popleft()
        default = self.default_reply
        return default(request) if callable(default) else default

    def _stream(self, handler: Handler, reply: Reply, frames: Iterable[Frame]) -> None:
        """Write ``frames`` as chunks, pacing and faulting the content frames as ``reply`` says."""
        handler.start_stream(self.stream_content_type, self.response_headers())
        sent = 0
        for frame in frames:
            if frame.content:
                if not self._await_chunk(handler, reply.chunk_delay if sent else 0.0):
                    return
                if sent == reply.reset_after:  # when the next chunk was due, so the ones sent can be read
                    return handler.reset()
                if sent == reply.error_after:
                    return self._end_with_error(handler, reply)
                sent += 1
            if not handler.write_chunk(frame.data):
                return self._client_left(handler)
        if sent == reply.reset_after:
            return handler.reset()
        if sent == reply.error_after:
            return self._end_with_error(handler, reply)
        handler.end_stream()
        with self._changed:
            self.completed_streams += 1
            self._changed.notify_all()

    def _end_with_error(self, handler: Handler, reply: Reply) -> None:
        message = reply.error_message or status_phrase(reply.error_status)
        if handler.write_chunk(self.stream_error(reply.error_status, message).data):
            handler.end_stream()
        else:
            self._client_left(handler)

    def _await_chunk(self, handler: Handler, delay: float) -> bool:
        """Wait ``delay`` before the next content frame, watching for the client leaving or stop()."""
        deadline = time.monotonic() + delay
        while not handler.client_gone():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            if self._stopping.wait(min(remaining, GONE_POLL)):
                handler.drop()
                return False
        self._client_left(handler)
        return False

    def _client_left(self, handler: Handler) -> None:
        handler.drop()
        with self._changed:
            self.disconnects += 1
            self._changed.notify_all()

    def _pause(self, seconds: float) -> bool:
        """Sleep unless stop() is called meanwhile; True when the whole pause elapsed."""
        return not self._stopping.wait(seconds) if seconds > 0 else not self._stopping.is_set()

    def _track(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections[connection] = threading.current_thread()

    def _untrack(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.pop(connection, None)


# -- run by hand -----------------------------------------------------------------


def run_until_interrupted(fakes: Iterable[FakeServer], lines: Iterable[str],
                          watch: Callable[[], None] | None = None) -> None:
    """The fakes' command-line main loop: print ``lines`` (what to point a server at), then run
    ``watch`` (a loop reporting what the fakes see) or just wait, until Ctrl-C or SIGTERM; every one
    of ``fakes`` (already started) is stopped on the way out."""
    fakes = list(fakes)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        for line in lines:
            print(line, flush=True)
        if watch is None:
            signal.pause()
        else:
            watch()
    except KeyboardInterrupt:
        pass
    finally:
        for fake in fakes:
            fake.stop()
