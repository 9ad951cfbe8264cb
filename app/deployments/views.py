"""`POST /task`, `POST /revise` (the evaluators' requests), `GET /tasks` and `GET /tasks/{task_id}`.

A valid request is stored and answered at once with `{"status": "accepted", "task_id", "round"}`;
the work (generate, commit, publish, notify) runs in the background worker (see `app.deployments.pipeline`).
"""
from __future__ import annotations

from flask import current_app, g, jsonify
from flask_smorest import Blueprint

from app.core.caller import current_caller
from app.core.http import parse_body, parse_query
from app.core.openapi import errors, json_body, query_args
from app.deployments import intake, status
from app.deployments.schemas import (
    AcceptedSchema,
    TaskListQuerySchema,
    TaskPageSchema,
    TaskRequestSchema,
    TaskSchema,
)
from app.llm.responses import registry

bp = Blueprint("deploy", __name__, description="Build, publish and revise static web apps on GitHub Pages.")

SUBMIT_ERRORS = ((400, "A round number that does not belong to this endpoint, or a URL that is not allowed."),
                 (403, "A wrong secret."),
                 (404, "DEPLOY_PROVIDER names an unknown provider."),
                 (503, "VERIFICATION_SECRET, GITHUB_TOKEN or an LLM provider is not configured, or the database "
                       "is unavailable."))


@bp.post("/task")
@json_body(TaskRequestSchema)
@bp.response(200, AcceptedSchema)
@errors(*SUBMIT_ERRORS, (409, "The task's round 1 is already accepted or running."))
def create_task():
    """Round 1: build a web app from the brief, publish it on GitHub Pages, notify evaluation_url."""
    return _submit("task")


@bp.post("/revise")
@json_body(TaskRequestSchema)
@bp.response(200, AcceptedSchema)
@errors(*SUBMIT_ERRORS, (409, "No earlier round of the task is done, or a round is still running."))
def revise_task():
    """Round 2 and later: revise the task's app for a new brief, republish, notify with the new commit."""
    return _submit("revise")


@bp.get("/tasks")
@query_args(TaskListQuerySchema)
@bp.response(200, TaskPageSchema)
@errors((400, "An invalid status, limit or cursor."), (503, "The database is unavailable or busy."))
def list_tasks():
    """Tasks, newest first; filter by status and email; `cursor` from `next_cursor` for the next page."""
    return jsonify(status.list_tasks(**parse_query(TaskListQuerySchema), reader=current_caller().reader))


@bp.get("/tasks/<task_id>")
@bp.response(200, TaskSchema)
@errors((404, "No such task."), (503, "The database is unavailable or busy."))
def get_task(task_id: str):
    """One task with every round: stages, attempts, timings, repo and Pages URLs, commit sha, errors."""
    return jsonify(status.get_task(task_id, current_caller().reader))


def _submit(endpoint: str):
    body = parse_body(TaskRequestSchema)
    intake.verify_secret(body["secret"], current_app.config.get("VERIFICATION_SECRET") or "")
    g.task_secret_matched = True  # read by the per-email and wrong-secret limits (app.keys.limits)
    answer = intake.submit(body, endpoint, config=current_app.config, registry=registry(),
                           github=current_app.extensions.get("github"),
                           enqueue=current_app.extensions["deploy_jobs"].enqueue, owner_key=current_caller().owner)
    return jsonify(answer)
