"""Faults through a real Gunicorn + gevent server (issue 14, defects 1 and 2): a SQLite database locked
by another process, hung providers, first-byte timeouts, request deadlines and clients that leave."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import provider_config
from tests.fakes.server import Reply

LOCK_S = 6.0
HOLD_LOCK = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
connection.execute("ROLLBACK")
"""


def hold_write_lock(database_path: Path, seconds: float) -> subprocess.Popen:
    """Another process holding `BEGIN EXCLUSIVE` on the SQLite file for `seconds`; returns once it holds it."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(database_path), str(seconds)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


def timed_lines(response: requests.Response, into: list[tuple[float, str]]) -> None:
    """Append (arrival time, line) for every non-empty line of a streamed response."""
    for line in response.iter_lines(decode_unicode=True):
        if line:
            into.append((time.monotonic(), line))


def stream_in_background(url: str, body: dict[str, Any], into: list[tuple[float, str]]) -> threading.Thread:
    def read() -> None:
        with requests.post(url, json=body, stream=True, timeout=30) as response:
            timed_lines(response, into)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def longest_gap(times: list[float]) -> float:
    return max(later - earlier for earlier, later in zip(times, times[1:]))


# -- defect 1: a locked SQLite database ------------------------------------------------------------


def test_a_locked_database_neither_freezes_the_worker_nor_loses_an_answer(fake_openai, live_server, tmp_path):
    database_path = tmp_path / "locked.db"
    server = live_server(DATABASE_URL=f"sqlite:///{database_path}", DB_LOCK_WAIT_S=2, SSE_HEARTBEAT_S=0.3,
                         USAGE_FLUSH_S=0.5, **provider_config(openai=fake_openai))
    pieces = [f"w{i} " for i in range(8)]
    fake_openai.enqueue(Reply(chunks=pieces, chunk_delay=0.2))  # the chat, which ends while the lock is held
    fake_openai.enqueue(Reply(chunks=["late"], first_byte_delay=LOCK_S - 1.5))  # /v1/ask, silent meanwhile
    chat_id = f"t-{uuid.uuid4().hex[:12]}"
    chat_lines: list[tuple[float, str]] = []
    ask_lines: list[tuple[float, str]] = []
    chat = stream_in_background(f"{server.url}/chat", {"message": "Count", "chat_id": chat_id, "stream": True},
                                chat_lines)
    deadline = time.monotonic() + 5
    while not any('"delta"' in line for _, line in chat_lines) and time.monotonic() < deadline:
        time.sleep(0.02)

    holder = hold_write_lock(database_path, LOCK_S)
    ask = stream_in_background(f"{server.url}/v1/ask", {"question": "hi", "client_id": "c", "user_id": "u",
                                                        "stream": True}, ask_lines)
    pings = []
    while holder.poll() is None:
        started = time.monotonic()
        assert requests.get(f"{server.url}/ping", timeout=10).ok
        pings.append(time.monotonic() - started)
        time.sleep(0.1)
    chat.join(timeout=30)
    ask.join(timeout=30)

    assert len(pings) > 10 and max(pings) < 0.5, pings
    assert ask_lines[-1][1] == "data: [DONE]" and longest_gap([t for t, _ in ask_lines]) < 1.0, ask_lines
    assert json.loads([line for _, line in chat_lines if line.startswith("data: ")][-1][6:])["type"] == "done"
    messages = requests.get(f"{server.url}/chat/history/{chat_id}", timeout=5).json()["history"]["messages"]
    assert [(m["role"], m["content"], m["status"]) for m in messages[1:]] == [
        ("user", "Count", "complete"), ("assistant", "".join(pieces), "complete")]
    assert f"the answer of chat {chat_id} not stored yet" in (tmp_path / "logs" / "app.log").read_text()
    fake_openai.enqueue(Reply(text="Free again."))
    after = requests.post(f"{server.url}/chat", json={"message": "Next", "chat_id": chat_id}, timeout=10)
    assert after.status_code == 200, after.text


# -- defect 2: first-byte timeout, request deadline, a client that leaves ------------------------------

FAKES = ["fake_openai", "fake_anthropic", "fake_gemini"]
STREAMED_ASK = {"question": "hi", "client_id": "c", "user_id": "u", "stream": True}


def one_provider_app(make_app, request, fake_name: str, **settings: Any):
    """An app whose only provider is the fake `fake_name` (its default model, then one fallback model)."""
    fake = request.getfixturevalue(fake_name)
    vendor = fake_name.removeprefix("fake_")
    app = make_app(**provider_config(**{vendor: fake}), RETRY_ATTEMPTS=0, READ_TIMEOUT_S=5, **settings)
    return app.test_client(), fake


def streamed_text(response) -> str:
    """The text of an OpenAI chunk stream (what `/v1/ask` streams)."""
    chunks = [json.loads(line[6:]) for line in response.data.decode().splitlines() if line.startswith("data: {")]
    return "".join(choice["delta"].get("content") or "" for chunk in chunks for choice in chunk["choices"])


@pytest.mark.parametrize("fake_name", FAKES)
def test_a_stream_that_does_not_start_moves_on_after_the_first_byte_timeout(make_app, request, fake_name):
    client, fake = one_provider_app(make_app, request, fake_name, FIRST_BYTE_TIMEOUT_S=0.5)
    fake.enqueue(Reply(text="too late", first_byte_delay=4), Reply(chunks=["from", " the fallback"]))
    started = time.monotonic()
    response = client.post("/v1/ask", json=STREAMED_ASK)
    assert streamed_text(response) == "from the fallback"
    assert time.monotonic() - started < 2.5 and len(fake.requests) == 2


@pytest.mark.parametrize("fake_name", FAKES)
def test_a_started_stream_may_pause_longer_than_the_first_byte_timeout(make_app, request, fake_name):
    client, fake = one_provider_app(make_app, request, fake_name, FIRST_BYTE_TIMEOUT_S=0.3)
    fake.enqueue(Reply(chunks=["slow", " but", " fine"], chunk_delay=0.8))
    assert streamed_text(client.post("/v1/ask", json=STREAMED_ASK)) == "slow but fine"
    assert len(fake.requests) == 1


@pytest.mark.parametrize("fake_name", FAKES)
def test_a_request_gives_up_at_its_deadline(make_app, request, fake_name):
    client, fake = one_provider_app(make_app, request, fake_name, RETRY_BUDGET_S=1.0)
    fake.enqueue(Reply(text="too late", first_byte_delay=4), Reply(text="never asked"))
    started = time.monotonic()
    response = client.post("/v1/ask", json={**STREAMED_ASK, "stream": False})
    assert response.status_code == 504, response.json
    assert time.monotonic() - started < 2.5 and len(fake.requests) == 1


def test_attempts_stop_when_a_non_streaming_client_leaves(fake_openai, live_server):
    server = live_server(RETRY_ATTEMPTS=5, RETRY_BACKOFF_S=0.3, **provider_config(openai=fake_openai))
    fake_openai.default_reply = Reply(status=500, first_byte_delay=0.5)
    host, port = server.url.removeprefix("http://").split(":")
    body = json.dumps({**STREAMED_ASK, "stream": False}).encode()
    with socket.create_connection((host, int(port)), timeout=5) as connection:
        connection.sendall(b"POST /v1/ask HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        time.sleep(0.2)
    time.sleep(4)  # six attempts with their backoff would take about 7 s; after the first, nobody is waiting
    assert len(fake_openai.requests) == 1
