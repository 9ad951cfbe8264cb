"""Housekeeping jobs run by the worker: a nightly online backup of the SQLite database, and the nightly
prune of the response cache's expired entries in the database (Redis expires its own).

`register(huey, config)` adds the jobs to a huey instance and returns them by name. The worker
(`app.worker`) registers them on the app's huey; anything else that wants to enqueue one (an
operator's shell, a test) registers them on a huey with the same name and storage, then calls the
returned task, e.g. `jobs["backup_database"]()`.
"""
from __future__ import annotations

import logging
import os
from typing import Any

from huey import crontab

from app.llm.response_cache import prune_expired
from app.ops.backup import BackupError, backup_to_directory, sqlite_path

log = logging.getLogger("aiserver.housekeeping")
NIGHTLY = crontab(minute="17", hour="3")  # UTC: huey's scheduler runs on UTC


def register(huey, config: dict[str, Any]) -> dict[str, Any]:
    """Register the housekeeping jobs on `huey`; returns {name: task}."""
    from app.core.config import project_root

    directory = config["BACKUP_DIR"]
    if not os.path.isabs(directory):
        directory = os.path.join(project_root(), directory)

    def backup_database(target_dir: str | None = None) -> str | None:
        """Back up the SQLite database into `target_dir` (default BACKUP_DIR), keeping BACKUP_KEEP."""
        try:
            source = sqlite_path(config["DATABASE_URL"])
        except BackupError as exc:
            log.info("backup skipped: %s", exc)
            return None
        written = backup_to_directory(source, target_dir or directory, config["BACKUP_KEEP"])
        log.info("database backed up to %s", written)
        return written

    def prune_response_cache() -> int:
        """Delete the response cache's expired rows (a read already skips them; this frees their space)."""
        pruned = prune_expired()
        log.info("response cache: %d expired entries pruned", pruned)
        return pruned

    jobs = {"backup_database": huey.task(name="backup_database")(backup_database),
            "prune_response_cache": huey.periodic_task(NIGHTLY, name="prune_response_cache")(prune_response_cache)}
    if config["BACKUP_KEEP"] > 0:
        jobs["nightly_backup"] = huey.periodic_task(NIGHTLY, name="nightly_backup")(backup_database)
    return jobs
