"""Issue 14's defects 3 to 11: hostile or malformed input answered as a clear JSON 4xx before anything is
stored or sent upstream, safe logs, headers and labels, and the server's own limits (docs/reliability.md)."""
from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from app.integrations.netguard import BlockedURL, check_url, is_public
from tests.conftest import REDIS_ADDRESS, TcpRelay, base_config, metric, provider_config
from tests.fakes.github_api import DEFAULT_TOKEN, FakeGitHub
from tests.fakes.server import Reply

ASK = {"question": "hi", "client_id": "c", "user_id": "u"}


def post_raw(client, path: str, text: str):
    return client.post(path, data=text.encode("utf-8", "surrogatepass"), content_type="application/json")


def app_log(app) -> str:
    return (Path(app.config["LOG_DIR"]) / "app.log").read_text(encoding="utf-8")


# -- 3: nesting, message count, length and parts -----------------------------------------------------

@pytest.mark.parametrize("path", ["/chat", "/v1/chat/completions", "/v1/ask"])
def test_deeply_nested_json_is_a_400(client, fake_openai, path):
    response = post_raw(client, path, '{"x":' + "[" * 1000 + "]" * 1000 + "}")
    assert response.status_code == 400
    assert response.json["error"]["code"] == "too_deeply_nested"
    assert fake_openai.requests == []


