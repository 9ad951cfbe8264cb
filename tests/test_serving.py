"""Production serving, for real on loopback: Supervisor runs web and worker from the shipped
supervisord.conf, Caddy proxies from the shipped Caddyfile (both changed only in ports and paths),
and the deploy files that cannot run here (Docker, systemd, the VM scripts) are linted.

The `system` tests share one stack (module scope) and run in file order; each leaves it serving.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest
import requests
import yaml
from huey import SqliteHuey

from app.core.config import SETTINGS_BY_NAME
from app.ops import housekeeping
from tests.conftest import ROOT, VENV_BIN, as_environ, base_config, provider_config
from tests.fakes.server import Reply
from tests.serving_stack import (
    CADDY,
    CaddyProxy,
    SupervisedStack,
    TimedOpenAI,
    alive,
    children,
    free_port,
    read_stream,
    wait_for,
)

SCRIPTS = ["deploy/provision", "deploy/update", "deploy/backup", "scripts/smoke", "scripts/install-test-deps"]


class Stack:
    def __init__(self, tmp: Path, fake: TimedOpenAI):
        self.tmp, self.fake = tmp, fake
        self.config = base_config(tmp, LOG_LEVEL="INFO", BACKUP_DIR=str(tmp / "backups"),
                                  **provider_config(openai=fake))
        environ = as_environ(dict(self.config, HOST="127.0.0.1", PORT=str(free_port())))
        self.web = SupervisedStack(tmp, environ)
        try:
            self.caddy = CaddyProxy(tmp, f"127.0.0.1:{self.web.port}")
        except BaseException:
            self.web.stop()
            raise
        self.db_path = Path(self.config["DATABASE_URL"].split("sqlite:///", 1)[1])

    def stop(self) -> None:
        self.caddy.stop()
        self.web.stop()


def require_caddy() -> str:
    if CADDY is None:
        pytest.fail("caddy is not installed: `make test-system-deps` installs Debian's package")
    return CADDY


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    require_caddy()
    with TimedOpenAI() as fake:
        running = Stack(tmp_path_factory.mktemp("serving"), fake)
        try:
            yield running
        finally:
            running.stop()


def completion_body(text: str = "hello", stream: bool = False) -> bytes:
    return json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}],
                       "stream": stream}).encode()


def table_rows(path: Path) -> dict[str, list[tuple]]:
    """Every row of every table, by table, in rowid order (the database's whole content)."""
    with sqlite3.connect(path) as db:
        tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table' "
                                                 "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        return {table: db.execute(f'SELECT * FROM "{table}" ORDER BY rowid').fetchall() for table in tables}


# -- the running stack ----------------------------------------------------------------------------

@pytest.mark.system
def test_supervisor_runs_web_and_worker_behind_caddy(stack):
    status = stack.web.ctl("status")
    assert re.search(r"^web\s+RUNNING", status, re.M) and re.search(r"^worker\s+RUNNING", status, re.M), status

    health = requests.get(stack.caddy.url + "/health", headers={"X-Request-ID": "deploy-check-1"}, timeout=10)
    assert health.status_code == 200, health.text
    assert health.json()["status"] == "ok"
    assert health.headers["X-Request-ID"] == "deploy-check-1"  # passed to the app and back
    assert requests.get(stack.caddy.url + "/ping", timeout=5).headers["X-Request-ID"]  # made when absent

    # The older server's clients call /api/v1/...: Caddy rewrites them onto /v1/...
    legacy = requests.get(stack.caddy.url + "/api/v1/models", timeout=5)
    assert legacy.status_code == 200 and legacy.json()["object"] == "list"
    stack.fake.enqueue(Reply(text="Rewritten fine."))
    answer = requests.post(stack.caddy.url + "/api/v1/chat/completions", data=completion_body(),
                           headers={"Content-Type": "application/json"}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == "Rewritten fine."
    assert stack.fake.requests[-1].path == "/v1/chat/completions"

    console = stack.web.console_text()
    assert "Listening at: http://127.0.0.1:%d" % stack.web.port in console
    assert "Huey consumer started" in console
    assert "monkey-patch" not in console.lower()  # gevent patched first in each web worker: no late-patch warning


@pytest.mark.system
def test_sse_through_caddy_arrives_as_upstream_sends_it(stack):
    markers = [f"m{i:02d}x".encode() for i in range(8)]
    stack.fake.sent.clear()
    stack.fake.enqueue(Reply(chunks=[f" {m.decode()}" for m in markers], chunk_delay=0.2))

    seen, data = read_stream(stack.caddy.url + "/v1/chat/completions", completion_body(stream=True), markers)

    assert b"data: [DONE]" in data, data[-500:]
    assert set(seen) == set(markers)
    sent = {marker: at for at, frame in stack.fake.sent for marker in markers if marker in frame}
    lags_ms = [round((seen[m] - sent[m]) * 1000, 1) for m in markers]
    # Each chunk reaches the client through the app and Caddy a millisecond or so after the fake
    # provider sent it (typically under 1 ms on loopback): none waits for the next one (200 ms later)
    # or for the end of the stream, as it would behind a buffering proxy.
    assert sorted(lags_ms)[len(lags_ms) // 2] < 15, lags_ms
    assert max(lags_ms) < 100, lags_ms
    assert seen[markers[0]] < sent[markers[-1]] - 1.2  # the first arrived well before the last was sent


@pytest.mark.system
def test_graceful_reload_lets_a_running_stream_finish(stack):
    master = stack.web.pid("web")
    old_workers = children(master)
    markers = [f"r{i:02d}x".encode() for i in range(8)]
    stack.fake.enqueue(Reply(chunks=[f" {m.decode()}" for m in markers], chunk_delay=0.2))

    seen, data = read_stream(stack.caddy.url + "/v1/chat/completions", completion_body(stream=True), markers,
                             on_first=lambda: stack.web.rpc.signalProcess("web", "HUP"))

    assert set(seen) == set(markers), data[-800:]
    assert b"data: [DONE]" in data
    assert seen[markers[-1]] - seen[markers[0]] > 1.2  # the stream really ran across the reload
    assert stack.web.pid("web") == master  # the master stayed; only its workers were replaced
    wait_for(lambda: not any(alive(pid) for pid in old_workers), 15, what="the old workers to exit")
    new_workers = children(master)
    assert new_workers and not new_workers & old_workers
    assert requests.get(stack.caddy.url + "/health", timeout=10).status_code == 200


@pytest.mark.system
def test_kill_9_of_web_loses_no_conversation_and_no_queued_job(stack):
    # Stored conversations, written through Caddy by the web program.
    chat_ids = []
    for n in range(3):
        stack.fake.enqueue(Reply(text=f"Answer {n}."))
        reply = requests.post(stack.caddy.url + "/chat", json={"message": f"Question {n}?", "chat_id": f"keep-{n}"},
                              timeout=10)
        assert reply.status_code == 200, reply.text
        chat_ids.append(reply.json()["chat_id"])
    before = table_rows(stack.db_path)

    # A queued job: the worker is stopped, so the job waits in the queue's storage.
    stack.web.rpc.stopProcess("worker")
    queue = SqliteHuey("aiserver", filename=stack.config["QUEUE_SQLITE_PATH"], results=False)
    jobs = housekeeping.register(queue, dict(stack.config, BACKUP_KEEP=7))
    job_dir = stack.tmp / "job-backups"
    jobs["backup_database"](str(job_dir))
    assert queue.pending_count() == 1

    master = stack.web.pid("web")
    workers = children(master)
    os.kill(master, signal.SIGKILL)
    assert queue.pending_count() == 1
    stack.web.rpc.startProcess("worker", False)  # boots while Supervisor restarts web

    wait_for(lambda: stack.web.pid("web") not in (0, master), 30, what="Supervisor to restart web")
    wait_for(lambda: requests.get(stack.caddy.url + "/health", timeout=5).status_code == 200, 30,
             what="the restarted web to answer through Caddy")
    wait_for(lambda: not any(alive(pid) for pid in workers), 10, what="the orphaned workers to exit")
    for n, chat_id in enumerate(chat_ids):
        history = requests.get(f"{stack.caddy.url}/chat/history/{chat_id}", timeout=10)
        assert history.status_code == 200, history.text
        contents = [m["content"] for m in history.json()["history"]["messages"]]
        assert f"Question {n}?" in contents and f"Answer {n}." in contents
    assert table_rows(stack.db_path) == before

    backups = wait_for(lambda: list(job_dir.glob("aiserver-*.db")), 30, what="the queued backup job to run")
    assert queue.pending_count() == 0
    assert table_rows(backups[0]) == before


@pytest.mark.system
def test_backup_script_copies_the_live_database(stack):
    before = table_rows(stack.db_path)
    output = stack.tmp / "by-script" / "copy.db"
    env = as_environ(dict(stack.config))
    result = subprocess.run(["bash", str(ROOT / "deploy" / "backup"), "--output", str(output)], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith(str(output))
    assert table_rows(output) == before
    assert sum(len(rows) for rows in before.values()) > 0
    assert oct(output.stat().st_mode & 0o777) == "0o600"
    with sqlite3.connect(output) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one self-contained file
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.mark.system
def test_smoke_script_passes_through_caddy(stack):
    stack.fake.default_reply = Reply(text="smoke ok")
    try:
        result = subprocess.run(["bash", str(ROOT / "scripts" / "smoke"), stack.caddy.url], capture_output=True,
                                text=True, timeout=60)
    finally:
        stack.fake.default_reply = Reply()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout
    assert re.search(r"\d+ passed", result.stdout)


# -- the configuration, without processes --------------------------------------------------------

def test_gunicorn_conf_reads_env_then_dotenv_and_imports_nothing_of_the_app(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("WEB_WORKERS=5\nWEB_GRACEFUL_TIMEOUT_S=12\nPORT=6001\n")
    probe = ("import runpy, sys, json; c = runpy.run_path('gunicorn.conf.py'); "
             "loaded = [m for m in ('app', 'requests', 'urllib3', 'httpx', 'openai', 'flask') if m in sys.modules]; "
             "print(json.dumps({k: c[k] for k in ('bind', 'workers', 'graceful_timeout', 'preload_app', "
             "'timeout', 'control_socket_disable')} | {'loaded': loaded, 'worker_bases': "
             "[b.__module__ + '.' + b.__name__ for b in c['worker_class'].__mro__], "
             "'exported': 'WEB_WORKERS' in __import__('os').environ}))")
    env = dict(os.environ, DOTENV_PATH=str(dotenv), PORT="7001")
    env.pop("WEB_WORKERS", None)
    out = subprocess.run([str(VENV_BIN / "python"), "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=30, check=True).stdout
    conf = json.loads(out)
    assert conf["bind"] == "127.0.0.1:7001"  # the environment wins over .env
    assert conf["workers"] == 5 and conf["graceful_timeout"] == 12  # .env over the defaults
    assert "gunicorn.workers.ggevent.GeventWorker" in conf["worker_bases"]  # gevent, orphan-safe (item 9)
    assert conf["preload_app"] is False and conf["timeout"] == 30
    assert conf["control_socket_disable"] is True
    assert conf["loaded"] == []  # the master imports no app code and nothing holding ssl references
    assert conf["exported"] is False  # .env is read, not exported: reloaded workers re-read it


def test_supervisord_conf_keeps_graceful_windows_consistent():
    conf = (ROOT / "supervisord.conf").read_text()
    web = conf.split("[program:web]")[1].split("[program:")[0]
    worker = conf.split("[program:worker]")[1]
    graceful = int(SETTINGS_BY_NAME["WEB_GRACEFUL_TIMEOUT_S"].default)
    assert int(re.search(r"stopwaitsecs=(\d+)", web).group(1)) > graceful
    # app.worker builds an app on import, so read its shutdown window from the source
    shutdown = float(re.search(r"^SHUTDOWN_TIMEOUT_S = ([\d.]+)", (ROOT / "app" / "worker.py").read_text(),
                               re.M).group(1))
    assert int(re.search(r"stopwaitsecs=(\d+)", worker).group(1)) > shutdown
    for section in (web, worker):
        for option in ("autorestart=true", "stopasgroup=true", "killasgroup=true", "stopsignal=TERM"):
            assert option in section


def test_public_caddyfile_adapts_with_https_streaming_and_the_api_rewrite(tmp_path):
    env = dict(os.environ, AISERVER_DOMAIN="api.example.com", HOME=str(tmp_path))
    result = subprocess.run([require_caddy(), "adapt", "--config", str(ROOT / "Caddyfile")], env=env,
                            capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "not formatted" not in result.stderr
    config = json.loads(result.stdout)
    server = config["apps"]["http"]["servers"]["srv0"]
    assert server["listen"] == [":443"] and "automatic_https" not in server  # HTTPS, certificates by Caddy
    text = json.dumps(server)
    assert '"host": ["api.example.com"]' in text
    assert '"flush_interval": -1' in text
    assert '"strip_path_prefix": "/api"' in text
    # a whole request within 30 s and its head within 10 s; streams outlive it
    # (tests/test_bounds.py::test_caddy_s_read_body_does_not_cut_a_stream_longer_than_it)
    assert (server["read_timeout"], server["read_header_timeout"]) == (30 * 10**9, 10 * 10**9)


def test_docker_files_parse_and_pass_hadolint():
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"aiserver", "caddy"} <= set(services)
    build = services["aiserver"]["build"]
    assert (ROOT / "deploy" / build["context"] / build["dockerfile"]).resolve() == ROOT / "deploy" / "Dockerfile"
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume["source"]
            if source.startswith("."):
                assert (ROOT / "deploy" / source).exists(), source
    lint = subprocess.run([str(VENV_BIN / "hadolint"), "--failure-threshold", "warning",
                           str(ROOT / "deploy" / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.M)
    assert re.search(r'^CMD \[".*supervisord', dockerfile, re.M)


def test_shell_scripts_pass_shellcheck():
    paths = [str(ROOT / script) for script in SCRIPTS]
    result = subprocess.run([str(VENV_BIN / "shellcheck"), "--severity=warning", *paths], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    for path in paths:
        assert os.access(path, os.X_OK), f"{path} is not executable"


def test_systemd_unit_runs_the_shipped_supervisord_conf(tmp_path):
    unit = (ROOT / "deploy" / "aiserver.service").read_text()
    assert "supervisord --nodaemon --configuration /srv/aiserver/supervisord.conf" in unit
    assert re.search(r"^User=aiserver$", unit, re.M)
    assert re.search(r"^ExecReload=.*signal HUP web", unit, re.M)
    stopwait = sum(int(n) for n in re.findall(r"stopwaitsecs=(\d+)", (ROOT / "supervisord.conf").read_text()))
    assert int(re.search(r"^TimeoutStopSec=(\d+)", unit, re.M).group(1)) > stopwait  # programs stop in turn
    analyze = shutil.which("systemd-analyze")
    if analyze:  # offline syntax check, with the paths deploy/provision would write
        (tmp_path / "aiserver.service").write_text(unit.replace("/srv/aiserver", str(ROOT)))
        result = subprocess.run([analyze, "verify", str(tmp_path / "aiserver.service")], capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0 and not result.stderr.strip(), result.stderr
