"""Two instances on one PostgreSQL and one Redis behind a real Caddy (deploy/Caddyfile.scaled): a
conversation started on one continues on the other, so does a Responses chain (`previous_response_id`,
through the openai SDK) and a response stays its key's on both; a key's request limit counts both,
each instance's /metrics counts only its own requests; a deployment task accepted by one instance (no
worker beside it) is run by the other's queue worker; and when one is killed (-9), mid-stream or idle,
every stored message survives (with the streamed text but its last step), the chat is usable again
on the other at once (its holder is a dead process of this machine; on another machine, once its lease runs out), and
Caddy sends new requests to the other (idempotent ones at once, retried; every request once Caddy's
active check has failed: until then a POST that reached the dying instance is a 502, as the Caddyfile says)."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import uuid
from itertools import islice

import openai
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
from tests.fakes.deploy_stack import answer_brief
from tests.fakes.evaluator import FakeEvaluator
from tests.fakes.github_repos_api import FakeGitHubRepos
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.server import Reply, text_of
from tests.serving_stack import CADDY, CaddyProxy, refuses_connections, wait_for
from tests.test_deploy import SECRET, Worker

pytestmark = pytest.mark.skipif(CADDY is None, reason="caddy is not installed (scripts/install-test-deps)")


@pytest.fixture
def two_instances(live_server, tmp_path, request):
    """(first, second, caddy, the OpenAI fake, the shared settings); a test's indirect parameter adds settings."""
    with FakeOpenAI(echo=True) as fake, fresh_postgres_database() as postgres:
        shared = dict(DATABASE_URL=postgres, REDIS_URL=REDIS_URL, QUEUE_NAME=f"scale-{uuid.uuid4().hex[:8]}",
                      **provider_config(openai=fake), **getattr(request, "param", {}))
        first, second = live_server(**shared), live_server(**shared)
        upstreams = " ".join(address(server) for server in (first, second))
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
        caddy = CaddyProxy(tmp_path, address(server), caddyfile=ROOT / "deploy" / "Caddyfile.scaled")
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


def sent_upstream(fake: FakeOpenAI) -> list[tuple[str, str]]:
    """(role, text) of each message of the fake's last generation request (not its health checks' model
    listings), the system prompt left out: a chat completion's messages, or the input messages of a
    Responses request sent as it came (OpenAI's own Responses API)."""
    last = [r for r in fake.requests if r.path in ("/v1/chat/completions", "/v1/responses")][-1]
    if last.path == "/v1/responses":
        items = [{"role": "user", "content": last.json["input"]}] if isinstance(last.json["input"], str) \
            else [item for item in last.json["input"] if item.get("type", "message") == "message"]
        return [(m["role"], text_of(m["content"])) for m in items if m["role"] not in ("system", "developer")]
    return [(m["role"], text_of(m["content"])) for m in last.json["messages"] if m["role"] != "system"]


def address(server) -> str:
    return server.url.removeprefix("http://")


def kill_9(server) -> None:
    """kill -9 of an instance, its master and workers at once; returns when nothing accepts its connections."""
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=10)
    wait_for(lambda: refuses_connections(address(server)), 10, what="the killed instance's workers to exit")


def sdk(server, key: str = "unused") -> openai.OpenAI:
    """The official openai SDK against an instance (or Caddy)."""
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=30)


def test_a_conversation_started_on_one_instance_continues_on_the_other(two_instances):
    first, second, _, fake, _ = two_instances
    chat_id = f"scale-{uuid.uuid4().hex[:8]}"
    assert requests.post(f"{first.url}/chat", json={"message": "my name is Ada", "chat_id": chat_id},
                         timeout=20).status_code == 200
    answer = requests.post(f"{second.url}/chat", json={"message": "what is my name?", "chat_id": chat_id}, timeout=20)

    assert answer.status_code == 200, answer.text
    sent = [text for _, text in sent_upstream(fake)]
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

    kill_9(first)

    for _ in range(6):  # idempotent: one sent on a connection to the dead instance is retried on the other
        assert requests.get(f"{caddy.url}/v1/models", timeout=30).status_code == 200
    # until an active check has failed, a POST may still be sent to the dead instance and, unless its
    # connection was refused, answered 502 (not retried: it may have been received); after, none is
    caddy.wait_until_marked_down(address(first))
    for n in range(6):
        answer = requests.post(f"{caddy.url}/chat", json={"message": f"after {n}", "chat_id": chat_id}, timeout=30)
        assert answer.status_code == 200, answer.text
    assert wait_for(lambda: requests.get(f"{caddy.url}/health", timeout=5).ok, 10)
    history = requests.get(f"{second.url}/chat/history/{chat_id}", timeout=10).json()["history"]["messages"]
    assert [m["content"] for m in history if m["role"] == "user"] == ["one", *(f"after {n}" for n in range(6))]


