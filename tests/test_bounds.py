"""Issue 16: slow clients, work per request and limits that hold under concurrency (docs/reliability.md,
"Slow clients", "Image bounds", "Rate limits on Redis under concurrency")."""
from __future__ import annotations

import base64
import json
import re
import selectors
import socket
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from tests.conftest import REDIS_URL, ROOT, VENV_BIN, as_environ, base_config, provider_config
from tests.serving_stack import CADDY, CaddyProxy

# -- rate limits on Redis under concurrency --------------------------------------------------------


def create_key(tmp_path: Path, settings: dict, *options: str) -> str:
    environ = as_environ(base_config(tmp_path, **settings))
    out = subprocess.run([str(VENV_BIN / "flask"), "--app", "app.wsgi", "keys", "create", "bounded", *options],
                         cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60, check=True).stdout
    return re.search(r"^key: (\S+)$", out, re.MULTILINE).group(1)


def concurrently(count: int, send) -> list[int]:
    """`send()` from `count` threads released together; each one's status (0 for a failed request)."""
    gate = threading.Barrier(count, timeout=20)

    def one(_):
        gate.wait()
        try:
            return send().status_code
        except requests.RequestException:
            return 0

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


@pytest.mark.parametrize("fail_open", [True, False])
def test_250_concurrent_requests_on_redis_get_exactly_the_keys_rpm(live_server, tmp_path, fake_openai, fail_open):
    """redis-py's default pool refused the 101st concurrent connection: a storage failure, so with
    RATE_LIMIT_FAIL_OPEN=true a key with --rpm 30 got 180 of 250 answered, and with false 146 were 503s,
    while Redis was healthy. One worker, so all 250 share one pool."""
    settings = dict(REDIS_URL=REDIS_URL, QUEUE_NAME=f"bounds-{uuid.uuid4().hex[:8]}",
                    RATE_LIMIT_FAIL_OPEN=str(fail_open).lower(), **provider_config(openai=fake_openai))
    server = live_server(**settings)
    headers = {"Authorization": f"Bearer {create_key(tmp_path, settings, '--rpm', '30')}"}

    statuses = concurrently(250, lambda: requests.get(f"{server.url}/v1/models", headers=headers, timeout=30))
    print({status: statuses.count(status) for status in sorted(set(statuses))})

    assert statuses.count(200) == 30 and statuses.count(429) == 220, Counter(statuses)
    log = (Path(server.config["LOG_DIR"]) / "app.log").read_text()
    assert "rate-limit storage unavailable" not in log


def test_a_rate_limit_storage_failure_is_logged_when_failing_open(make_app, fake_openai, tmp_path):
    """flask-limiter logs its own failures to its `flask-limiter` logger, which had no handler: with
    RATE_LIMIT_FAIL_OPEN=true a Redis outage served everything unlimited without a line."""
    app = make_app(REDIS_URL="redis://127.0.0.1:1/0", RATE_LIMIT_FAIL_OPEN=True, REDIS_POOL_TIMEOUT_S=0.5,
                   **provider_config(openai=fake_openai))
    made = app.test_cli_runner().invoke(args=["keys", "create", "k", "--rpm", "5"])
    key = re.search(r"key: (ais-\S+)", made.output).group(1)
    client = app.test_client()
    statuses = [client.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code for _ in range(3)]

    assert statuses == [200, 200, 200]
    log = (Path(app.config["LOG_DIR"]) / "app.log").read_text()
    assert log.count("rate-limit storage unavailable, serving unlimited (RATE_LIMIT_FAIL_OPEN=true)") == 1
    assert "Traceback" not in log


# -- image bounds ------------------------------------------------------------------------------------

PIXEL = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8/5+hHgAHggJ/"
                         "PchI7wAAAABJRU5ErkJggg==")
BIG = 9 * 2**20


