"""Reading deployments: the task list (newest first, by cursor) and one task with its rounds,
stages, timings, URLs, commit and errors."""
from __future__ import annotations

import re
from typing import Any

from app.core.caller import EVERYONE, owned_by
from app.core.clock import isoformat
from app.core.db import database
from app.core.errors import NotFound
from app.core.paging import Keyset, matching, moment
from app.deployments.models import STAGES, DeployRound, DeployTask

TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,40}")
TASKS_NEWEST_FIRST = Keyset(DeployTask.created_at, DeployTask.id, readers=(moment, matching(TASK_ID)))


def list_tasks(*, status: str | None = None, email: str | None = None, limit: int = 20,
               cursor: str | None = None, reader: Any = EVERYONE) -> dict[str, Any]:
    """Tasks `reader` may see (`app.core.caller`), newest first, `limit` at a time; `next_cursor`
    continues the list."""
    query = DeployTask.select().where(owned_by(DeployTask.owner_key, reader))
    if status:
        query = query.where(DeployTask.status == status)
    if email:
        query = query.where(DeployTask.email == email.strip().lower())
    with database.connection_context():
        rows = list(TASKS_NEWEST_FIRST.page(query, limit, cursor))
    tasks, next_cursor = Keyset.split(rows, limit, key=lambda task: (task.created_at, task.id))
    return {"tasks": [task_summary(t) for t in tasks], "next_cursor": next_cursor}


def get_task(task_id: str, reader: Any = EVERYONE) -> dict[str, Any]:
    """A task with every round, its stages, timings, URLs, commit and errors; 404 if unknown or not
    `reader`'s to see."""
    with database.connection_context():
        task = DeployTask.get_or_none((DeployTask.id == task_id) & owned_by(DeployTask.owner_key, reader))
        if task is None:
            raise NotFound(f"No task {task_id!r}; GET /tasks lists them.", code="task_not_found")
        rounds = list(DeployRound.select().where(DeployRound.task == task).order_by(DeployRound.round,
                                                                                       DeployRound.id))
    return {**task_summary(task), "rounds": [round_view(r) for r in rounds]}


def task_summary(task: DeployTask) -> dict[str, Any]:
    return {"task_id": task.id, "task": task.name, "email": task.email, "status": task.status,
            "rounds": task.rounds, "repo_url": task.repo_url, "pages_url": task.pages_url,
            "created_at": isoformat(task.created_at), "updated_at": isoformat(task.updated_at)}


def round_view(round_: DeployRound) -> dict[str, Any]:
    stages = []
    for name in STAGES:
        info = dict(round_.stages.get(name) or {})
        info.pop("feedback", None)
        info.pop("parent", None)
        stages.append({"name": name, "status": _stage_status(round_, name), "attempts": info.pop("attempts", 0),
                       "started_at": info.pop("started_at", None), "finished_at": info.pop("finished_at", None),
                       "seconds": info.pop("seconds", None), "error": info.pop("error", None), **info})
    return {"round": round_.round, "nonce": round_.nonce, "status": round_.status, "stage_done": round_.stage_done,
            "brief": round_.brief, "checks": round_.checks, "evaluation_url": round_.evaluation_url,
            "attachments": [{"name": a["name"]} for a in round_.attachments], "stages": stages,
            "runs": round_.runs, "repo_url": round_.repo_url, "pages_url": round_.pages_url,
            "commit_sha": round_.commit_sha, "files": round_.file_list,
            "notify_attempts": round_.notify_attempts, "notified_at": isoformat(round_.notified_at),
            "last_error": round_.last_error, "created_at": isoformat(round_.created_at),
            "started_at": isoformat(round_.started_at), "finished_at": isoformat(round_.finished_at)}


def _stage_status(round_: DeployRound, name: str) -> str:
    done = STAGES.index(round_.stage_done) if round_.stage_done else -1
    index = STAGES.index(name)
    if index <= done:
        return "done"
    if round_.status == name:
        return "running"
    if round_.status == "failed" and index == done + 1:
        return "failed"
    return "pending"