def test_a_responses_chain_started_on_one_instance_continues_on_the_other(two_instances):
    first, second, caddy, fake, _ = two_instances
    fake.enqueue(Reply(text="Paris."), Reply(text="About two million."), Reply(text="Welcome."))
    with sdk(first) as on_first, sdk(second) as on_second, sdk(caddy) as through_caddy:
        one = on_first.responses.create(model="gpt-4o-mini", input="Capital of France?")
        two = on_second.responses.create(model="gpt-4o-mini", input="Its population?", previous_response_id=one.id)

        assert two.previous_response_id == one.id and two.output_text == "About two million."
        assert sent_upstream(fake) == [("user", "Capital of France?"), ("assistant", "Paris."),
                                       ("user", "Its population?")]
        three = through_caddy.responses.create(model="gpt-4o-mini", input="Thanks!", previous_response_id=two.id)
        assert three.output_text == "Welcome." and sent_upstream(fake) == [
            ("user", "Capital of France?"), ("assistant", "Paris."), ("user", "Its population?"),
            ("assistant", "About two million."), ("user", "Thanks!")]
        assert on_second.responses.retrieve(one.id).model_dump() == one.model_dump()
        assert on_first.responses.retrieve(two.id).model_dump() == two.model_dump()
        assert [item.content[0].text for item in on_second.responses.input_items.list(one.id).data] == [
            "Capital of France?"]
        assert [item.content[0].text for item in on_first.responses.input_items.list(three.id).data] == ["Thanks!"]


def test_a_response_belongs_to_its_key_on_every_instance(two_instances, tmp_path):
    first, second, _, fake, shared = two_instances
    mine, other = create_key(tmp_path, shared), create_key(tmp_path, shared)
    with (sdk(first, mine) as mine_on_first, sdk(second, mine) as mine_on_second,
          sdk(first, other) as other_on_first, sdk(second, other) as other_on_second):
        made = mine_on_first.responses.create(model="gpt-4o-mini", input="Mine")
        calls_before = len([r for r in fake.requests if r.path == "/v1/chat/completions"])

        for stranger in (other_on_first, other_on_second):
            with pytest.raises(openai.NotFoundError):
                stranger.responses.retrieve(made.id)
            with pytest.raises(openai.NotFoundError):
                stranger.responses.input_items.list(made.id)
            with pytest.raises(openai.NotFoundError):
                stranger.responses.create(model="gpt-4o-mini", input="x", previous_response_id=made.id)
        assert len([r for r in fake.requests if r.path == "/v1/chat/completions"]) == calls_before  # none went up
        assert mine_on_second.responses.retrieve(made.id).output_text == "You said: Mine"
        continued = mine_on_second.responses.create(model="gpt-4o-mini", input="On", previous_response_id=made.id)
        assert continued.output_text == "You said: On"
        assert sent_upstream(fake) == [("user", "Mine"), ("assistant", "You said: Mine"), ("user", "On")]


def test_a_deploy_task_accepted_by_one_instance_is_run_by_the_other_instances_worker(live_server, tmp_path):
    """Instance one has no queue worker and its own LLM fake; instance two's worker (its settings: another
    LLM fake, another log directory) is the only one that can run the round, and it does."""
    with (FakeOpenAI() as llm_one, FakeOpenAI() as llm_two, FakeGitHubRepos(build_delay=0.1) as github,
          FakeEvaluator() as evaluator, fresh_postgres_database() as postgres):
        llm_one.default_reply = llm_two.default_reply = answer_brief
        shared = dict(DATABASE_URL=postgres, REDIS_URL=REDIS_URL, QUEUE_NAME=f"scale-{uuid.uuid4().hex[:8]}",
                      GITHUB_TOKEN=github.api_key, GITHUB_API_URL=github.url, VERIFICATION_SECRET=SECRET,
                      NOTIFY_ALLOW_HOSTS=["127.0.0.1"], PAGES_WAIT_S=10, PAGES_POLL_S=0.05, NOTIFY_BACKOFF_S=0.1,
                      DEPLOY_RETRY_S=0.05, RETRY_ATTEMPTS=0)
        first = live_server(LOG_DIR=str(tmp_path / "one"), **shared, **provider_config(openai=llm_one))
        second_settings = dict(shared, LOG_DIR=str(tmp_path / "two"), **provider_config(openai=llm_two))
        second = live_server(**second_settings)
        task = f"scaled-{uuid.uuid4().hex[:8]}"
        body = {"email": "student@example.com", "secret": SECRET, "task": task, "round": 1, "nonce": f"{task}-n1",
                "brief": f"Build {task}.", "checks": ["Repo has MIT license"], "attachments": [],
                "evaluation_url": evaluator.url_for(f"/notify/{task}")}
        accepted = requests.post(f"{first.url}/task", json=body, timeout=20)
        assert accepted.status_code == 200, accepted.text
        task_id = accepted.json()["task_id"]

        def status_on(server) -> dict:
            return requests.get(f"{server.url}/tasks/{task_id}", timeout=10).json()

        assert status_on(first)["rounds"][0]["status"] == "queued"  # accepted, and nobody beside it runs it
        assert metric(requests.get(f"{first.url}/metrics", timeout=10).text, "aiserver_queue_depth") == 1
        worker = Worker(base_config(tmp_path, LOG_LEVEL="INFO", **second_settings),
                        tmp_path / "two" / "worker.log").start()

        def ended() -> dict | None:
            round_ = status_on(first)["rounds"][0]
            return round_ if round_["status"] in ("done", "failed") else None

        try:
            done = wait_for(ended, 60, what="the round to end")
        finally:
            worker.stop()

        assert done["status"] == "done" and done["runs"] == 1, done
        generated = [r for r in llm_two.requests if r.path == "/v1/chat/completions"]
        assert len(generated) == 1 and f"Task: {task}" in str(generated[0].json["messages"])
        assert [r for r in llm_one.requests if r.path == "/v1/chat/completions"] == []  # instance one's LLM: unused
        assert f"of task {task_id} is done" in (tmp_path / "two" / "worker.log").read_text()
        shown = status_on(first)
        assert shown == status_on(second) and shown["status"] == "done"
        owner, name = shown["repo_url"].rstrip("/").split("/")[-2:]
        assert {"index.html", "LICENSE", "README.md"} <= set(github.files(owner, name))
        assert done["commit_sha"] == github.history(owner, name)[0]  # the worker's commit is the repo's head
        assert [n.body["commit_sha"] for n in evaluator.accepted(f"/notify/{task}")] == [done["commit_sha"]]
        assert metric(requests.get(f"{first.url}/metrics", timeout=10).text, "aiserver_queue_depth") == 0


