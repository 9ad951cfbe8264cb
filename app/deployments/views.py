"""`POST /task`, `POST /revise` (the evaluators' requests), `GET /tasks` and `GET /tasks/{task_id}`.

A valid request is stored and answered at once with `{"status": "accepted", "task_id", "round"}`;
the work (generate, commit, publish, notify) runs in the background worker (see `app.deployments.pipeline`).
"""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from app.core.caller import current_caller
from app.core.http import parse_body, parse_query
from app.core.openapi import documented
from app.deployments import intake, status
from app.deployments.schemas import TaskListQuerySchema, TaskRequestSchema
from app.llm.responses import registry

bp = Blueprint("deploy", __name__)


@bp.post("/task")
@documented(body=TaskRequestSchema)
def create_task():
    """Round 1: build a web app from the brief, publish it on GitHub Pages, notify evaluation_url."""
    return _submit("task")


@bp.post("/revise")
@documented(body=TaskRequestSchema)
def revise_task():
    """Round 2 and later: revise the task's app for a new brief, republish, notify with the new commit."""
    return _submit("revise")


@bp.get("/tasks")
@documented(query=TaskListQuerySchema)
def list_tasks():
    """Tasks, newest first; filter by status and email; `cursor` from `next_cursor` for the next page."""
    return jsonify(status.list_tasks(**parse_query(TaskListQuerySchema), reader=current_caller().reader))


@bp.get("/tasks/<task_id>")
def get_task(task_id: str):
    """One task with every round: stages, attempts, timings, repo and Pages URLs, commit sha, errors."""
    return jsonify(status.get_task(task_id, current_caller().reader))


def _submit(endpoint: str):
    body = parse_body(TaskRequestSchema)
    answer = intake.submit(body, endpoint, config=current_app.config, registry=registry(),
                           github=current_app.extensions.get("github"),
                           enqueue=current_app.extensions["deploy_jobs"].enqueue, owner_key=current_caller().owner)
    return jsonify(answer)
