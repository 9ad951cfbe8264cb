"""Usage accounting: counted off the hot path, added up in the database, shown at /metrics."""
from __future__ import annotations

import threading
import time

import peewee
import pytest

from app.core.db import database
from app.llm.models import UsageCounter
from app.llm.usage import UsageEvent, UsageRecorder, prometheus_text, totals
from tests.conftest import provider_config
from tests.fakes.server import Reply


def metric(text: str, name: str, **labels: str) -> int:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return sum(int(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(f"{name}{{{wanted}"))


def test_calls_tokens_and_failed_attempts_reach_metrics(make_app, fake_openai):
    app = make_app(**provider_config(openai=fake_openai), RETRY_ATTEMPTS=0)
    client = app.test_client()
    fake_openai.set_model_reply("gpt-4o-mini", Reply(status=500))
    fake_openai.set_model_reply("gpt-4o", Reply(chunks=["a", "b"], prompt_tokens=7))
    client.post("/chat", json={"messages": [{"role": "user", "content": "hi"}]})
    client.post("/chat", json={"messages": [{"role": "user", "content": "hi"}], "stream": True}).get_data()
    app.extensions["usage"].flush()
    text = client.get("/metrics").get_data(as_text=True)
    assert metric(text, "aiserver_llm_calls_total", provider="openai", model="gpt-4o", outcome="ok") == 2
    assert metric(text, "aiserver_llm_calls_total", provider="openai", model="gpt-4o-mini",
                  outcome="attempt_failed") == 2
    assert metric(text, "aiserver_llm_prompt_tokens_total", provider="openai", model="gpt-4o") == 14
    assert metric(text, "aiserver_llm_completion_tokens_total", provider="openai", model="gpt-4o") == 4
    assert "# TYPE aiserver_llm_calls_total counter" in text and 'aiserver_info{version="' in text


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


def test_label_values_are_escaped():
    text = prometheus_text([{"provider": 'x"y', "model": "a\\b", "outcome": "ok", "calls": 1, "prompt_tokens": 0,
                             "completion_tokens": 0, "latency_ms": 0}], "1", 0)
    assert 'provider="x\\"y",model="a\\\\b"' in text


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