@pytest.mark.parametrize("body, field", [
    ({"messages": [{"role": "user", "content": "x"}] * 2001}, "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}] * 101}]}, "messages"),
    ({"messages": [{"role": "user", "content": "x" * 1_000_001}]}, "messages"),
    ({"message": "x" * 1_000_001}, "message"),
])
def test_too_many_messages_parts_or_characters_are_refused(make_app, fake_openai, body, field):
    client = make_app(**provider_config(openai=fake_openai), MAX_BODY_BYTES=50_000_000).test_client()
    response = client.post("/chat", json=body)
    assert response.status_code == 400 and response.json["error"]["param"] == field
    assert fake_openai.requests == []


# -- 4: ids match in full --------------------------------------------------------------------------

def test_a_chat_id_with_a_trailing_newline_is_refused_before_anything_happens(client, fake_openai):
    response = client.post("/chat", json={"message": "x", "chat_id": "relnl\n"})
    assert response.status_code == 400 and response.json["error"]["param"] == "chat_id"
    assert fake_openai.requests == []
    assert client.get("/chat/history").status_code == 200


def test_a_deployment_task_with_a_trailing_newline_is_refused():
    from marshmallow import ValidationError

    from app.deployments.schemas import TaskRequestSchema, check_path

    body = {"email": "a@example.com", "secret": "s", "task": "task-1\n", "round": 1, "nonce": "n", "brief": "b",
            "evaluation_url": "https://example.com/notify"}
    with pytest.raises(ValidationError, match="task"):
        TaskRequestSchema().load(body)
    with pytest.raises(ValidationError):
        check_path("index.html\n")


# -- 5: model names, header values, log lines -------------------------------------------------------

@pytest.mark.parametrize("model", ["gpt-4o\nmini", "gpt-4o-mini\u0101", "gpt 4o", "", "x" * 201])
def test_a_bad_model_name_is_a_400_before_any_upstream_call(client, fake_openai, model):
    response = client.post("/v1/chat/completions", json={"model": model, "messages": [{"role": "user",
                                                                                        "content": "hi"}]})
    assert response.status_code == 400 and response.json["error"]["param"] == "model"
    assert fake_openai.requests == []


def test_an_upstream_model_name_is_encoded_in_the_header(client, fake_openai):
    fake_openai.enqueue(Reply(model="gpt-4o-mini-\u00e9t\u00e9"))
    response = client.post("/chat", json={"messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 200
    assert response.headers["X-Model"] == "gpt-4o-mini-%C3%A9t%C3%A9"
    assert response.json["model"] == "gpt-4o-mini-\u00e9t\u00e9"


def test_upstream_text_cannot_forge_a_log_line(make_app, fake_openai):
    app = make_app(**provider_config(openai=fake_openai), RETRY_ATTEMPTS=0)
    fake_openai.set_model_reply("gpt-4o-mini", Reply(status=500, error_message="boom\nFORGED ERROR line\r\x1b[2J"))
    app.test_client().post("/chat", json={"messages": [{"role": "user", "content": "hi"}]})
    log = app_log(app)
    assert "boom\\nFORGED ERROR line\\r\\x1b[2J" in log
    assert not any(line.startswith("FORGED") for line in log.splitlines())


def test_an_escaped_path_stays_on_its_access_line(make_app, fake_openai):
    app = make_app(**provider_config(openai=fake_openai), LOG_LEVEL="INFO")
    app.test_client().get("/nothing%0AFORGED").close()  # the access line is written on close
    access = [line for line in app_log(app).splitlines() if "aiserver.access" in line]
    assert any("path=/nothing\\nFORGED" in line for line in access)
    assert not any(line.startswith("FORGED") for line in app_log(app).splitlines())


# -- 6: MAX_BODY_BYTES for chunked bodies (real Gunicorn) ----------------------------------------------

def test_a_chunked_body_over_the_limit_is_a_413(live_server, fake_openai):
    server = live_server(**provider_config(openai=fake_openai), MAX_BODY_BYTES=1000)
    body = json.dumps({"messages": [{"role": "user", "content": "x" * 1500}]}).encode()
    chunks = iter([body[:700], body[700:]])  # a generator: requests sends it chunked, without Content-Length
    response = requests.post(server.url + "/chat", data=chunks, headers={"Content-Type": "application/json"},
                             timeout=10)
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"
    small = json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode()
    response = requests.post(server.url + "/chat", data=iter([small]), headers={"Content-Type": "application/json"},
                             timeout=10)
    assert response.status_code == 200
    assert len(fake_openai.requests) == 1


def raw_exchange(url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send `request` as is on a new connection; the status, headers and body of the answer (read to
    the connection's close)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize("coding, body, status, code", [
    ("chunked", b"zz\r\n{}\r\n0\r\n\r\n", 400, "malformed_body"),  # a chunk size that is no hex number
    ("xchunked", b"2\r\n{}\r\n0\r\n\r\n", 501, "not_implemented"),  # refused by Gunicorn, before the app
])
def test_a_bad_chunk_size_or_an_unknown_transfer_coding_is_answered_in_json(live_server, coding, body, status, code):
    """A bad chunk size was a 500 with a traceback in the log (documented as 400), and `Transfer-Encoding:
    xchunked` Gunicorn's HTML 501."""
    server = live_server()
    request = (f"POST /chat HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
               f"Transfer-Encoding: {coding}\r\n\r\n").encode() + body
    got, headers, answer = raw_exchange(server.url, request)
    assert (got, headers["content-type"]) == (status, "application/json"), answer
    error = json.loads(answer)
    assert error["success"] is False and error["error"]["code"] == code
    log = server.log_path.read_text()
    assert "Traceback" not in log and "unhandled error" not in log


# -- 7: lone surrogates -----------------------------------------------------------------------------

@pytest.mark.parametrize("path, text, field", [
    ("/chat", '{"message": "\\ud800"}', "message"),
    ("/chat", '{"messages": [{"role": "user", "content": [{"type": "text", "text": "a\\udfffb"}]}]}',
     "messages.0.content.0.text"),
    ("/v1/ask", json.dumps(ASK)[:-1] + ', "question": "\\ud83d"}', "question"),
    ("/v1/chat/completions", '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "\\udc00"}]}',
     "messages.0.content"),
])
def test_a_lone_surrogate_is_a_400_naming_the_field(client, fake_openai, path, text, field):
    response = post_raw(client, path, text)
    assert response.status_code == 400, response.json
    assert response.json["error"]["code"] == "invalid_unicode" and response.json["error"]["param"] == field
    assert field in response.json["error"]["message"]
    assert fake_openai.requests == []


def test_a_proper_surrogate_pair_is_a_character(client, fake_openai):
    response = post_raw(client, "/chat", '{"messages": [{"role": "user", "content": "\\ud83d\\ude00"}]}')
    assert response.status_code == 200
    assert fake_openai.requests[0].json["messages"][-1]["content"] == "\U0001f600"


@pytest.fixture
def fake_github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        yield fake


@pytest.fixture
def gist_client(make_app, fake_github):
    return make_app(GITHUB_TOKEN=DEFAULT_TOKEN, GITHUB_API_URL=fake_github.url, GITHUB_MAX_RATE_WAIT_S=0).test_client()


def test_a_lone_surrogate_never_reaches_github(gist_client, fake_github):
    response = post_raw(gist_client, "/gists", '{"files": [{"filename": "a.txt", "content": "x\\ud800"}]}')
    assert response.status_code == 400 and response.json["error"]["param"] == "files.0.content"
    assert fake_github.writes == []


# -- 8: numbers and filenames -----------------------------------------------------------------------

@pytest.mark.parametrize("path, text, field", [
    ("/v1/chat/completions", '{"model": "gpt-4o-mini", "max_tokens": 1' + "0" * 40 + ', "messages": '
     '[{"role": "user", "content": "hi"}]}', "max_tokens"),
    ("/v1/chat/completions", '{"model": "gpt-4o-mini", "max_completion_tokens": 1000001, "messages": '
     '[{"role": "user", "content": "hi"}]}', "max_completion_tokens"),
    ("/chat", '{"message": "hi", "max_tokens": 1' + "0" * 40 + "}", "max_tokens"),
    ("/chat", '{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10000000}', "max_tokens"),
    ("/v1/chat/completions", '{"model": "gpt-4o-mini", "response_format": {"type": "json_schema", "json_schema": '
     '{"schema": {"maximum": NaN}}}, "messages": [{"role": "user", "content": "hi"}]}', None),
    ("/chat", '{"message": "hi", "temperature": Infinity}', None),
])
def test_out_of_range_numbers_and_nan_are_refused(client, fake_openai, path, text, field):
    response = post_raw(client, path, text)
    assert response.status_code == 400
    assert response.json["error"].get("param") == field
    assert fake_openai.requests == []


@pytest.mark.parametrize("filename", [".", "..", ".git", "a\\b.txt", "readme\u202etxt.exe", "x\u2066y"])
def test_unsafe_gist_filenames_are_refused(gist_client, fake_github, filename):
    response = gist_client.post("/gists", json={"files": [{"filename": filename, "content": "x"}]})
    assert response.status_code == 400 and response.json["error"]["param"] == "files"
    assert fake_github.writes == []


# -- 9: errors are JSON -----------------------------------------------------------------------------

@pytest.mark.parametrize("path, shape", [("/ping", "ours"), ("/v1/chat/completions", "openai")])
def test_405_says_which_methods_are_allowed(client, path, shape):
    response = client.put(path)
    assert response.status_code == 405
    assert response.json["error"]["type"] == "invalid_request_error"
    assert response.json["error"]["code"] == "method_not_allowed"
    assert "OPTIONS" in response.headers["Allow"]
    assert ("success" in response.json) == (shape == "ours")


def test_long_urls_and_headers_are_answered_in_json_by_the_app(live_server):
    server = live_server()
    response = requests.get(server.url + "/ping?q=" + "a" * 6000, timeout=10)
    assert response.status_code == 414 and response.json()["error"]["code"] == "uri_too_long"
    response = requests.get(server.url + "/ping", headers={"X-Big": "b" * 10000}, timeout=10)
    assert response.status_code == 431 and response.json()["error"]["code"] == "header_too_large"
    assert requests.get(server.url + "/ping", headers={"X-Big": "b" * 8000}, timeout=10).status_code == 200


# -- 10: trusted hosts, metrics labels, /docs headers, Redis outages --------------------------------------

def test_trusted_hosts_refuses_other_host_headers(live_server):
    server = live_server(TRUSTED_HOSTS="api.example.com,127.0.0.1")  # read from the environment, as `make run` does
    response = requests.get(server.url + "/ping", headers={"Host": "rebind.attacker.example"}, timeout=10)
    assert response.status_code == 400 and response.json()["success"] is False
    assert requests.get(server.url + "/ping", headers={"Host": "api.example.com:5001"}, timeout=10).ok


def test_forwarded_headers_are_ignored_without_a_trusted_proxy(live_server, tmp_path):
    # `make run` serves Gunicorn directly: a client's own X-Forwarded-Host must not pass TRUSTED_HOSTS,
    # nor its X-Forwarded-For become the logged address
    server = live_server(TRUSTED_HOSTS="api.example.com,127.0.0.1", LOG_FORMAT="json")
    forged = {"Host": "rebind.attacker.example", "X-Forwarded-Host": "api.example.com",
              "X-Forwarded-For": "192.0.2.1", "X-Request-ID": "forged-1"}
    response = requests.get(server.url + "/ping", headers=forged, timeout=10)
    assert response.status_code == 400 and response.json()["success"] is False
    logged = requests.get(server.url + "/ping", headers={"Host": "api.example.com", "X-Forwarded-For": "192.0.2.1",
                                                         "X-Request-ID": "forged-2"}, timeout=10)
    assert logged.ok
    from tests.test_started_server import access_line

    assert access_line(tmp_path / "logs", "forged-2")["client"] == "127.0.0.1"


def test_any_host_is_served_by_default(client):
    assert client.get("/ping", headers={"Host": "anything.example"}).status_code == 200


def test_only_configured_models_get_their_own_metrics_label(make_app, fake_openai):
    app = make_app(**provider_config(openai=fake_openai))
    client = app.test_client()
    before = client.get("/metrics").get_data(as_text=True)  # counters are per process: compare with before
    for n in range(30):
        client.post("/v1/chat/completions", json={"model": f"gpt-made-up-{n}",
                                                   "messages": [{"role": "user", "content": "hi"}]})
    client.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
    text = client.get("/metrics").get_data(as_text=True)
    added = {model: metric(text, "aiserver_llm_calls_total", provider="openai", model=model)
             - metric(before, "aiserver_llm_calls_total", provider="openai", model=model)
             for model in ("gpt-4o", "other", *(f"gpt-made-up-{n}" for n in range(30)))}
    assert {model: count for model, count in added.items() if count} == {"gpt-4o": 1, "other": 30}


def test_docs_carry_security_headers(client):
    response = client.get("/docs")
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert b"<script>" not in response.data  # no inline script for the policy to allow
    assert client.get("/static/docs.js").status_code == 200


def test_a_redis_outage_is_logged_once_then_at_intervals_and_its_end(tmp_path):
    from huey.consumer import Worker

    from app import create_app

    relay = TcpRelay(REDIS_ADDRESS)
    relay.up()
    app = create_app(base_config(tmp_path, REDIS_URL=f"redis://127.0.0.1:{relay.port}/0", QUEUE_OUTAGE_LOG_S=1.0,
                                 QUEUE_NAME=f"outage-{relay.port}"))
    huey = app.extensions["huey"]
    worker = Worker(huey, threading.Event(), default_delay=0.05, max_delay=0.05, backoff=1.0)
    worker.loop()  # reachable: nothing to log
    relay.down()
    started = time.monotonic()
    while time.monotonic() - started < 2.6:  # about fifty failed polls over 2.6 s
        worker.loop()
    relay.up()
    worker.loop()
    log = app_log(app)
    assert "Error reading from queue" not in log and "Traceback" not in log
    assert log.count("job queue unreachable (Redis)") == 1
    assert log.count("job queue still unreachable (Redis)") == 2
    assert log.count("job queue reachable again (Redis)") == 1
    assert log.index("unreachable") < log.index("still unreachable") < log.index("reachable again")


# -- 11: SSRF guard ---------------------------------------------------------------------------------

@pytest.mark.parametrize("address", ["2002:7f00:1::1", "2002:a9fe:a9fe::", "fec0::1", "feff:ffff::1"])
def test_6to4_and_site_local_addresses_are_blocked(address):
    assert not is_public(address)
    with pytest.raises(BlockedURL):
        check_url("https://sneaky.example/", resolver=lambda host, port: [address])


def test_public_ipv6_still_passes():
    assert is_public("2606:4700:4700::1111")
    assert check_url("https://one.example/", resolver=lambda host, port: ["2606:4700:4700::1111"]).address


# -- found by the soak (bench/soak.py) -------------------------------------------------------------


def test_requests_are_answered_when_the_worker_holds_over_1024_connections(live_server, fake_openai):
    """The check for a departed client used `select.select`, which raises for a socket numbered 1024 or
    more: with 500 streams open (two sockets each) every new request was a 500. One worker, 1,100 idle
    connections held open, then requests that reach the gateway."""
    server = live_server(WEB_WORKER_CONNECTIONS=1500, **provider_config(openai=fake_openai))
    host, port = server.url.removeprefix("http://").split(":")
    idle = []
    try:
        for _ in range(1100):
            idle.append(socket.create_connection((host, int(port)), timeout=10))
        for stream in (False, True):
            answer = requests.post(f"{server.url}/v1/chat/completions", timeout=30, json={
                "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": stream})
            assert answer.status_code == 200, answer.text
            assert "error" not in answer.text
    finally:
        for connection in idle:
            connection.close()
