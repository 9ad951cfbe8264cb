"""The job queue on each of its storages, run by a real worker process (`python -m app.worker`)."""
from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
from huey import RedisHuey, SqliteHuey

from tests.conftest import REDIS_URL, ROOT, as_environ, base_config


def run_worker_until(config: dict, done, timeout: float = 30) -> None:
    """Start the worker with `config`, wait until `done()` is true, stop it."""
    worker = subprocess.Popen([sys.executable, "-m", "app.worker"], cwd=ROOT, env=as_environ(config),
                              stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.1)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert done(), "the worker did not run the job"


@pytest.mark.parametrize("storage", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def test_a_job_enqueued_by_the_web_process_runs_in_the_worker(make_app, tmp_path: Path, storage):
    queue_name = f"test-{uuid.uuid4().hex[:8]}"
    settings = {"QUEUE_NAME": queue_name}
    if storage == "redis":
        settings["REDIS_URL"] = REDIS_URL
    app = make_app(**settings)
    huey = app.extensions["huey"]
    assert isinstance(huey, RedisHuey if storage == "redis" else SqliteHuey)
    target = tmp_path / "job-backups"
    app.extensions["housekeeping_jobs"]["backup_database"](str(target))
    assert huey.pending_count() == 1
    try:
        run_worker_until(base_config(tmp_path, **settings), lambda: any(target.glob("*.db")))
        assert huey.pending_count() == 0
    finally:
        if storage == "redis":
            client = redis.Redis.from_url(REDIS_URL)
            client.delete(*client.keys(f"huey.*{queue_name}*") or ["none"])