@pytest.mark.parametrize("two_instances", [{"CHAT_SAVE_EVERY_S": 0.5}], indirect=True)
def test_kill_9_of_the_instance_streaming_a_turn_keeps_every_stored_message(two_instances):
    first, second, caddy, fake, _ = two_instances
    chat_id = f"scale-{uuid.uuid4().hex[:8]}"
    assert requests.post(f"{first.url}/chat", json={"message": "one", "chat_id": chat_id}, timeout=20).ok
    fake.enqueue(Reply(chunks=[f"word{n} " for n in range(40)], chunk_delay=0.25))

    with requests.post(f"{first.url}/chat", json={"message": "tell me a story", "chat_id": chat_id, "stream": True},
                       stream=True, timeout=20) as streamed:
        events = (json.loads(line[6:]) for line in streamed.iter_lines() if line.startswith(b"data: "))
        deltas = (event["content"] for event in events if event["type"] == "delta")
        assert list(islice(deltas, 6)) == [f"word{n} " for n in range(6)]
        time.sleep(0.6)  # a step (CHAT_SAVE_EVERY_S) has stored them
        kill_9(first)  # mid-stream
    assert fake.wait_for_disconnect(10)  # the upstream answer was cut, not finished

    def stored() -> list[tuple[str, str, str]]:
        history = requests.get(f"{second.url}/chat/history/{chat_id}", timeout=10).json()["history"]
        assert history["message_count"] == len(history["messages"])
        return [(m["role"], m["content"], m["status"]) for m in history["messages"] if m["role"] != "system"]

    # the killed turn leaves its question and the text streamed but its last step, marked as lost
    *before, (role, text, status) = stored()
    assert before == [("user", "one", "complete"), ("assistant", "You said: one", "complete"),
                      ("user", "tell me a story", "complete")]
    assert role == "assistant" and status == "error" and text.startswith("".join(f"word{n} " for n in range(6)))
    lost = (role, text, status)
    # the chat is free at once: its holder was a process of this machine, and it is gone (no lease to wait out)
    on_second = requests.post(f"{second.url}/chat", json={"message": "right after", "chat_id": chat_id}, timeout=20)
    assert on_second.status_code == 200, on_second.text

    for _ in range(6):  # idempotent: one sent on a connection to the dead instance is retried on the other
        assert requests.get(f"{caddy.url}/v1/models", timeout=30).status_code == 200
    caddy.wait_until_marked_down(address(first))  # from now on no POST can reach the dead instance
    second_chats = metric(requests.get(f"{second.url}/metrics", timeout=10).text, "aiserver_http_requests_total",
                          route="/chat", status="200")
    answer = requests.post(f"{caddy.url}/chat", json={"message": "after the kill", "chat_id": chat_id}, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["response"] == "You said: after the kill"
    assert sent_upstream(fake) == [("user", "one"), ("assistant", "You said: one"), ("user", "tell me a story"),
                                   ("assistant", text), ("user", "right after"), ("assistant", "You said: right after"),
                                   ("user", "after the kill")]  # the text the client saw is part of the chat
    assert stored() == [*before, lost, ("user", "right after", "complete"),
                        ("assistant", "You said: right after", "complete"),
                        ("user", "after the kill", "complete"), ("assistant", "You said: after the kill", "complete")]
    assert metric(requests.get(f"{second.url}/metrics", timeout=10).text, "aiserver_http_requests_total",
                  route="/chat", status="200") == second_chats + 1  # Caddy sent it to the survivor