class ImageHost:
    """A loopback web server of images that counts what it was asked for: `/big-N.png` are 9 MB PNGs,
    `/drip.png` sends its bytes one a second, any other path one pixel."""

    def __init__(self):
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                host.hits.append(self.path)
                body = bytes(BIG) if self.path.startswith("/big-") else PIXEL
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    if self.path == "/drip.png":
                        for byte in body:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(1)
                    else:
                        self.wfile.write(body)
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        self.hits: list[str] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def images() -> Iterator[ImageHost]:
    host = ImageHost()
    yield host
    host.close()


def image_bodies(urls: list[str]) -> dict[str, tuple[str, dict]]:
    """The same images as each front door takes them: path -> (path, body) for a Gemini model."""
    return {
        "chat_completions": ("/v1/chat/completions", {"model": "gemini-2.5-flash", "messages": [
            {"role": "user", "content": [{"type": "text", "text": "what?"}] + [
                {"type": "image_url", "image_url": {"url": url}} for url in urls]}]}),
        "messages": ("/v1/messages", {"model": "gemini-2.5-flash", "max_tokens": 100, "messages": [
            {"role": "user", "content": [{"type": "text", "text": "what?"}] + [
                {"type": "image", "source": {"type": "url", "url": url}} for url in urls]}]}),
        "responses": ("/v1/responses", {"model": "gemini-2.5-flash", "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "what?"}] + [
                {"type": "input_image", "image_url": url} for url in urls]}]}),
    }


def error_of(response) -> dict:
    """The error object of any of the API's shapes (ours, OpenAI's, Anthropic's)."""
    body = response.get_json()
    assert body is not None, response.data[:200]
    return body["error"]


@pytest.mark.parametrize("door", ["chat_completions", "messages", "responses"])
@pytest.mark.parametrize("stream", [False, True])
def test_sixty_large_images_are_refused_before_any_fetch(make_app, fake_gemini, images, door, stream):
    """One 6 kB request of 60 URLs of 9 MB each grew a worker by 2.6 GB: every image was fetched."""
    app = make_app(IMAGE_FETCH_ALLOW_HOSTS=["127.0.0.1"], **provider_config(gemini=fake_gemini))
    path, body = image_bodies([f"{images.url}/big-{n}.png" for n in range(60)])[door]
    response = app.test_client().post(path, json=dict(body, stream=stream))

    assert response.status_code == 400, response.data[:300]
    error = error_of(response)
    assert "at most 50 images" in error["message"] and "IMAGE_MAX_PARTS" in error["message"]
    if door == "messages":
        assert response.get_json()["type"] == "error" and error["type"] == "invalid_request_error"
    else:
        assert error["code"] == "too_many_images"
    assert images.hits == [] and fake_gemini.requests == []


def test_sixty_data_images_on_chat_are_refused(make_app, fake_openai):
    app = make_app(MAX_BODY_BYTES=5_000_000, **provider_config(openai=fake_openai))
    uri = "data:image/png;base64," + base64.b64encode(PIXEL).decode()
    content = [{"type": "image_url", "image_url": {"url": uri}}] * 60
    response = app.test_client().post("/chat", json={"messages": [{"role": "user", "content": content}]})
    assert response.status_code == 400 and error_of(response)["code"] == "too_many_images"
    assert fake_openai.requests == []


def test_image_urls_stop_being_fetched_past_the_request_s_total(make_app, fake_gemini, images):
    app = make_app(IMAGE_FETCH_ALLOW_HOSTS=["127.0.0.1"], IMAGE_FETCH_TOTAL_BYTES=20 * 2**20,
                   **provider_config(gemini=fake_gemini))
    path, body = image_bodies([f"{images.url}/big-{n}.png" for n in range(5)])["chat_completions"]
    response = app.test_client().post(path, json=body)

    assert response.status_code == 413, response.data[:300]
    error = error_of(response)
    assert error["code"] == "images_too_large" and "IMAGE_FETCH_TOTAL_BYTES" in error["message"]
    assert images.hits == ["/big-0.png", "/big-1.png", "/big-2.png"]  # 18 MB, then the third passes 20 MB
    assert fake_gemini.requests == []


