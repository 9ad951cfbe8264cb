"""Deployment tasks: one row per task (one GitHub repo), one row per round of work on it.

A round is what one `/task` or `/revise` request asked for. It moves through the stages of
`STAGES` (`status` is the stage it is in, or `done`/`failed`); `stage_done` is the last stage that
completed, so a worker that dies mid-round is resumed from there. `stages` keeps, per stage, its
attempts, start and end times, duration and last error. `lease_owner`/`lease_until` say which worker
holds the round and until when (renewed by a heartbeat); a round whose lease ran out is free for
another worker (see `app.deployments.pipeline.Pipeline.sweep`).

`(task, round, nonce)` is unique: the database, not a read-then-write, decides that a repeated
request is the same one. The caller's secret is never stored.

The tables are created by `app/migrations/0004_tasks.py`.
"""
from __future__ import annotations

from peewee import BigAutoField, CharField, DateTimeField, ForeignKeyField, IntegerField, TextField

from app.core.clock import utcnow
from app.core.db import BaseModel, JSONField

STAGES = ("generating", "committing", "publishing", "notifying")
FINAL = ("done", "failed")
STATUSES = ("queued", *STAGES, *FINAL)


class DeployTask(BaseModel):
    id = CharField(primary_key=True, max_length=40)
    name = CharField(max_length=200, unique=True)
    email = CharField(max_length=254)
    status = CharField(max_length=16, default="queued")  # the latest round's
    rounds = IntegerField(default=0)  # the highest round accepted
    repo_owner = CharField(max_length=100, null=True)
    repo_name = CharField(max_length=100, null=True)
    repo_url = CharField(max_length=500, null=True)
    pages_url = CharField(max_length=500, null=True)
    default_branch = CharField(max_length=100, null=True)
    owner_key = CharField(max_length=40, null=True, index=True)  # the client key sent with round 1, if any
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "deploy_task"
        indexes = ((("created_at", "id"), False), (("email", "created_at"), False),
                   (("status", "created_at"), False))


class DeployRound(BaseModel):
    id = BigAutoField()
    task = ForeignKeyField(DeployTask, column_name="task_id", on_delete="CASCADE", index=False)
    task_id: str  # the foreign key's value, without loading the task
    round = IntegerField()
    nonce = CharField(max_length=200)
    email = CharField(max_length=254)
    brief = TextField()
    checks = JSONField(default=list)
    evaluation_url = CharField(max_length=2048)
    attachments = JSONField(default=list)  # [{"name", "url"}] as sent
    status = CharField(max_length=16, default="queued")
    stage_done = CharField(max_length=16, null=True)
    stages = JSONField(default=dict)
    runs = IntegerField(default=0)  # times a worker picked the round up
    last_error = TextField(null=True)
    files = JSONField(null=True)  # the generated file set, kept between generating and committing
    file_list = JSONField(null=True)  # [{"path", "size"}] of the commit, kept for GET /tasks
    commit_sha = CharField(max_length=64, null=True)
    repo_url = CharField(max_length=500, null=True)
    pages_url = CharField(max_length=500, null=True)
    notify_attempts = IntegerField(default=0)
    notified_at = DateTimeField(null=True)
    lease_owner = CharField(max_length=64, null=True)
    lease_until = DateTimeField(null=True)
    requeued_at = DateTimeField(null=True)
    created_at = DateTimeField(default=utcnow)
    started_at = DateTimeField(null=True)
    finished_at = DateTimeField(null=True)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "deploy_round"
        indexes = ((("task", "round", "nonce"), True), (("status", "lease_until"), False))
