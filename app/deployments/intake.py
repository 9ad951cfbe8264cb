"""Taking deployment requests: `/task` and `/revise` bodies checked (secret, round, URLs), stored
as a round, and queued for the worker (`app.deployments.pipeline` runs it)."""
from __future__ import annotations

import hmac
import logging
import uuid
from typing import Any, Callable

from peewee import IntegrityError

from app.core.clock import utcnow
from app.core.db import database, locked_row, write_transaction
from app.core.errors import BadRequest, Conflict, Forbidden, NotConfigured, ValidationFailed
from app.deployments.models import FINAL, DeployRound, DeployTask
from app.deployments.pipeline import NEEDS_GITHUB
from app.integrations.github import require_client
from app.integrations.netguard import BlockedURL, Resolver, check_url, system_resolver

log = logging.getLogger("aiserver.deploy")



def verify_secret(given: str, configured: str) -> None:
    """403 unless `given` equals `configured` (compared in constant time); 503 when none is configured."""
    if not configured:
        raise NotConfigured("Deployments are not configured: set VERIFICATION_SECRET.",
                            details={"variable": "VERIFICATION_SECRET"})
    if not hmac.compare_digest(given.encode("utf-8"), configured.encode("utf-8")):
        raise Forbidden("The secret does not match.", code="invalid_secret")


def submit(body: dict[str, Any], endpoint: str, *, config: dict[str, Any], registry: Any, github: Any,
           enqueue: Callable[[int], Any], resolver: Resolver = system_resolver,
           owner_key: str | None = None) -> dict[str, Any]:
    """Store a `/task` (endpoint "task") or `/revise` request and queue its round; the answer to send.
    A new task belongs to `owner_key` (the client key sent with it, if any: evaluators send none).

    The same (task, round, nonce) again is answered with the stored round, without a new one.
    Raises 403/503 (secret), 400 (round number, URLs), 409 (round not allowed now), 503 (not configured)."""
    verify_secret(body["secret"], config.get("VERIFICATION_SECRET") or "")
    _check_endpoint(endpoint, body["round"])
    allow = config.get("NOTIFY_ALLOW_HOSTS") or []
    _check_targets(body, allow, resolver)
    require_client(github, NEEDS_GITHUB)
    registry.plan(config.get("DEPLOY_PROVIDER") or None)  # 503 naming the variable when no provider is set
    with database.connection_context():
        try:
            with write_transaction():
                existing = _find_round(body)
                if existing is not None:
                    return accepted(existing, duplicate=True)
                task = _task_for(body, owner_key)
                locked_row(DeployTask, task.id)  # submissions for one task take turns
                existing = _find_round(body)  # sent meanwhile by a request we waited for
                if existing is not None:
                    return accepted(existing, duplicate=True)
                _check_round_allowed(task, body)
                round_ = DeployRound.create(
                    task=task, round=body["round"], nonce=body["nonce"], email=body["email"], brief=body["brief"],
                    checks=body["checks"], evaluation_url=body["evaluation_url"], attachments=body["attachments"])
                DeployTask.update(rounds=max(task.rounds, body["round"]), status="queued",
                                  updated_at=utcnow()).where(DeployTask.id == task.id).execute()
        except IntegrityError:  # the same request, committed by a concurrent call meanwhile
            existing = _find_round(body)
            if existing is None:
                raise
            return accepted(existing, duplicate=True)
    try:
        enqueue(round_.id)
    except Exception:  # the round is stored: the sweep will queue it
        log.exception("could not queue round %s of task %s; the next sweep will", round_.round, task.id)
    log.info("accepted round %s of task %s (%s)", round_.round, task.id, task.name)
    return accepted(round_, duplicate=False)


def accepted(round_: DeployRound, duplicate: bool) -> dict[str, Any]:
    task_id = round_.task_id
    return {"status": "accepted", "task_id": task_id, "round": round_.round, "nonce": round_.nonce,
            "stage": round_.status, "duplicate": duplicate, "status_url": f"/tasks/{task_id}"}


def _check_endpoint(endpoint: str, number: int) -> None:
    if endpoint == "task" and number != 1:
        raise BadRequest("POST /task starts round 1; send round 2 and later to POST /revise.", code="wrong_round",
                         details={"param": "round"})
    if endpoint == "revise" and number < 2:
        raise BadRequest("POST /revise takes round 2 or later; round 1 goes to POST /task.", code="wrong_round",
                         details={"param": "round"})


def _check_targets(body: dict[str, Any], allow: list[str], resolver: Resolver) -> None:
    """400 when evaluation_url (or an attachment URL) points where the server may not go."""
    try:
        check_url(body["evaluation_url"], allow, resolver)
    except BlockedURL as exc:
        raise ValidationFailed({"evaluation_url": [exc.message]}) from None
    for index, attachment in enumerate(body["attachments"]):
        if not attachment["url"].startswith("data:"):
            try:
                check_url(attachment["url"], allow, resolver)
            except BlockedURL as exc:
                raise ValidationFailed({"attachments": {index: {"url": [exc.message]}}}) from None


def _find_round(body: dict[str, Any]) -> DeployRound | None:
    return (DeployRound.select().join(DeployTask)
            .where(DeployTask.name == body["task"], DeployRound.round == body["round"],
                   DeployRound.nonce == body["nonce"]).first())


def _task_for(body: dict[str, Any], owner_key: str | None) -> DeployTask:
    task = DeployTask.get_or_none(DeployTask.name == body["task"])
    if task is not None:
        return task
    if body["round"] != 1:
        raise Conflict(f"Task {body['task']!r} has no finished earlier round: send round 1 to POST /task first.",
                       code="no_finished_round")
    try:
        with database.atomic():
            return DeployTask.create(id="dt_" + uuid.uuid4().hex[:20], name=body["task"], owner_key=owner_key,
                                     email=body["email"].lower())  # lower-cased for the filter; rounds keep it as sent
    except IntegrityError:
        return DeployTask.get(DeployTask.name == body["task"])


def _check_round_allowed(task: DeployTask, body: dict[str, Any]) -> None:
    """409 when this round cannot start now (see docs/deploy-pipeline.md, "Rounds")."""
    number = body["round"]
    rounds = list(DeployRound.select(DeployRound.round, DeployRound.status).where(DeployRound.task == task))
    running = [r for r in rounds if r.status not in FINAL]
    if running:
        raise Conflict(f"Round {running[0].round} of task {task.name!r} is still in progress; send this round "
                       "when it has finished.", code="round_in_progress")
    if any(r.round >= number and r.status == "done" for r in rounds):
        raise Conflict(f"Round {number} of task {task.name!r} is already done (or a later round is).",
                       code="round_already_done")
    if number > 1 and not any(r.round < number and r.status == "done" for r in rounds):
        raise Conflict(f"Task {task.name!r} has no finished earlier round to revise.", code="no_finished_round")


