"""Faults through a real Gunicorn + gevent server (issue 14, defects 1 and 2): a SQLite database locked
by another process, hung providers, first-byte timeouts, request deadlines and clients that leave."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

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
