"""Two instances on one PostgreSQL and one Redis behind a real Caddy (deploy/Caddyfile.scaled): a
conversation started on one continues on the other, a key's request limit counts both, each
instance's /metrics counts only its own requests, and when one is killed (-9) Caddy sends new
requests to the other (idempotent ones at once, retried; a POST that Caddy had just written to
the dead instance's pooled connection can be lost with a 502, as the Caddyfile says)."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import uuid

import pytest
import requests

from tests.conftest import (
    REDIS_URL,
    ROOT,
    VENV_BIN,
    as_environ,
    base_config,
    fresh_postgres_database,
    metric,
    provider_config,
)
from tests.fakes.openai_api import FakeOpenAI
from tests.serving_stack import CADDY, CaddyProxy, wait_for

pytestmark = pytest.mark.skipif(CADDY is None, reason="caddy is not installed (scripts/install-test-deps)")


@pytest.fixture
def two_instances(live_server, tmp_path):
    with FakeOpenAI(echo=True) as fake, fresh_postgres_database() as postgres:
        shared = dict(DATABASE_URL=postgres, REDIS_URL=REDIS_URL, QUEUE_NAME=f"scale-{uuid.uuid4().hex[:8]}",
                      **provider_config(openai=fake))
        first, second = live_server(**shared), live_server(**shared)
        upstreams = " ".join(server.url.removeprefix("http://") for server in (first, second))
        caddy = CaddyProxy(tmp_path, upstreams, caddyfile=ROOT / "deploy" / "Caddyfile.scaled")
        try:
            yield first, second, caddy, fake, shared
        finally:
            caddy.stop()
            for server in (first, second):
                server.stop()


def test_an_instance_slow_to_answer_health_keeps_getting_requests(live_server, tmp_path):
    """A slow /health is a busy instance, not a dead one: under load (a gevent worker's queue) or with
    a vendor that hangs (its check takes up to 10 s) /health answers late, and Caddy must not take
    the instance out for that (with one instance, every request would be a 503 "no upstreams")."""
    with FakeOpenAI(echo=True) as fake, socket.socket() as hanging_vendor:
        hanging_vendor.bind(("127.0.0.1", 0))
        hanging_vendor.listen(64)  # connections complete in the backlog and are never answered
        vendor_url = "http://127.0.0.1:%d/v1" % hanging_vendor.getsockname()[1]
        server = live_server(**provider_config(openai=fake), OPENAI_COMPATIBLE=["stuck"], STUCK_API_BASE=vendor_url,
                             STUCK_API_KEY="unused", STUCK_MODEL_DEFAULT="stuck-model", HEALTH_CACHE_S=0)
        caddy = CaddyProxy(tmp_path, server.url.removeprefix("http://"), caddyfile=ROOT / "deploy" / "Caddyfile.scaled")
        try:
            started = time.monotonic()
            assert requests.get(f"{server.url}/health", timeout=30).json()["status"] == "ok"
            assert time.monotonic() - started > 5  # /health waited for the stuck vendor's check
            time.sleep(6)  # Caddy's active checks (every 2 s) have asked /health a few times by now
            statuses = [requests.post(f"{caddy.url}/chat", json={"message": f"hi {n}", "chat_id": "slow-health"},
                                      timeout=60).status_code for n in range(3)]
        finally:
            caddy.stop()
    assert statuses == [200, 200, 200]


def create_key(tmp_path, settings: dict, *options: str) -> str:
    environ = as_environ(base_config(tmp_path, **settings))
    out = subprocess.run([str(VENV_BIN / "flask"), "--app", "app.wsgi", "keys", "create", "scaled", *options],
                         cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60, check=True).stdout
    return re.search(r"^key: (\S+)$", out, re.MULTILINE).group(1)


def test_a_conversation_started_on_one_instance_continues_on_the_other(two_instances):
    first, second, _, fake, _ = two_instances
    chat_id = f"scale-{uuid.uuid4().hex[:8]}"
    assert requests.post(f"{first.url}/chat", json={"message": "my name is Ada", "chat_id": chat_id},
                         timeout=20).status_code == 200
    answer = requests.post(f"{second.url}/chat", json={"message": "what is my name?", "chat_id": chat_id}, timeout=20)

    assert answer.status_code == 200, answer.text
    sent = [m["content"] for m in fake.requests[-1].json["messages"]]
    assert "my name is Ada" in sent and sent[-1] == "what is my name?"  # the other instance's turn went upstream
    history = requests.get(f"{first.url}/chat/history/{chat_id}", timeout=10).json()["history"]["messages"]
    assert [m["role"] for m in history if m["role"] != "system"] == ["user", "assistant", "user", "assistant"]


def test_a_keys_request_limit_counts_requests_on_both_and_metrics_stay_per_instance(two_instances, tmp_path):
    first, second, _, _, shared = two_instances
    headers = {"Authorization": f"Bearer {create_key(tmp_path, shared, '--rpm', '4')}"}
    scraper = {"Authorization": f"Bearer {create_key(tmp_path, shared, '--admin')}"}
    statuses = [requests.get(f"{server.url}/v1/models", headers=headers, timeout=10).status_code
                for server in (first, first, second, second, first)]

    assert statuses == [200, 200, 200, 200, 429]
    first_metrics = requests.get(f"{first.url}/metrics", headers=scraper, timeout=5).text
    second_metrics = requests.get(f"{second.url}/metrics", headers=scraper, timeout=5).text
    assert metric(first_metrics, "aiserver_http_requests_total", route="/v1/models", status="200") == 2
    assert metric(second_metrics, "aiserver_http_requests_total", route="/v1/models", status="200") == 2
    assert metric(first_metrics, "aiserver_rate_limit_rejections_total") == 1
    assert metric(second_metrics, "aiserver_rate_limit_rejections_total") == 0


def test_caddy_sends_new_requests_to_the_survivor_of_a_kill_9(two_instances):
    first, second, caddy, _, _ = two_instances
    chat_id = f"scale-{uuid.uuid4().hex[:8]}"
    assert requests.post(f"{caddy.url}/chat", json={"message": "one", "chat_id": chat_id}, timeout=20).ok

    os.killpg(first.process.pid, signal.SIGKILL)  # the master and its workers, at once
    first.process.wait(timeout=10)

    for _ in range(6):  # idempotent: one sent on a connection to the dead instance is retried on the other
        assert requests.get(f"{caddy.url}/v1/models", timeout=30).status_code == 200
    for n in range(6):  # the dead instance is marked down by now: every new request goes to the survivor
        answer = requests.post(f"{caddy.url}/chat", json={"message": f"after {n}", "chat_id": chat_id}, timeout=30)
        assert answer.status_code == 200, answer.text
    assert wait_for(lambda: requests.get(f"{caddy.url}/health", timeout=5).ok, 10)
    history = requests.get(f"{second.url}/chat/history/{chat_id}", timeout=10).json()["history"]["messages"]
    assert [m["content"] for m in history if m["role"] == "user"] == ["one", *(f"after {n}" for n in range(6))]
