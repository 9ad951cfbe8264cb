"""The background job queue: huey on SQLite by default, on Redis when `REDIS_URL` is set.

Jobs are plain functions registered on the app's huey instance in the factory (see
`register_jobs`), so the web process (which enqueues) and the worker process (`app.worker`, run by
`huey_consumer`) build the same task names from the same code.

While Redis is away, huey's consumer would log a traceback for every failed poll (about two a
second per worker thread). `QueueOutage` reports the outage instead: once when it starts, again
every QUEUE_OUTAGE_LOG_S while it lasts, and once when Redis answers again; `QuietQueueOutages`
drops huey's own tracebacks of the failures it reported.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from huey import RedisHuey, SqliteHuey, signals
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.core.config import project_root
from app.core.metrics import JOBS

log = logging.getLogger("aiserver.queue")
UNREACHABLE = (RedisConnectionError, RedisTimeoutError)


def make_huey(config: dict[str, Any]):
    name = config.get("QUEUE_NAME") or "aiserver"
    if config.get("REDIS_URL"):
        return WatchedRedisHuey(name, url=config["REDIS_URL"], results=False,
                                outage=QueueOutage(config["QUEUE_OUTAGE_LOG_S"]))
    path = config.get("QUEUE_SQLITE_PATH") or os.path.join("data", "queue.db")
    if not os.path.isabs(path):
        path = os.path.join(project_root(), path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return SqliteHuey(name, filename=path, results=False)


JOB_OUTCOMES = (signals.SIGNAL_COMPLETE, signals.SIGNAL_ERROR, signals.SIGNAL_RETRYING, signals.SIGNAL_INTERRUPTED,
                signals.SIGNAL_REVOKED, signals.SIGNAL_EXPIRED, signals.SIGNAL_CANCELED, signals.SIGNAL_LOCKED)


def count_job_outcomes(huey) -> None:
    """Count each job's end (complete, error, retrying...) in `aiserver_jobs_total`, in the process
    that ran it (the queue worker, whose metrics files sit beside the web workers')."""

    @huey.signal(*JOB_OUTCOMES)
    def count(signal: str, task: Any, *_args: Any) -> None:
        JOBS.labels(task.name, signal).inc()


def queue_depth(huey) -> int | None:
    """Jobs waiting in the queue; None while it is unreachable."""
    try:
        return huey.pending_count()
    except Exception:  # Redis away (or SQLite busy): /metrics still answers, without this sample
        log.warning("queue depth unavailable", exc_info=True)
        return None


class QueueOutage:
    """The state of the connection to Redis, logged on each change and at intervals while it is down."""

    def __init__(self, interval: float, clock=time.monotonic):
        self.interval = interval
        self.clock = clock
        self.lock = threading.Lock()
        self.down_since: float | None = None
        self.failures = 0
        self.last_report = 0.0

    @contextmanager
    def watch(self) -> Iterator[None]:
        """Run a consumer's call to Redis: a connection failure is reported here and marked, then re-raised."""
        try:
            yield
        except UNREACHABLE as exc:
            self.failed(exc)
            exc.reported_outage = True  # type: ignore[union-attr]
            raise
        if self.down_since is not None:
            self.recovered()

    def failed(self, exc: Exception) -> None:
        with self.lock:
            now = self.clock()
            self.failures += 1
            if self.down_since is None:
                self.down_since = self.last_report = now
                log.error("job queue unreachable (Redis): %s; logging again every %.0f s while it lasts", exc,
                          self.interval)
            elif now - self.last_report >= self.interval:
                self.last_report = now
                log.warning("job queue still unreachable (Redis) after %.0f s, %d failed calls: %s",
                            now - self.down_since, self.failures, exc)

    def recovered(self) -> None:
        with self.lock:
            if self.down_since is None:
                return
            log.warning("job queue reachable again (Redis) after %.0f s, %d failed calls",
                        self.clock() - self.down_since, self.failures)
            self.down_since, self.failures = None, 0


class WatchedRedisHuey(RedisHuey):
    """RedisHuey whose consumer-side reads (`dequeue`, `read_schedule`) report outages through `outage`."""

    def __init__(self, *args: Any, outage: QueueOutage, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.outage = outage

    def dequeue(self):
        with self.outage.watch():
            return super().dequeue()

    def read_schedule(self, timestamp=None):
        with self.outage.watch():
            return super().read_schedule(timestamp)


class QuietQueueOutages(logging.Filter):
    """Drops a record whose exception `QueueOutage` has already reported (huey's per-poll traceback)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not getattr(exc, "reported_outage", False)