def test_an_image_is_fetched_once_whatever_the_retries(make_app, fake_gemini, images):
    """With Gemini failing 500, one request fetched the same image 6 times (3 tries of 2 models)."""
    from tests.fakes.server import Reply

    fake_gemini.default_reply = Reply(status=500, error_message="down")
    app = make_app(IMAGE_FETCH_ALLOW_HOSTS=["127.0.0.1"], **provider_config(gemini=fake_gemini))
    path, body = image_bodies([f"{images.url}/pixel.png", f"{images.url}/pixel.png?again"])["chat_completions"]
    response = app.test_client().post(path, json=body)

    assert response.status_code == 502, response.data[:300]
    generations = [r for r in fake_gemini.requests if r.path.endswith(("generateContent", "streamGenerateContent"))]
    assert len(generations) == 6  # whole or, once the upstream is suspect, as a stream
    assert images.hits == ["/pixel.png", "/pixel.png?again"]


HTML = "data:text/html;base64," + base64.b64encode(b"<script>alert(1)</script>").decode()


@pytest.mark.parametrize("path, body, param", [
    ("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "x"}, {"type": "image_url", "image_url": {"url": HTML}}]}]}, "messages"),
    ("/chat", {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "x"}, {"type": "image_url", "image_url": {"url": HTML}}]}]}, "messages"),
    ("/v1/responses", {"model": "gpt-4o-mini", "input": [{"role": "user", "content": [
        {"type": "input_text", "text": "x"}, {"type": "input_image", "image_url": HTML}]}]},
     "input.0.content.1.image_url"),
    ("/v1/messages", {"model": "gpt-4o-mini", "max_tokens": 10, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "x"}, {"type": "image", "source": {"type": "base64", "media_type": "text/html",
                                                                      "data": "PHNjcmlwdD4="}}]}]},
     "messages.0.content.1.source.media_type"),
])
def test_a_data_uri_that_is_not_an_image_is_a_400_naming_the_part(make_app, fake_openai, path, body, param):
    # Responses translated, not sent as they came to OpenAI's own Responses API (which judges its body itself)
    client = make_app(OPENAI_RESPONSES_API=False, **provider_config(openai=fake_openai)).test_client()
    response = client.post(path, json=body)
    assert response.status_code == 400, response.data[:300]
    error = error_of(response)
    assert "text/html" in error["message"] and ("content part 1" in error["message"] or param in error["message"])
    if path != "/v1/messages":
        assert error["param"] == param
    assert fake_openai.requests == []


def test_a_dripped_image_is_given_up_at_its_overall_deadline(live_server, fake_gemini, images):
    """An image dripped a byte a second held a request 39 s with IMAGE_FETCH_TIMEOUT_S=10: the timeout
    bounded each read, not the fetch. Real Gunicorn + gevent, as in production."""
    server = live_server(IMAGE_FETCH_ALLOW_HOSTS="127.0.0.1", IMAGE_FETCH_TIMEOUT_S=2,
                         **provider_config(gemini=fake_gemini))
    path, body = image_bodies([f"{images.url}/drip.png"])["chat_completions"]
    started = time.monotonic()
    response = requests.post(server.url + path, json=body, timeout=30)
    took = time.monotonic() - started

    assert response.status_code == 400 and response.json()["error"]["code"] == "image_fetch_failed", response.text
    assert took < 4, took
    assert fake_gemini.requests == []


# -- slow clients --------------------------------------------------------------------------------------


@dataclass
class Siege:
    """What a slow-client attack saw: each /ping (seconds to its answer, None when it got none) and the
    status each attacking connection was answered with, if any."""

    pings: list[float | None]
    statuses: Counter
    open_at_end: int

    @property
    def slowest_ping(self) -> float:
        return max((p for p in self.pings if p is not None), default=float("inf"))

    def summary(self) -> str:
        answered = [p for p in self.pings if p is not None]
        return (f"pings {len(answered)}/{len(self.pings)} answered, slowest {self.slowest_ping:.2f}s; attack answered "
                f"{dict(self.statuses)}, {self.open_at_end} still open at the end")


