"""Deployments end to end: requests to `/task` and `/revise` in-process, the pipeline in a real
`huey_consumer` process, the LLM, GitHub and the evaluator faked on loopback.

The worker tests share one worker, one database and the fakes (module scope); each uses its own
task name and evaluation URL path, and waits for its round to end before the next test starts.
"""
from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

import pytest
import requests

from app import create_app
from app.core.clock import parse_iso, utcnow
from app.core.db import database, migrate
from app.core.errors import Forbidden, NotConfigured
from app.core.leases import LeaseLost
from app.deployments.intake import verify_secret
from app.deployments.models import DeployRound, DeployTask
from app.deployments.pipeline import Pipeline, Settings, claim_round
from tests.conftest import ROOT, VENV_BIN, as_environ, base_config, provider_config
from tests.fakes.deploy_stack import answer_brief, file_set
from tests.fakes.evaluator import FakeEvaluator
from tests.fakes.github_repos_api import FakeGitHubRepos
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.server import Reply

SECRET = "verify-me-0123456789"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(40))
PNG_URI = "data:image/png;base64," + base64.b64encode(PNG).decode()
CSV_URI = "data:text/csv;base64," + base64.b64encode(b"name,score\nada,3\n").decode()


class Worker:
    """A real `huey_consumer app.worker.huey` process on the test's database and queue."""

    def __init__(self, config: dict[str, Any], log_path: Path):
        self.env = as_environ(config)
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> "Worker":
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(
                [str(VENV_BIN / "huey_consumer"), "app.worker.huey", "-w", "2", "-k", "thread", "-d", "0.05",
                 "-m", "0.2", "-C"], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        return self

    def kill(self) -> None:
        """SIGKILL the whole process group: nothing gets to clean up."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


class Env:
    def __init__(self, tmp: Path, llm: FakeOpenAI, github: FakeGitHubRepos, evaluator: FakeEvaluator):
        self.tmp, self.llm, self.github, self.evaluator = tmp, llm, github, evaluator
        self.config = base_config(
            tmp, LOG_LEVEL="INFO", **provider_config(openai=llm), GITHUB_TOKEN=github.api_key,
            GITHUB_API_URL=github.url, VERIFICATION_SECRET=SECRET, NOTIFY_ALLOW_HOSTS=["127.0.0.1"],
            PAGES_WAIT_S=5, PAGES_POLL_S=0.05, NOTIFY_BACKOFF_S=0.1, NOTIFY_DEADLINE_S=1.5, DEPLOY_RETRY_S=0.05,
            DEPLOY_ATTEMPTS=3, DEPLOY_LEASE_S=2.5, RETRY_ATTEMPTS=0)
        self.app = create_app(self.config)
        migrate(self.app.extensions["database"])
        self.client = self.app.test_client()
        self.worker = Worker(self.config, tmp / "worker.log").start()

    def body(self, task: str, round_: int = 1, **changes: Any) -> dict[str, Any]:
        return {"email": "student@example.com", "secret": SECRET, "task": task, "round": round_,
                "nonce": f"{task}-n{round_}", "brief": f"Build {task}, round {round_}.",
                "checks": ["Repo has MIT license", "Page shows the brief"],
                "evaluation_url": self.evaluator.url_for(f"/notify/{task}"), "attachments": [], **changes}

    def submit(self, task: str, round_: int = 1, **changes: Any) -> dict[str, Any]:
        path = "/task" if round_ == 1 else "/revise"
        response = self.client.post(path, json=self.body(task, round_, **changes))
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    def task(self, task_id: str) -> dict[str, Any]:
        return self.client.get(f"/tasks/{task_id}").get_json()

    def wait_round(self, task_id: str, round_: int, until: Callable[[dict], bool] | None = None,
                   timeout: float = 30) -> dict[str, Any]:
        until = until or (lambda r: r["status"] in ("done", "failed"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rounds = [r for r in self.task(task_id)["rounds"] if r["round"] == round_]
            if rounds and until(rounds[-1]):
                return rounds[-1]
            time.sleep(0.05)
        raise AssertionError(f"round {round_} of {task_id} did not get there:\n"
                             f"{json.dumps(self.task(task_id), indent=1)}\n{self.log_tail()}")

    def wait_released(self, task_id: str, round_: int, timeout: float = 30) -> dict[str, Any]:
        """The round once it is final and its worker has let go of it (so nothing more happens to it)."""
        final = self.wait_round(task_id, round_, timeout=timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with database.connection_context():
                held = (DeployRound.select().where(DeployRound.task == task_id, DeployRound.round == round_,
                                                   DeployRound.lease_owner.is_null(False)).exists())
            if not held:
                return final
            time.sleep(0.05)
        raise AssertionError(f"round {round_} of {task_id} is still held by a worker:\n{self.log_tail()}")

    def log_tail(self) -> str:
        return (self.tmp / "worker.log").read_text()[-3000:]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    with FakeOpenAI() as llm, FakeGitHubRepos(build_delay=0.1) as github, FakeEvaluator() as evaluator:
        llm.default_reply = answer_brief
        running = Env(tmp_path_factory.mktemp("deploy"), llm, github, evaluator)
        try:
            yield running
        finally:
            running.worker.stop()


@pytest.fixture
def fresh(env):
    env.llm.reset()
    env.github.clear_faults()
    yield env
    env.github.clear_faults()


def repo_of(github: FakeGitHubRepos, task: dict[str, Any]) -> tuple[str, str]:
    owner, name = task["repo_url"].rstrip("/").split("/")[-2:]
    return owner, name


def prompts_for(llm: FakeOpenAI, task: str) -> list[list[dict]]:
    """The messages of every generation request made for `task`."""
    return [r.json["messages"] for r in llm.requests
            if r.path.endswith("/chat/completions") and f"Task: {task}\\n" in json.dumps(r.json["messages"])]


# -- through the worker ------------------------------------------------------------------------------------


def test_round_one_then_round_two_end_to_end(fresh):
    env = fresh
    accepted = env.submit("weather-card", attachments=[{"name": "sample.png", "url": PNG_URI},
                                                        {"name": "data/scores.csv", "url": CSV_URI}])
    assert accepted["status"] == "accepted" and accepted["round"] == 1 and accepted["task_id"].startswith("dt_")

    first = env.wait_round(accepted["task_id"], 1)
    assert first["status"] == "done", first
    assert [s["status"] for s in first["stages"]] == ["done"] * 4
    assert all(s["attempts"] >= 1 and s["started_at"] and s["finished_at"] for s in first["stages"])
    task = env.task(accepted["task_id"])
    owner, name = repo_of(env.github, task)
    files = env.github.files(owner, name)
    assert {"index.html", "style.css", "app.js", "LICENSE", "README.md", "sample.png", "data/scores.csv"} <= set(files)
    assert files["sample.png"] == PNG and files["LICENSE"].startswith(b"MIT License")
    readme = files["README.md"].decode()
    for section in ("## Setup", "## Usage", "## Code explanation", "## License"):
        assert section in readme
    history = env.github.history(owner, name)
    assert first["commit_sha"] == history[0] and len(history) == 2  # the initial commit, then ours
    assert requests.get(task["pages_url"], timeout=5).status_code == 200
    assert b"round 1" in requests.get(task["pages_url"], timeout=5).content

    note = env.evaluator.accepted("/notify/weather-card")
    assert len(note) == 1
    assert note[0].body == {"email": "student@example.com", "task": "weather-card", "round": 1,
                            "nonce": "weather-card-n1", "repo_url": task["repo_url"], "commit_sha": history[0],
                            "pages_url": task["pages_url"]}
    prompt = prompts_for(env.llm, "weather-card")[0]
    parts = prompt[1]["content"]
    assert {"type": "image_url", "image_url": {"url": PNG_URI}} in parts  # the image went to the vision model
    assert "ada,3" in parts[0]["text"]  # the CSV went inline

    revised = env.submit("weather-card", 2, brief="Add a footer with the date.")
    assert revised["task_id"] == accepted["task_id"] and revised["round"] == 2
    second = env.wait_round(accepted["task_id"], 2)
    assert second["status"] == "done", second
    history = env.github.history(owner, name)
    assert len(history) == 3 and second["commit_sha"] == history[0] != first["commit_sha"]
    assert b"round 2" in env.github.files(owner, name)["index.html"]
    revision_prompt = json.dumps(prompts_for(env.llm, "weather-card")[-1])
    assert "This is a revision" in revision_prompt and "round 1" in revision_prompt  # it saw the current files
    notes = env.evaluator.accepted("/notify/weather-card")
    assert [n.body["round"] for n in notes] == [1, 2] and notes[1].body["commit_sha"] == history[0]
    assert b"round 2" in requests.get(task["pages_url"], timeout=5).content

    shown = env.task(accepted["task_id"])
    assert shown["status"] == "done" and [r["round"] for r in shown["rounds"]] == [1, 2]
    assert SECRET not in json.dumps(shown)


def test_duplicate_requests_are_accepted_once(fresh):
    env = fresh
    results: list[dict] = []

    def send() -> None:
        results.append(env.app.test_client().post("/task", json=env.body("dup-app")).get_json())

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len({r["task_id"] for r in results}) == 1, results
    assert sorted(r["duplicate"] for r in results) == [False, True, True, True]
    task_id = results[0]["task_id"]
    env.wait_released(task_id, 1)  # done, and no worker holds it: nothing can notify again
    again = env.client.post("/task", json=env.body("dup-app")).get_json()
    assert again["duplicate"] is True and again["stage"] == "done" and again["task_id"] == task_id
    with database.connection_context():
        assert DeployRound.select().join(DeployTask).where(DeployTask.name == "dup-app").count() == 1
    assert len(env.evaluator.accepted("/notify/dup-app")) == 1
    assert len(prompts_for(env.llm, "dup-app")) == 1


def test_the_committed_pages_carry_the_seo_and_accessibility_basics_the_model_left_out(fresh):
    env = fresh
    bare = ("<!doctype html>\n<html>\n<head><meta charset='utf-8'></head>\n<body><h1>Pets</h1>"
            "<img src='sample.png'></body>\n</html>\n")
    env.llm.enqueue(Reply(text=json.dumps({**file_set("Pet gallery", "x"),
                                           "files": [{"path": "index.html", "content": bare}]})))
    accepted = env.submit("pet-gallery", brief="Show a gallery of pets.\nUse the attached sample.",
                          attachments=[{"name": "sample.png", "url": PNG_URI}])
    assert env.wait_released(accepted["task_id"], 1)["status"] == "done"
    files = env.github.files(*repo_of(env.github, env.task(accepted["task_id"])))
    page = files["index.html"].decode()
    for part in ('<html lang="en">', "<title>Pet gallery</title>",
                 '<meta name="description" content="Show a gallery of pets. Use the attached sample.">',
                 '<meta name="viewport" content="width=device-width, initial-scale=1">',
                 '<meta property="og:title" content="Pet gallery">',
                 '<meta property="og:description" content="Show a gallery of pets. Use the attached sample.">',
                 "<img alt=\"Sample\" src='sample.png'>", "<meta charset='utf-8'>"):
        assert part in page, page
    readme = files["README.md"].decode()
    for section in ("## Usage", "## Code explanation", "## License"):
        assert section in readme


def test_invalid_file_sets_are_retried_then_the_task_fails(fresh):
    env = fresh
    env.llm.enqueue(Reply(text="Sure! Here is your app."),
                    Reply(text=json.dumps({**file_set("x", "y"), "files": [{"path": "../evil.js", "content": "1"}]})),
                    Reply(text=json.dumps({**file_set("x", "y"), "files": [{"path": "app.js", "content": "1"}]})))
    accepted = env.submit("broken-app")
    failed = env.wait_round(accepted["task_id"], 1)
    assert failed["status"] == "failed"
    generating = failed["stages"][0]
    assert generating["status"] == "failed" and generating["attempts"] == 3
    assert "index.html is missing" in failed["last_error"] and failed["last_error"].startswith("generating:")
    prompts = [json.dumps(p) for p in prompts_for(env.llm, "broken-app")]
    assert len(prompts) == 3
    assert "not valid JSON" in prompts[1] and "may not contain '..'" in prompts[2]  # each retry says why
    assert env.task(accepted["task_id"])["status"] == "failed"
    assert env.evaluator.accepted("/notify/broken-app") == []
    assert env.task(accepted["task_id"])["repo_url"] is None  # nothing was committed


def test_github_failing_mid_pipeline_then_recovering(fresh):
    env = fresh
    env.github.fail("POST", r"^/user/repos$", 502, times=1)  # a POST GitHub may have run: the stage retries it
    env.github.fail("POST", r"/git/trees$", 500, times=2)  # retried by the client
    accepted = env.submit("flaky-github")
    done = env.wait_round(accepted["task_id"], 1)
    assert done["status"] == "done", done
    committing = done["stages"][1]
    assert committing["attempts"] == 2 and "502" in committing["error"]
    owner, name = repo_of(env.github, env.task(accepted["task_id"]))
    assert env.github.history(owner, name)[0] == done["commit_sha"]
    assert len(env.evaluator.accepted("/notify/flaky-github")) == 1


def test_github_failing_for_good_fails_the_task_with_the_error(fresh):
    env = fresh
    env.github.fail("POST", r"^/user/repos$", 500, times=None, message="Repository creation is broken")
    accepted = env.submit("down-github")
    failed = env.wait_round(accepted["task_id"], 1)
    assert failed["status"] == "failed" and failed["stage_done"] == "generating"
    assert failed["stages"][1]["attempts"] == 3
    assert "Repository creation is broken" in failed["last_error"] and failed["last_error"].startswith("committing:")
    assert env.evaluator.accepted("/notify/down-github") == []


def test_a_killed_worker_is_resumed_from_the_last_completed_stage(fresh):
    env = fresh
    env.github.delay("POST", r"/pages$", 4.0, times=1)  # publishing hangs long enough to kill the worker in it
    accepted = env.submit("killed-app")
    env.wait_round(accepted["task_id"], 1, until=lambda r: r["status"] == "publishing", timeout=15)
    deadline = time.monotonic() + 10
    while not any(r.path.endswith("/pages") and r.method == "POST" for r in env.github.requests):
        assert time.monotonic() < deadline, env.log_tail()
        time.sleep(0.02)
    env.worker.kill()
    stuck = env.task(accepted["task_id"])["rounds"][0]
    assert stuck["status"] == "publishing" and stuck["stage_done"] == "committing"

    env.worker.start()
    done = env.wait_round(accepted["task_id"], 1, timeout=30)
    assert done["status"] == "done", done
    assert done["runs"] == 2 and done["stages"][2]["attempts"] == 2
    assert len(prompts_for(env.llm, "killed-app")) == 1  # generation was not redone
    owner, name = repo_of(env.github, env.task(accepted["task_id"]))
    assert len(env.github.history(owner, name)) == 2  # nor the commit
    notes = env.evaluator.accepted("/notify/killed-app")
    assert len(notes) == 1 and notes[0].body["commit_sha"] == done["commit_sha"]


def test_the_evaluator_is_retried_with_growing_waits(fresh):
    env = fresh
    env.evaluator.script("/notify/patient-app", failures=3, status=503)
    accepted = env.submit("patient-app")
    done = env.wait_round(accepted["task_id"], 1)
    assert done["status"] == "done" and done["notify_attempts"] == 4
    waits = done["stages"][3]["waits"]
    assert waits == [0.1, 0.2, 0.4], waits  # NOTIFY_BACKOFF_S is 0.1, doubled after each failure
    times = [n.at for n in env.evaluator.notifications if n.path == "/notify/patient-app"]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(gaps) == 3 and all(gap > wait - 0.005 for gap, wait in zip(gaps, waits)), gaps  # each was waited


def test_the_evaluator_deadline_fails_the_round(fresh):
    env = fresh
    env.evaluator.script("/notify/deaf-app", failures=None, status=500)
    accepted = env.submit("deaf-app")
    failed = env.wait_round(accepted["task_id"], 1)
    assert failed["status"] == "failed" and failed["stage_done"] == "publishing"
    assert "NOTIFY_DEADLINE_S" in failed["last_error"] and "HTTP 500" in failed["last_error"]
    attempts = [n for n in env.evaluator.notifications if n.path == "/notify/deaf-app"]
    assert len(attempts) == failed["notify_attempts"] >= 4
    notifying = failed["stages"][3]
    started, finished = parse_iso(notifying["started_at"]), parse_iso(notifying["finished_at"])
    assert (finished - started).total_seconds() >= 1.5  # NOTIFY_DEADLINE_S is 1.5 here: it kept trying till then,
    waits = notifying["waits"]  # never waited past it, and gave up at the first failure after it:
    assert len(waits) == len(attempts) - 1 and sum(waits) <= 1.5 + 0.001 * len(waits), waits
    assert failed["commit_sha"] and failed["pages_url"]  # what was published stays visible


def test_secret_never_lands_in_the_database_or_logs(fresh):
    env = fresh
    env.wait_round(env.submit("secret-app")["task_id"], 1)
    for path in env.tmp.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


# -- requests, in-process -----------------------------------------------------------------------------


@pytest.fixture
def deploy_app(make_app, fake_openai):
    return make_app(**provider_config(openai=fake_openai), GITHUB_TOKEN="ghp_" + "x" * 36,
                    GITHUB_API_URL="http://127.0.0.1:9", VERIFICATION_SECRET=SECRET,
                    NOTIFY_ALLOW_HOSTS=["127.0.0.1"])


def body(**changes: Any) -> dict[str, Any]:
    return {"email": "a@example.com", "secret": SECRET, "task": "t1", "round": 1, "nonce": "n1",
            "brief": "Make a page.", "checks": [], "evaluation_url": "http://127.0.0.1:9/notify",
            "attachments": [], **changes}


def test_wrong_or_missing_secret(deploy_app, make_app, fake_openai):
    client = deploy_app.test_client()
    response = client.post("/task", json=body(secret="not-it"))
    assert response.status_code == 403 and response.get_json()["error"]["code"] == "invalid_secret"
    assert "not-it" not in response.get_data(as_text=True)
    assert client.get("/tasks").get_json()["tasks"] == []
    bare = make_app(**provider_config(openai=fake_openai), GITHUB_TOKEN="ghp_x", VERIFICATION_SECRET="")
    response = bare.test_client().post("/task", json=body())
    assert response.status_code == 503 and "VERIFICATION_SECRET" in response.get_json()["error"]["message"]


def test_secret_comparison():
    verify_secret("abc", "abc")
    with pytest.raises(Forbidden):
        verify_secret("abd", "abc")
    with pytest.raises(NotConfigured):
        verify_secret("abc", "")


@pytest.mark.parametrize("path, changes, status, code", [
    ("/task", {"round": 2}, 400, "wrong_round"),
    ("/revise", {"round": 1}, 400, "wrong_round"),
    ("/revise", {"round": 2}, 409, "no_finished_round"),
    ("/task", {"evaluation_url": "file:///etc/passwd"}, 400, "validation_error"),
    ("/task", {"evaluation_url": "http://169.254.169.254/latest/meta-data"}, 400, "validation_error"),
    ("/task", {"evaluation_url": "http://10.1.2.3/notify"}, 400, "validation_error"),
    ("/task", {"attachments": [{"name": "../x.png", "url": PNG_URI}]}, 400, "validation_error"),
    ("/task", {"attachments": [{"name": "a.png", "url": "data:image/png;base64,@@@"}]}, 400, "validation_error"),
    ("/task", {"attachments": [{"name": "a.png", "url": "http://192.168.1.1/a.png"}]}, 400, "validation_error"),
    ("/task", {"round": "1"}, 400, "validation_error"),
    ("/task", {"email": "nobody"}, 400, "validation_error"),
])
def test_bad_requests_get_clear_errors(deploy_app, path, changes, status, code):
    response = deploy_app.test_client().post(path, json=body(**changes))
    assert response.status_code == status, response.get_json()
    assert response.get_json()["error"]["code"] == code


def test_rounds_must_follow_each_other(deploy_app):
    client = deploy_app.test_client()
    first = client.post("/task", json=body()).get_json()
    assert client.post("/task", json=body(nonce="other")).status_code == 409  # round 1 still queued
    assert client.post("/revise", json=body(round=2, nonce="r2")).status_code == 409
    with database.connection_context():
        DeployRound.update(status="done").execute()
    assert client.post("/revise", json=body(round=2, nonce="r2")).status_code == 200
    assert client.post("/revise", json=body(round=3, nonce="r3")).get_json()["error"]["code"] == "round_in_progress"
    assert client.get(f"/tasks/{first['task_id']}").get_json()["rounds"][1]["round"] == 2
    assert client.get("/tasks/dt_nope").status_code == 404


def test_task_list_pages_and_filters(deploy_app):
    client = deploy_app.test_client()
    for n in range(5):
        client.post("/task", json=body(task=f"list-{n}", email=f"user{n % 2}@example.com"))
    page = client.get("/tasks?limit=2").get_json()
    assert [t["task"] for t in page["tasks"]] == ["list-4", "list-3"] and page["next_cursor"]
    rest = client.get(f"/tasks?limit=10&cursor={page['next_cursor']}").get_json()
    assert [t["task"] for t in rest["tasks"]] == ["list-2", "list-1", "list-0"] and rest["next_cursor"] is None
    mine = client.get("/tasks?email=USER1@example.com").get_json()["tasks"]
    assert [t["task"] for t in mine] == ["list-3", "list-1"]
    assert client.get("/tasks?status=queued").get_json()["tasks"][0]["status"] == "queued"
    assert client.get("/tasks?status=done").get_json()["tasks"] == []
    assert client.get("/tasks?status=bogus").status_code == 400
    assert client.get("/tasks?cursor=zzz").status_code == 400


def test_a_lease_is_exclusive_and_a_taken_over_round_stops(deploy_app):
    client = deploy_app.test_client()
    client.post("/task", json=body(task="lease-app"))
    with database.connection_context():
        round_id = DeployRound.select().first().id
    lease = claim_round(round_id, 3)  # renewed every second; 2 s of slack before anyone else could claim it
    try:
        assert lease is not None and claim_round(round_id, 30) is None  # held: nobody else gets it
        pipeline = deploy_app.extensions["deploy_jobs"].pipeline
        assert pipeline.run(round_id) is None and pipeline.sweep() == []
        claimed_until = lease_until(round_id)
        assert wait_for(lambda: lease_until(round_id) > claimed_until, 10)  # the heartbeat renewed it
        assert not lease.lost
        with database.connection_context():  # another worker took the round over
            DeployRound.update(lease_owner="someone-else").execute()
        assert wait_for(lambda: lease.lost, 10)  # the heartbeat noticed at its next beat
        with pytest.raises(LeaseLost):  # so the old holder stops at its next step
            lease.check()
    finally:
        lease.release()


def lease_until(round_id: int):
    with database.connection_context():
        return DeployRound.get_by_id(round_id).lease_until


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_sweep_hands_out_orphaned_rounds_once(deploy_app):
    client = deploy_app.test_client()
    client.post("/task", json=body(task="orphan"))
    pipeline = Pipeline(Settings(lease_s=5), gateway=None, registry=None, github=None)
    assert pipeline.sweep() == []  # just queued: its job is in the queue
    with database.connection_context():  # a lease period passes without any worker touching it
        DeployRound.update(updated_at=utcnow() - timedelta(seconds=6)).execute()
    picked = pipeline.sweep()
    assert len(picked) == 1 and pipeline.sweep() == []


# -- on PostgreSQL too ---------------------------------------------------------------------------------



@pytest.mark.postgres
def test_concurrent_duplicates_and_a_whole_round_on_postgresql(make_app, postgres_url):
    with FakeOpenAI() as llm, FakeGitHubRepos(build_delay=0.05) as github, FakeEvaluator() as evaluator:
        llm.default_reply = answer_brief
        app = make_app(DATABASE_URL=postgres_url, **provider_config(openai=llm), GITHUB_TOKEN=github.api_key,
                       GITHUB_API_URL=github.url, VERIFICATION_SECRET=SECRET, NOTIFY_ALLOW_HOSTS=["127.0.0.1"],
                       PAGES_POLL_S=0.05, NOTIFY_BACKOFF_S=0.05)
        request = body(task="pg-app", evaluation_url=evaluator.url_for("/notify/pg"))
        results: list[dict] = []
        threads = [threading.Thread(target=lambda: results.append(
            app.test_client().post("/task", json=request).get_json())) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        assert all("duplicate" in r for r in results), results
        assert sorted(r["duplicate"] for r in results) == [False] + [True] * 5, results
        with database.connection_context():
            round_id = DeployRound.select(DeployRound.id).scalar()
            assert DeployRound.select().count() == 1
        assert app.extensions["deploy_jobs"].pipeline.run(round_id) == "done"
        shown = app.test_client().get(f"/tasks/{results[0]['task_id']}").get_json()
        assert shown["status"] == "done" and shown["rounds"][0]["commit_sha"]
        assert evaluator.accepted("/notify/pg")[0].body["commit_sha"] == shown["rounds"][0]["commit_sha"]
