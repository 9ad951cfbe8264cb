"""PostgreSQL under load and under loss: the pool makes surplus greenlets wait (bounded) for a free
connection, and connections a server-side kill broke cost the requests in flight at most a clean 503.

Each test has a database of its own: the loss is simulated with `pg_terminate_backend` on that
database's backends only, so other sessions on the shared server are untouched.
"""
from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg2
import pytest
import requests

from app.core.db import database
from tests.conftest import POSTGRES_URL, fresh_postgres_database, provider_config


@pytest.fixture
def own_postgres():
    with fresh_postgres_database() as url:
        yield url


def terminate_backends(url: str) -> int:
    """Kill every server process connected to `url`'s database (what a PostgreSQL restart does to them)."""
    admin = psycopg2.connect(POSTGRES_URL)
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                           "WHERE datname = %s AND pid <> pg_backend_pid()", (url.rsplit("/", 1)[1],))
            return cursor.fetchone()[0]
    finally:
        admin.close()


def chat(url: str, chat_id: str, text: str) -> requests.Response:
    return requests.post(f"{url}/chat", json={"message": text, "chat_id": chat_id, "stream": False}, timeout=30)


def stored_turns(url: str, chat_id: str) -> list[str]:
    """The roles of the chat's stored user and assistant messages, in order."""
    answer = requests.get(f"{url}/chat/history/{chat_id}", timeout=10)
    assert answer.status_code == 200, answer.text
    return [m["role"] for m in answer.json()["history"]["messages"] if m["role"] in ("user", "assistant")]


def test_more_concurrent_writers_than_connections_wait_for_one(live_server, own_postgres):
    from tests.fakes.openai_api import FakeOpenAI

    with FakeOpenAI(echo=True) as fake:
        server = live_server(DATABASE_URL=own_postgres, DATABASE_POOL_SIZE=2, **provider_config(openai=fake))
        chat_ids = [f"pool-{i}-{uuid.uuid4().hex[:6]}" for i in range(60)]
        with ThreadPoolExecutor(max_workers=60) as pool:
            statuses = list(pool.map(lambda chat_id: chat(server.url, chat_id, "hello").status_code, chat_ids))

        assert statuses == [200] * len(chat_ids)
        assert all(stored_turns(server.url, chat_id) == ["user", "assistant"] for chat_id in chat_ids[:5])


def test_no_free_connection_within_the_timeout_is_a_clean_503(make_app, own_postgres):
    app = make_app(DATABASE_URL=own_postgres, DATABASE_POOL_SIZE=1, DATABASE_POOL_TIMEOUT_S=0.3)
    held, release = threading.Event(), threading.Event()

    def hold_the_only_connection():
        with database.connection_context():
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold_the_only_connection)
    holder.start()
    try:
        assert held.wait(5)
        started = time.monotonic()
        answer = app.test_client().get("/chat/history")
        waited = time.monotonic() - started
    finally:
        release.set()
        holder.join(5)

    assert answer.status_code == 503
    assert answer.json["error"]["code"] == "database_unavailable"
    assert 0.3 <= waited < 3
    assert app.test_client().get("/chat/history").status_code == 200  # the connection is back: served again


def test_lost_connections_cost_in_flight_requests_at_most_a_503(live_server, own_postgres):
    from tests.fakes.openai_api import FakeOpenAI

    with FakeOpenAI(echo=True) as fake:
        server = live_server(workers=2, DATABASE_URL=own_postgres, **provider_config(openai=fake))
        outcomes: list[tuple[str, int]] = []
        stop = threading.Event()

        def steady_traffic(lane: int):
            deadline = time.monotonic() + 30
            while not stop.is_set() and time.monotonic() < deadline:
                chat_id = f"loss-{lane}-{uuid.uuid4().hex[:8]}"
                try:
                    outcomes.append((chat_id, chat(server.url, chat_id, "still there?").status_code))
                except requests.RequestException:
                    outcomes.append((chat_id, 0))

        lanes = [threading.Thread(target=steady_traffic, args=(lane,)) for lane in range(8)]
        for lane in lanes:
            lane.start()
        killed = 0
        for _ in range(3):  # three "restarts" during steady traffic
            time.sleep(0.7)
            killed += terminate_backends(own_postgres)
        time.sleep(1.0)
        stop.set()
        for lane in lanes:
            lane.join(40)

        statuses = {status for _, status in outcomes}
        assert killed > 0
        assert statuses <= {200, 503}, outcomes
        assert server.process.poll() is None
        after = [chat(server.url, f"after-{i}", "back?") for i in range(10)]
        assert [answer.status_code for answer in after] == [200] * 10  # recovered by itself
        for chat_id, status in outcomes:
            if status == 200:  # everything a client was told is stored, is stored
                assert stored_turns(server.url, chat_id) == ["user", "assistant"], chat_id
        assert "Traceback" not in server.log_path.read_text()


@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_a_returned_connection_goes_to_the_longest_waiting_request(engine, tmp_path, request):
    """peewee's own pool let a newcomer take a connection another request had been waiting for (and
    re-queued waiters every second), so under overload a waiter could pass its timeout (a 503) while
    later requests were served. Pool of 1: a waiter queues; the holder returns the connection and at once
    asks again, as a new request would: the waiter must get it first."""
    from app.core.db import open_database

    url = f"sqlite:///{tmp_path}/pool.db" if engine == "sqlite" else request.getfixturevalue("own_postgres")
    pool = open_database(url, pool_size=1, pool_timeout=3)
    order: list[str] = []
    waiting = threading.Event()

    def waiter() -> None:
        waiting.set()
        pool.connect()
        order.append("waiter")
        time.sleep(0.2)
        pool.close()

    try:
        pool.connect()
        thread = threading.Thread(target=waiter)
        thread.start()
        assert waiting.wait(5)
        time.sleep(0.3)  # the waiter is queued by now
        pool.close()
        pool.connect()  # the newcomer: straight after the return, before the waiter could run
        order.append("newcomer")
        pool.close()
        thread.join(10)
        assert order == ["waiter", "newcomer"]
    finally:
        pool.close_all()