def siege(url: str, connections: int, phase: str, seconds: float, drip_every: float = 3.0,
          ping_timeout: float = 5.0) -> Siege:
    """`connections` slow clients on `url` for `seconds`, each sending one byte every `drip_every` s: of
    the headers (phase "header"), or after full headers of a POST /task with a 100 kB body (phase
    "body"); meanwhile a GET /ping every 0.25 s on a connection of its own."""
    host, port = url.removeprefix("http://").split(":")
    first = (b"POST /task HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
             if phase == "body" else b"POST /task HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    selector = selectors.DefaultSelector()
    statuses: Counter = Counter()
    pings: list[float | None] = []
    stop = threading.Event()

    def ping() -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                ok = requests.get(url + "/ping", timeout=ping_timeout).status_code == 200
                pings.append(time.monotonic() - started if ok else None)
            except requests.RequestException:
                pings.append(None)
            stop.wait(0.25)

    pinger = threading.Thread(target=ping, daemon=True)
    pinger.start()
    for _ in range(connections):
        sock = socket.create_connection((host, int(port)), timeout=5)
        sock.sendall(first)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    end, next_drip = time.monotonic() + seconds, time.monotonic() + drip_every
    try:
        while time.monotonic() < end:
            for key, _ in selector.select(timeout=0.1):
                answer_or_close(key.fileobj, selector, statuses)
            if time.monotonic() >= next_drip:
                next_drip += drip_every
                for key in list(selector.get_map().values()):
                    try:
                        key.fileobj.send(b"x")
                    except (BlockingIOError, OSError):
                        pass
    finally:
        stop.set()
        pinger.join(ping_timeout + 1)
        open_at_end = len(selector.get_map())
        for key in list(selector.get_map().values()):
            selector.unregister(key.fileobj)
            key.fileobj.close()
    return Siege(pings, statuses, open_at_end)


def answer_or_close(sock, selector, statuses: Counter) -> None:
    try:
        data = sock.recv(65536)
    except BlockingIOError:
        return
    except OSError:
        data = b""
    if data.startswith(b"HTTP/1.1 "):
        statuses[int(data[9:12])] += 1
    if not data or data.startswith(b"HTTP/1.1 "):
        selector.unregister(sock)
        sock.close()


def test_a_slow_body_attack_leaves_ping_answered(live_server):
    """2,100 connections that send full headers to /task and then a body byte every 3 s held every
    connection of both workers (1,000 each): /ping went unanswered while they stayed open."""
    server = live_server(workers=2, REQUEST_READ_TIMEOUT_S=4)
    result = siege(server.url, 2100, "body", seconds=10)
    print(result.summary())

    assert None not in result.pings and result.slowest_ping < 3, result.summary()
    assert result.statuses[429] >= 2100 - 2 * 20, result.summary()  # past REQUEST_READ_MAX_PER_CLIENT per worker
    assert result.statuses[408] >= 1, result.summary()  # within it, given up after REQUEST_READ_TIMEOUT_S


def test_a_slow_header_attack_leaves_ping_answered(live_server):
    """Gunicorn's gevent worker reads each request head under its keepalive (5 s): a connection that
    trickles its headers is closed then, and /ping is answered once they are."""
    server = live_server(workers=2)
    result = siege(server.url, 2100, "header", seconds=10, ping_timeout=8)
    print(result.summary())

    assert None not in result.pings and result.slowest_ping < 6.5, result.summary()
    assert result.open_at_end == 0, result.summary()


@pytest.mark.skipif(CADDY is None, reason="caddy is not installed")
@pytest.mark.parametrize("phase", ["body", "header"])
def test_slow_clients_through_the_shipped_caddyfile_leave_ping_answered(live_server, tmp_path, monkeypatch, phase):
    """deploy/Caddyfile.internal: Caddy reads slow headers itself (read_header) and passes a slow body on
    to the app as it comes, where REQUEST_READ_MAX_PER_CLIENT and REQUEST_READ_TIMEOUT_S apply; Caddy
    cuts every request still unread after CADDY_READ_BODY_TIMEOUT (read_body; 4 s here, 30 s shipped)."""
    monkeypatch.setenv("CADDY_READ_BODY_TIMEOUT", "4s")
    server = live_server(workers=2, REQUEST_READ_TIMEOUT_S=4)
    caddy = CaddyProxy(tmp_path, server.url.removeprefix("http://"))
    try:
        result = siege(caddy.url, 2100, phase, seconds=10)
    finally:
        caddy.stop()
    print(result.summary())

    assert None not in result.pings and result.slowest_ping < 3, result.summary()
    if phase == "body":
        assert result.open_at_end == 0, result.summary()


def slow_post(url: str, path: str, body_bytes: int = 1000) -> socket.socket:
    """A POST of JSON headers promising `body_bytes` and only its first byte."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {body_bytes}"
                 "\r\n\r\n{".encode())
    return sock


def read_answer(sock: socket.socket) -> tuple[int, dict, bool]:
    """(status, JSON body, whether the server then closed the connection) of one answer."""
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < content_length_of(data):
        piece = sock.recv(65536)
        if not piece:
            break
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    try:
        closed = sock.recv(1) == b""
    except OSError:
        closed = True
    return int(head[9:12]), json.loads(body[:content_length_of(data)]), closed


def content_length_of(data: bytes) -> int:
    match = re.search(rb"(?i)\r\ncontent-length: *(\d+)", data)
    return int(match.group(1)) if match else 0


def test_a_body_late_or_one_too_many_is_answered_in_the_api_s_shape(live_server, fake_openai):
    server = live_server(REQUEST_READ_TIMEOUT_S=1, REQUEST_READ_MAX_PER_CLIENT=2, **provider_config(openai=fake_openai))
    first, second = slow_post(server.url, "/v1/chat/completions"), slow_post(server.url, "/v1/messages")
    time.sleep(0.3)  # both bodies are being waited for
    third = slow_post(server.url, "/v1/messages")
    status, body, closed = read_answer(third)
    assert (status, body["type"], body["error"]["type"]) == (429, "error", "rate_limit_error") and closed
    assert "REQUEST_READ_MAX_PER_CLIENT" in body["error"]["message"]

    started = time.monotonic()
    status, body, closed = read_answer(first)
    assert status == 408 and body["error"]["code"] == "request_timeout" and closed, body
    assert time.monotonic() - started < 1.5
    status, body, closed = read_answer(second)
    assert status == 408 and body["type"] == "error" and closed
    for sock in (first, second, third):
        sock.close()
    answer = requests.post(f"{server.url}/v1/chat/completions", timeout=10, json={
        "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status_code == 200 and fake_openai.requests


@pytest.mark.skipif(CADDY is None, reason="caddy is not installed")
def test_caddy_s_read_body_does_not_cut_a_stream_longer_than_it(live_server, tmp_path, monkeypatch, fake_openai):
    """read_body bounds reading the request; a streamed answer may last longer (here 3 s past it)."""
    from tests.fakes.server import Reply

    monkeypatch.setenv("CADDY_READ_BODY_TIMEOUT", "1s")
    fake_openai.default_reply = Reply(chunks=["one ", "two ", "three ", "four"], chunk_delay=1.0)
    server = live_server(**provider_config(openai=fake_openai))
    caddy = CaddyProxy(tmp_path, server.url.removeprefix("http://"))
    try:
        answer = requests.post(f"{caddy.url}/v1/chat/completions", timeout=30, json={
            "model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "count"}]})
    finally:
        caddy.stop()
    assert answer.status_code == 200 and "four" in answer.text and answer.text.rstrip().endswith("[DONE]")
