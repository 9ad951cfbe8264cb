"""`kill -9` of the Gunicorn master or of a worker in the middle of a streamed `/chat` answer, through
real `gunicorn -k gevent` processes (`live_server`): what the client saw is stored, and the chat is
free again (a new message is answered, not refused 409) within 10 s.

- The master killed: its orphaned worker stops accepting but lets the open stream finish (and store
  it) before it exits; a restarted server (here a second one on the same database, as Supervisor
  would start) answers the chat's next message.
- A worker killed: the answer's text was being stored in steps while it streamed, so at most the last
  step (`CHAT_SAVE_EVERY_S`) is missing, stored as `error` with the text; the chat's holder is a dead
  process on this machine, so the next message is taken at once instead of after the lease.
"""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import provider_config
from tests.fakes.server import Reply
from tests.serving_stack import alive, children, wait_for
from tests.test_chat import ENGINES, new_id, open_stream, read_deltas

PIECES = [f"piece{n:02d} " for n in range(40)]  # 8 characters each
FREE_WITHIN_S = 10


def database_url(engine: str, tmp_path: Path, request) -> str:
    return f"sqlite:///{tmp_path / 'kill.db'}" if engine == "sqlite" else request.getfixturevalue("postgres_url")


def read_rest(response) -> tuple[str, bool]:
    """The text of every delta until the stream ends or breaks, and whether it ended with `done`."""
    text, done = "", False
    try:
        while line := response.readline():
            if line.startswith(b"data: "):
                event = json.loads(line[6:])
                text += event.get("content", "") if event["type"] == "delta" else ""
                done = done or event["type"] == "done"
    except OSError:  # the connection was cut
        pass
    return text, done


def stored_answer(url: str, chat_id: str) -> dict:
    return requests.get(f"{url}/chat/history/{chat_id}", timeout=5).json()["history"]["messages"][-1]


def free_again(url: str, chat_id: str, fake) -> tuple[requests.Response, int]:
    """The chat's next message answered (200) within FREE_WITHIN_S, and how many times it was refused
    (409) before."""
    refused = []

    def answered():
        fake.enqueue(Reply(text="Back."))
        reply = requests.post(f"{url}/chat", json={"message": "Still there?", "chat_id": chat_id}, timeout=10)
        assert reply.status_code in (200, 409), reply.text
        refused.append(reply.status_code == 409)
        return reply if reply.status_code == 200 else None

    return wait_for(answered, FREE_WITHIN_S, interval=0.25, what="the chat to be free"), sum(refused)


@pytest.mark.parametrize("engine", ENGINES)
def test_kill_9_of_the_master_lets_open_streams_finish_and_store(fake_openai, live_server, tmp_path, engine,
                                                                   request):
    url = database_url(engine, tmp_path, request)
    server = live_server(DATABASE_URL=url, **provider_config(openai=fake_openai))
    (worker,) = children(server.process.pid)
    fake_openai.enqueue(Reply(chunks=PIECES[:16], chunk_delay=0.2))  # about 3 s
    chat_id = new_id()
    connection, response = open_stream(server.url, {"message": "Count", "chat_id": chat_id, "stream": True})
    seen = read_deltas(response, 3)

    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=5)
    rest, done = read_rest(response)
    connection.close()

    assert done and seen + rest == "".join(PIECES[:16])  # the orphaned worker finished the stream
    wait_for(lambda: not alive(worker), FREE_WITHIN_S, what="the orphaned worker to exit once its stream ended")
    restarted = live_server(DATABASE_URL=url, **provider_config(openai=fake_openai))  # as Supervisor would
    answer = stored_answer(restarted.url, chat_id)
    assert (answer["content"], answer["status"]) == ("".join(PIECES[:16]), "complete")
    answered, refused = free_again(restarted.url, chat_id, fake_openai)
    assert answered.json()["response"] == "Back." and refused == 0


@pytest.mark.parametrize("engine", ENGINES)
def test_kill_9_of_a_worker_keeps_the_text_streamed_but_its_last_step(fake_openai, live_server, tmp_path, engine,
                                                                     request):
    url = database_url(engine, tmp_path, request)
    server = live_server(DATABASE_URL=url, CHAT_SAVE_EVERY_S=0.5, **provider_config(openai=fake_openai))
    (worker,) = children(server.process.pid)
    fake_openai.enqueue(Reply(chunks=PIECES, chunk_delay=0.1))  # 4 s; the worker dies after about 1.5 s
    chat_id = new_id()
    connection, response = open_stream(server.url, {"message": "Count", "chat_id": chat_id, "stream": True})
    seen = read_deltas(response, 10)
    time.sleep(0.5)

    os.kill(worker, signal.SIGKILL)
    rest, done = read_rest(response)
    connection.close()
    seen += rest
    assert not done and fake_openai.wait_for_disconnect(5)

    answer = wait_for(lambda: stored_answer(server.url, chat_id), 10, what="the master's next worker to answer")
    assert answer["status"] == "error" and answer["error"].startswith("No answer: the server answering")
    assert seen.startswith(answer["content"])  # what was stored, the client saw
    assert len(answer["content"]) >= len(seen) - 8 * 7  # all but the last step (0.5 s: 5 pieces, 1 late)
    answered, refused = free_again(server.url, chat_id, fake_openai)
    assert answered.json()["response"] == "Back."
    assert refused == 0  # not after a lease's length: the holder was seen dead at once
