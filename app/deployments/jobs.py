"""Background jobs, registered on the app's huey instance by the factory (`register_jobs`).

The web process only enqueues; the worker process (`huey_consumer app.worker.huey`) runs them. Both
build the same task names from this module, so a job enqueued by one is found by the other.

- `deploy.run_round(round_id, origin)`: run or resume one deployment round (see `app.deployments.pipeline`);
  `origin` is the trace context of the request that queued it (its round's trace links to it);
- `deploy.sweep()`: queue rounds whose worker is gone; run when a worker starts, once more a lease
  period later (a worker killed a moment ago still holds a lease that has not run out), and every
  minute as a periodic task.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from flask import Flask
from huey import crontab

from app.core.config import secret_values
from app.deployments.pipeline import Pipeline, Settings

log = logging.getLogger("aiserver.jobs")


@dataclass(frozen=True)
class DeployJobs:
    """What the web process needs: `enqueue(round_id)` puts a round on the queue."""

    run_round: Any
    sweep: Any
    pipeline: Pipeline

    def enqueue(self, round_id: int) -> None:
        self.run_round(round_id, self.pipeline.tracing.carrier())


def register_jobs(huey: Any, app: Flask) -> DeployJobs:
    """Register every job on `huey`; the deployment jobs are kept in `app.extensions["deploy_jobs"]`."""
    settings = Settings.from_config(app.config)
    pipeline = Pipeline(settings, gateway=app.extensions["gateway"], registry=app.extensions["providers"],
                        github=app.extensions.get("github"), secrets=secret_values(app.config),
                        tracing=app.extensions["tracing"])
    first_start = threading.Lock()  # never released: only the first worker thread resumes

    @huey.task(name="deploy.run_round")
    def run_round(round_id: int, origin: dict[str, str] | None = None) -> None:
        pipeline.run(round_id, origin)

    @huey.task(name="deploy.sweep")
    def sweep() -> None:
        for round_id in pipeline.sweep():
            run_round(round_id)

    @huey.periodic_task(crontab(minute="*"), name="deploy.sweep_periodic")
    def sweep_periodic() -> None:
        sweep.call_local()

    @huey.on_startup("deploy.resume")
    def resume() -> None:  # runs in each worker thread; the first one does the work
        if not first_start.acquire(blocking=False):
            return
        sweep.call_local()
        sweep.schedule(delay=settings.lease_s + 1)

    jobs = DeployJobs(run_round, sweep, pipeline)
    app.extensions["deploy_jobs"] = jobs
    return jobs
