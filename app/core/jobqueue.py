"""The background job queue: huey on SQLite by default, on Redis when `REDIS_URL` is set.

Jobs are plain functions registered on the app's huey instance in the factory (see
`register_jobs`), so the web process (which enqueues) and the worker process (`app.worker`, run by
`huey_consumer`) build the same task names from the same code.
"""
from __future__ import annotations

import os
from typing import Any

from huey import RedisHuey, SqliteHuey

from app.core.config import project_root


def make_huey(config: dict[str, Any]):
    name = config.get("QUEUE_NAME") or "aiserver"
    if config.get("REDIS_URL"):
        return RedisHuey(name, url=config["REDIS_URL"], results=False)
    path = config.get("QUEUE_SQLITE_PATH") or os.path.join("data", "queue.db")
    if not os.path.isabs(path):
        path = os.path.join(project_root(), path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return SqliteHuey(name, filename=path, results=False)
