"""Usage accounting: a row per call written off the hot path, and each instance's own counts at /metrics."""
from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

import peewee
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from app.core.db import database
from app.keys.models import UsageRecord
from app.keys.prices import PriceTable
from app.keys.usage import usage_row
from app.llm.usage import UsageEvent
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


def usage_rows() -> list[tuple[str, str, int]]:
    with database.connection_context():
        query = UsageRecord.select(UsageRecord.provider, UsageRecord.status, UsageRecord.completion_tokens)
        return list(query.tuples())


def test_a_failed_flush_keeps_the_rows_for_the_next_one(make_app):
    app = make_app()
    rows = app.extensions["access"].rows
    with database.connection_context():
        database.drop_tables([UsageRecord])  # the database "loses" the table: writes fail
    rows.add(usage_row(UsageEvent("p", "m", "ok", 1, 2, 3), PriceTable({})))
    with pytest.raises(peewee.DatabaseError):
        rows.flush()
    with database.connection_context():
        database.create_tables([UsageRecord])
    assert rows.flush() == 1
    assert usage_rows() == [("p", "ok", 2)]


def test_the_background_flusher_writes_usage_rows_within_its_interval(make_app, fake_openai):
    app = make_app(**provider_config(openai=fake_openai), USAGE_FLUSH_S=0.2)
    app.test_client().post("/chat", json={"messages": [{"role": "user", "content": "hi"}]})
    try:
        deadline = time.monotonic() + 5
        while not usage_rows() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [(provider, status) for provider, status, _ in usage_rows()] == [("openai", "ok")]
    finally:
        app.extensions["access"].rows.stop()


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
