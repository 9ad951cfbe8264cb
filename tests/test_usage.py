"""Usage accounting: counted off the hot path, added up in the database; and each instance's own counts at /metrics."""
from __future__ import annotations

import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date

import peewee
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from app.core.db import database
from app.llm.models import UsageCounter
from app.llm.usage import UsageEvent, UsageRecorder, totals, write_counters
from tests.conftest import ROOT, metric, provider_config
from tests.fakes.server import Reply


def test_calls_tokens_and_failed_attempts_reach_metrics(make_app, fake_openai):
    app = make_app(**provider_config(openai=fake_openai), RETRY_ATTEMPTS=0)
    client = app.test_client()
    before = client.get("/metrics").get_data(as_text=True)  # counters are per process: compare with before
    fake_openai.set_model_reply("gpt-4o-mini", Reply(status=500))
    fake_openai.set_model_reply("gpt-4o", Reply(chunks=["a", "b"], prompt_tokens=7))
    for stream in (False, True):
        with client.post("/chat", json={"messages": [{"role": "user", "content": "hi"}], "stream": stream}) as chat:
            chat.get_data()  # counted when the response is closed (a stream's end)
    answer = client.get("/metrics")
    text = answer.get_data(as_text=True)

    def added(name: str, **labels: str) -> float:
        return metric(text, name, **labels) - metric(before, name, **labels)

    assert answer.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert added("aiserver_llm_calls_total", provider="openai", model="gpt-4o", outcome="ok") == 2
    assert added("aiserver_llm_calls_total", provider="openai", model="gpt-4o-mini", outcome="attempt_failed") == 2
    assert added("aiserver_llm_tokens_total", provider="openai", model="gpt-4o", kind="prompt") == 14
    assert added("aiserver_llm_tokens_total", provider="openai", model="gpt-4o", kind="completion") == 4
    assert added("aiserver_llm_cost_usd_total", provider="openai", model="gpt-4o") > 0
    assert added("aiserver_llm_time_to_first_token_seconds_count", provider="openai", model="gpt-4o") == 1
    assert added("aiserver_http_requests_total", route="/chat", method="POST", status="200") == 2
    assert added("aiserver_http_request_duration_seconds_count", route="/chat") == 2
    assert metric(text, "aiserver_streams_in_flight") == 0
    assert "# TYPE aiserver_llm_calls_total counter" in text and 'aiserver_info{version="' in text
    assert metric(text, "aiserver_queue_depth") == 0


@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_processes_add_to_the_same_counters(make_app, engine, request):
    settings = {} if engine == "sqlite" else {"DATABASE_URL": request.getfixturevalue("postgres_url")}
    make_app(**settings)
    before = {(r["provider"], r["outcome"]): r["calls"] for r in totals()}
    recorders = [UsageRecorder() for _ in range(3)]

    def count(recorder: UsageRecorder) -> None:
        for _ in range(50):
            recorder.record(UsageEvent("acct", "m", "ok", 1, 2, 3))
        recorder.flush()

    threads = [threading.Thread(target=count, args=(r,)) for r in recorders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    row = next(r for r in totals() if r["provider"] == "acct")
    assert row["calls"] - before.get(("acct", "ok"), 0) == 150
    assert row["completion_tokens"] >= 300


@pytest.mark.postgres
def test_two_flushes_of_the_same_counters_queue_up_instead_of_deadlocking(make_app, postgres_url):
    """Each flush updates its rows in one order (sorted), whatever order its batch came in, so two
    processes adding to the same rows at once wait for each other instead of deadlocking (PostgreSQL
    would abort one of them, and the scale-out bench saw it under load)."""
    import psycopg2

    make_app(DATABASE_URL=postgres_url)
    day = date(2026, 1, 1)
    a_row, b_row = ((day, UsageEvent("lock-order", model, "ok", 1, 1, 1)) for model in ("a-model", "b-model"))
    write_counters([a_row, b_row])  # both rows exist now: the next flushes update (and lock) them
    other, watcher = psycopg2.connect(postgres_url), psycopg2.connect(postgres_url)
    watcher.autocommit = True
    failures: list[BaseException] = []

    def flush_b_then_a() -> None:
        try:
            write_counters([b_row, a_row])  # this batch names b-model first
        except BaseException as error:  # reported by the assertion below
            failures.append(error)

    try:
        with other.cursor() as cursor:  # another process's flush, half done: it holds a-model's row
            cursor.execute("UPDATE usage_counter SET calls = calls + 1 WHERE provider = 'lock-order' "
                           "AND model = 'a-model'")
            writer = threading.Thread(target=flush_b_then_a)
            writer.start()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and writer.is_alive():  # until the writer waits for a row lock
                with watcher.cursor() as watch:
                    watch.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                  "AND wait_event_type = 'Lock'")
                    if watch.fetchone()[0]:
                        break
                time.sleep(0.05)
            cursor.execute("UPDATE usage_counter SET calls = calls + 1 WHERE provider = 'lock-order' "
                           "AND model = 'b-model'")  # the other flush goes on to its second row
        other.commit()
        writer.join(timeout=30)
    finally:
        other.close()
        watcher.close()

    assert not writer.is_alive() and failures == []
    assert {r["model"]: r["calls"] for r in totals() if r["provider"] == "lock-order"} == {"a-model": 3, "b-model": 3}


def test_a_failed_flush_keeps_the_counts_for_the_next_one(make_app):
    make_app()
    recorder = UsageRecorder()
    with database.connection_context():
        database.drop_tables([UsageCounter])  # the database "loses" the table: writes fail
    recorder.record(UsageEvent("p", "m", "ok", 1, 1, 1))
    with pytest.raises(peewee.DatabaseError):
        recorder.flush()
    with database.connection_context():
        database.create_tables([UsageCounter])
    assert recorder.flush() == 1
    assert [r["calls"] for r in totals()] == [1]


def test_the_background_flusher_writes_within_its_interval(make_app, fake_openai):
    app = make_app(**provider_config(openai=fake_openai), USAGE_FLUSH_S=0.2)
    app.test_client().post("/chat", json={"messages": [{"role": "user", "content": "hi"}]})
    try:
        deadline = time.monotonic() + 5
        while not totals() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [(r["provider"], r["calls"]) for r in totals()] == [("openai", 1)]
    finally:
        app.extensions["usage"].stop()


def test_an_instance_adds_up_its_gunicorn_workers(live_server, fake_openai):
    server = live_server(workers=2, **provider_config(openai=fake_openai))
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _: requests.post(f"{server.url}/chat", json={
            "messages": [{"role": "user", "content": "hi"}], "stream": False}, timeout=20).status_code, range(20)))
    assert statuses == [200] * 20

    for _ in range(6):  # whichever worker answers the scrape, it reports both workers' requests
        answer = requests.get(f"{server.url}/metrics", timeout=5)
        assert answer.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert metric(answer.text, "aiserver_http_requests_total", route="/chat", status="200") == 20
        assert metric(answer.text, "aiserver_llm_calls_total", provider="openai", outcome="ok") == 20


def test_the_grafana_dashboard_queries_only_metrics_the_server_exposes(client):
    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    queried = {re.sub(r"_(total|bucket|count|sum)$", "", name) for panel in dashboard["panels"]
               for target in panel["targets"] for name in re.findall(r"aiserver_\w+", target["expr"])}
    exposed = {family.name for family in text_string_to_metric_families(client.get("/metrics").get_data(as_text=True))}
    assert len(queried) == 10 and queried <= exposed, queried - exposed
