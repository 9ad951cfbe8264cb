"""Streaming through a real `gunicorn -k gevent` process: chunk timing, the first token, fallback,
heartbeats, client disconnects, and the official openai SDK against `/v1`."""
from __future__ import annotations

import json
import socket
import time

import openai
import pytest
import requests

from tests.conftest import LiveServer, base_config, provider_config
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.server import Reply

ASK = {"question": "Tell me a story", "client_id": "c1", "user_id": "u1", "stream": True}


def sse_events(response: requests.Response):
    """(arrival time, data) for each `data:` line, and comments as ("comment", text)."""
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("data: "):
            yield time.monotonic(), line[6:]
        elif line.startswith(":"):
            yield time.monotonic(), ("comment", line)


@pytest.fixture(scope="module")
def fakes():
    with FakeOpenAI() as openai_fake, FakeAnthropic() as anthropic_fake:
        yield openai_fake, anthropic_fake


@pytest.fixture(scope="module")
def server(fakes, tmp_path_factory):
    """One server for the module (starting one takes seconds); the fakes are reset for each test."""
    config = base_config(tmp_path_factory.mktemp("streaming"), LOG_LEVEL="INFO", PROVIDER_FALLBACKS=["anthropic"],
                         RETRY_ATTEMPTS=0, SSE_HEARTBEAT_S=0.4,
                         UPSTREAM_FAILURES_TO_COOL=10**9,  # one server for every test: no health carried over
                         **provider_config(openai=fakes[0], anthropic=fakes[1]))
    live = LiveServer(config)
    yield live
    live.stop()


def fresh(fake):
    fake.reset()
    fake.default_reply = Reply()
    return fake


@pytest.fixture
def fake_openai(fakes):
    return fresh(fakes[0])


@pytest.fixture
def fake_anthropic(fakes):
    return fresh(fakes[1])


def test_v1_ask_streams_chunks_one_by_one_with_the_first_token_intact(server, fake_openai):
    pieces = ["Once", " upon", " a", " time", "."]
    fake_openai.enqueue(Reply(chunks=pieces, chunk_delay=0.25))
    with requests.post(server.url + "/v1/ask", json=ASK, stream=True, timeout=10) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert response.headers["Cache-Control"] == "no-cache" and response.headers["X-Accel-Buffering"] == "no"
        events = list(sse_events(response))
    data = [(t, d) for t, d in events if isinstance(d, str)]
    assert data[-1][1] == "[DONE]"
    chunks = [json.loads(d) for _, d in data[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    content = [(t, c["choices"][0]["delta"]["content"]) for (t, _), c in zip(data, chunks)
               if c["choices"][0]["delta"].get("content")]
    assert [text for _, text in content] == pieces
    gaps = [b[0] - a[0] for a, b in zip(content, content[1:])]
    assert all(gap > 0.15 for gap in gaps), f"chunks were held back and sent together: {gaps}"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_fallback_is_reported_in_the_stream_and_the_answer_starts_whole(server, fake_openai, fake_anthropic):
    fake_openai.default_reply = Reply(status=500, error_message="openai is down")
    fake_anthropic.enqueue(Reply(chunks=["First", " words", " survive"]))
    with requests.post(server.url + "/chat/gpt", json={"messages": [{"role": "user", "content": "hi"}]},
                       stream=True, timeout=10) as response:
        events = [json.loads(d) for _, d in sse_events(response) if isinstance(d, str)]
    kinds = [e["type"] for e in events]
    assert kinds == ["fallback", "start", "delta", "delta", "delta", "done"]  # the next vendor, not openai's 2nd model
    assert events[0]["provider"] == "openai" and "openai is down" in events[0]["error"]
    assert (events[1]["provider"], events[1]["model"]) == ("anthropic", "claude-sonnet-5-5")
    assert "".join(e["content"] for e in events if e["type"] == "delta") == "First words survive"


def test_non_streaming_fallback_says_which_attempts_failed(server, fake_openai, fake_anthropic):
    fake_openai.default_reply = Reply(status=503)
    fake_anthropic.enqueue(Reply(text="Claude answers"))
    body = requests.post(server.url + "/v1/ask", json={**ASK, "stream": False}, timeout=10).json()
    assert body["choices"][0]["message"]["content"] == "Claude answers" and body["provider"] == "anthropic"
    assert [a["model"] for a in body["attempts"]] == ["gpt-4o-mini"]  # the next vendor, not openai's 2nd model


def test_a_stream_that_cannot_start_is_a_plain_json_error(server, fake_openai, fake_anthropic):
    fake_openai.default_reply = fake_anthropic.default_reply = Reply(status=500)
    response = requests.post(server.url + "/v1/ask", json=ASK, timeout=10)
    assert response.status_code == 502 and response.json()["error"]["type"] == "upstream_error"


def test_a_failure_mid_stream_ends_with_an_error_event(server, fake_openai):
    fake_openai.enqueue(Reply(chunks=["partial ", "answer ", "lost"], reset_after=2, chunk_delay=0.1))
    with requests.post(server.url + "/chat", json={"messages": [{"role": "user", "content": "hi"}], "stream": True},
                       stream=True, timeout=10) as response:
        events = [json.loads(d) for _, d in sse_events(response) if isinstance(d, str)]
    assert [e["type"] for e in events] == ["start", "delta", "delta", "error"], events
    assert len(fake_openai.requests) == 1


def test_heartbeats_keep_a_silent_stream_open(server, fake_openai):
    fake_openai.enqueue(Reply(chunks=["late", " answer"], first_byte_delay=1.5))
    with requests.post(server.url + "/v1/ask", json=ASK, stream=True, timeout=10) as response:
        events = list(sse_events(response))
    comments = [d for _, d in events if isinstance(d, tuple)]
    assert len(comments) >= 2 and all(c[1] == ": heartbeat" for c in comments)
    assert events[-1][1] == "[DONE]"


def test_client_disconnect_closes_the_upstream_request(server, fake_openai):
    fake_openai.enqueue(Reply(chunks=[f"token{i} " for i in range(100)], chunk_delay=0.05))
    host, port = server.url.removeprefix("http://").split(":")
    body = json.dumps(ASK).encode()
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"POST /v1/ask HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        received = b""
        while b"token2" not in received:
            received += sock.recv(4096)
    assert fake_openai.wait_for_disconnect(3), "the upstream stream was still being read after the client left"
    assert fake_openai.completed_streams == 0


def test_the_official_openai_sdk_works_against_v1(server, fake_openai):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    fake_openai.enqueue(Reply(text="Plain answer", prompt_tokens=4, completion_tokens=2))
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert completion.choices[0].message.content == "Plain answer"
    assert completion.usage.total_tokens == 6

    fake_openai.enqueue(Reply(chunks=["Str", "eam", "ed"], prompt_tokens=4))
    stream = client.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Streamed"
    assert chunks[-1].usage.completion_tokens == 3 and chunks[-1].choices == []

    assert "openai/gpt-4o-mini" in [m.id for m in client.models.list()]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    fake_openai.enqueue(Reply(chunks=["a", "b", "c"], reset_after=1, chunk_delay=0.2))
    with pytest.raises(openai.APIError, match="mid-answer"):
        list(client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                                            stream=True))
