"""Deployments: accept a task round (`submit`), run its pipeline in a worker (`Pipeline.run`), and
show tasks (`list_tasks`, `get_task`).

A round moves through the stages generating -> committing -> publishing -> notifying, then `done`,
or `failed` with the stage's error. Each stage's attempts, start, end, duration and last error are
kept in the round's `stages`; `stage_done` names the last stage that completed, and what a later
stage needs (the file set, the commit sha, the Pages URL) is stored before the stage is marked
done. So a round is resumable: run again, it starts at the first stage not done.

Who runs a round is decided in the database. A worker *claims* it (an UPDATE that succeeds only if
no live lease is held), renews the lease from a heartbeat thread, and writes only while it still
holds the lease (a write that matches no row means another worker took over: `LeaseLost`). A worker
killed mid-round (even by SIGKILL) stops renewing; once its lease has run out, `sweep` hands the
round to the queue again (run at worker start, shortly after, and every minute).

Stage failures are retried `DEPLOY_ATTEMPTS` times with a doubling wait; an invalid LLM file set is
one failed attempt, and its error is shown to the model on the next one. The notification is
retried after 1, 2, 4... x `NOTIFY_BACKOFF_S` seconds until `NOTIFY_DEADLINE_S` after it started.
Each wait is noted in the stage's `waits` before it starts.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable

import requests
from peewee import IntegrityError, fn

from app.core.clock import isoformat, parse_iso, utcnow
from app.core.db import database, locked_row, write_transaction
from app.core.errors import APIError, BadRequest, Conflict, Forbidden, NotConfigured, NotFound, ValidationFailed
from app.core.paging import decode_cursor, encode_cursor, matching, moment
from app.deployments.generate import (
    VISION_PROVIDERS,
    Brief,
    FileSet,
    InvalidFileSet,
    Limits,
    build_request,
    find_secret,
    load_attachments,
    parse_file_set,
    repo_files,
)
from app.deployments.models import FINAL, STAGES, DeployRound, DeployTask
from app.deployments.page_basics import complete_pages
from app.integrations.github import require_client
from app.integrations.github.repos import Repo, Repos, repo_name_for
from app.integrations.netguard import BlockedURL, Resolver, check_url, guarded_request, system_resolver

log = logging.getLogger("aiserver.deploy")

TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,40}")
NEEDS_GITHUB = "create repositories and publish them with GitHub Pages"


class PermanentFailure(APIError):
    """A stage failure that retrying cannot fix."""

    status, type, code = 502, "upstream_error", "deploy_failed"


class LeaseLost(Exception):
    """Another worker holds the round now; this one must stop touching it."""


# -- accepting requests ------------------------------------------------------------------------------


def verify_secret(given: str, configured: str) -> None:
    """403 unless `given` equals `configured` (compared in constant time); 503 when none is configured."""
    if not configured:
        raise NotConfigured("Deployments are not configured: set VERIFICATION_SECRET.",
                            details={"variable": "VERIFICATION_SECRET"})
    if not hmac.compare_digest(given.encode("utf-8"), configured.encode("utf-8")):
        raise Forbidden("The secret does not match.", code="invalid_secret")


def submit(body: dict[str, Any], endpoint: str, *, config: dict[str, Any], registry: Any, github: Any,
           enqueue: Callable[[int], Any], resolver: Resolver = system_resolver) -> dict[str, Any]:
    """Store a `/task` (endpoint "task") or `/revise` request and queue its round; the answer to send.

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
                task = _task_for(body)
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


def _task_for(body: dict[str, Any]) -> DeployTask:
    task = DeployTask.get_or_none(DeployTask.name == body["task"])
    if task is not None:
        return task
    if body["round"] != 1:
        raise Conflict(f"Task {body['task']!r} has no finished earlier round: send round 1 to POST /task first.",
                       code="no_finished_round")
    try:
        with database.atomic():
            return DeployTask.create(id="dt_" + uuid.uuid4().hex[:20], name=body["task"],
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


# -- reading tasks ----------------------------------------------------------------------------------------


def list_tasks(*, status: str | None = None, email: str | None = None, limit: int = 20,
               cursor: str | None = None) -> dict[str, Any]:
    """Tasks, newest first, `limit` at a time; `next_cursor` continues the list."""
    query = DeployTask.select().order_by(DeployTask.created_at.desc(), DeployTask.id.desc())
    if status:
        query = query.where(DeployTask.status == status)
    if email:
        query = query.where(DeployTask.email == email.strip().lower())
    if cursor:
        created, task_id = decode_cursor(cursor, moment, matching(TASK_ID))
        query = query.where((DeployTask.created_at < created)
                            | ((DeployTask.created_at == created) & (DeployTask.id < task_id)))
    with database.connection_context():
        tasks = list(query.limit(limit + 1))
    more = len(tasks) > limit
    tasks = tasks[:limit]
    next_cursor = encode_cursor(tasks[-1].created_at, tasks[-1].id) if more else None
    return {"tasks": [task_summary(t) for t in tasks], "next_cursor": next_cursor}


def get_task(task_id: str) -> dict[str, Any]:
    """A task with every round, its stages, timings, URLs, commit and errors; 404 if unknown."""
    with database.connection_context():
        task = DeployTask.get_or_none(DeployTask.id == task_id)
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


# -- running rounds ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    provider: str | None = None
    attempts: int = 3
    retry_s: float = 2.0
    lease_s: float = 60.0
    pages_wait_s: float = 300.0
    pages_poll_s: float = 5.0
    notify_deadline_s: float = 600.0
    notify_backoff_s: float = 1.0
    allow_hosts: tuple[str, ...] = ()
    owner: str = ""
    max_tokens: int | None = None
    limits: Limits = Limits()

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Settings":
        return cls(provider=config.get("DEPLOY_PROVIDER") or None, attempts=max(1, config["DEPLOY_ATTEMPTS"]),
                   retry_s=config["DEPLOY_RETRY_S"], lease_s=config["DEPLOY_LEASE_S"],
                   pages_wait_s=config["PAGES_WAIT_S"], pages_poll_s=config["PAGES_POLL_S"],
                   notify_deadline_s=config["NOTIFY_DEADLINE_S"], notify_backoff_s=config["NOTIFY_BACKOFF_S"],
                   allow_hosts=tuple(config.get("NOTIFY_ALLOW_HOSTS") or ()), owner=config.get("GITHUB_OWNER") or "",
                   max_tokens=config.get("DEPLOY_MAX_TOKENS") or None, limits=Limits.from_config(config))


class Lease:
    """A worker's claim on a round, renewed by a heartbeat thread until released."""

    def __init__(self, round_id: int, owner: str, seconds: float):
        self.round_id, self.owner, self.seconds = round_id, owner, seconds
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{round_id}", daemon=True)

    @classmethod
    def claim(cls, round_id: int, seconds: float) -> "Lease | None":
        """The lease on a round that is not final and not held by a live worker, or None."""
        owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        now = utcnow()
        with database.connection_context():
            claimed = (DeployRound.update(lease_owner=owner, lease_until=now + timedelta(seconds=seconds),
                                          runs=DeployRound.runs + 1, updated_at=now,
                                          started_at=fn.COALESCE(DeployRound.started_at, now))
                       .where(DeployRound.id == round_id, DeployRound.status.not_in(FINAL),
                              DeployRound.lease_until.is_null() | (DeployRound.lease_until < now))
                       .execute())
        if not claimed:
            return None
        lease = cls(round_id, owner, seconds)
        lease._thread.start()
        return lease

    def check(self) -> None:
        if self.lost:
            raise LeaseLost(f"round {self.round_id} was taken over by another worker")

    def release(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with database.connection_context():
            (DeployRound.update(lease_owner=None, lease_until=None)
             .where(DeployRound.id == self.round_id, DeployRound.lease_owner == self.owner).execute())

    def _beat(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                with database.connection_context():
                    renewed = (DeployRound.update(lease_until=utcnow() + timedelta(seconds=self.seconds))
                               .where(DeployRound.id == self.round_id, DeployRound.lease_owner == self.owner)
                               .execute())
            except Exception:  # a busy database: the next beat tries again
                log.warning("heartbeat of round %s failed", self.round_id, exc_info=True)
                continue
            if not renewed:
                self.lost = True
                return


@dataclass
class Run:
    """One worker's pass over a round: the rows as last written, and the lease."""

    round: DeployRound
    task: DeployTask
    lease: Lease


class Pipeline:
    """Runs rounds. Made once per process with its clients; `run` is the queue job's body."""

    def __init__(self, settings: Settings, *, gateway: Any, registry: Any, github: Any,
                 secrets: list[str] | None = None, sleep: Callable[[float], None] = time.sleep,
                 resolver: Resolver = system_resolver):
        self.settings = settings
        self.gateway = gateway
        self.registry = registry
        self.github = github
        self.repos = Repos(github) if github is not None else None
        self.secrets = list(secrets or [])
        self.sleep = sleep
        self.resolver = resolver

    # -- the job ----------------------------------------------------------------------------------------

    def run(self, round_id: int) -> str | None:
        """Run (or resume) a round to done or failed; None when another worker holds it or it is final."""
        lease = Lease.claim(round_id, self.settings.lease_s)
        if lease is None:
            log.info("round %s is final or held by another worker; skipped", round_id)
            return None
        try:
            with database.connection_context():
                round_ = DeployRound.get_by_id(round_id)
                task = DeployTask.get_by_id(round_.task_id)
            run = Run(round_, task, lease)
            start = STAGES.index(round_.stage_done) + 1 if round_.stage_done else 0
            for stage in STAGES[start:]:
                if not self._stage(run, stage):
                    return "failed"
            self._finish(run, "done")
            log.info("round %s of task %s is done: %s", round_.round, task.id, round_.commit_sha)
            return "done"
        except LeaseLost as exc:
            log.warning("%s", exc)
            return None
        finally:
            lease.release()

    def sweep(self) -> list[int]:
        """Rounds that are not final and whose worker is gone (lease ran out, or queued and never
        started), each handed out at most once per lease period."""
        now = utcnow()
        stale = now - timedelta(seconds=self.settings.lease_s)
        orphaned = ((DeployRound.lease_until.is_null() & (DeployRound.updated_at < stale))
                    | (DeployRound.lease_until < now))
        fresh = DeployRound.requeued_at.is_null() | (DeployRound.requeued_at < stale)
        picked = []
        with database.connection_context():
            candidates = [r.id for r in DeployRound.select(DeployRound.id)
                          .where(DeployRound.status.not_in(FINAL), orphaned, fresh)]
            for round_id in candidates:
                if DeployRound.update(requeued_at=now).where(DeployRound.id == round_id, fresh).execute():
                    picked.append(round_id)
        if picked:
            log.warning("resuming rounds whose worker is gone: %s", picked)
        return picked

    # -- stages -------------------------------------------------------------------------------------------

    def _stage(self, run: Run, stage: str) -> bool:
        """Run one stage with its retries; False when the round failed."""
        info = dict(run.round.stages.get(stage) or {})
        info.setdefault("started_at", isoformat(utcnow()))
        self._save(run, stage, info, status=stage)
        self._set_task(run, status=stage)
        handler = getattr(self, f"_{stage}")
        while True:
            run.lease.check()
            if stage != "notifying":  # the notifier counts its own attempts (one per request)
                info["attempts"] = info.get("attempts", 0) + 1
                self._save(run, stage, info)
            try:
                handler(run, info)
            except LeaseLost:
                raise
            except Exception as exc:  # every failure is recorded on the round, none escapes the job
                message, retry = self._describe(exc)
                info["error"] = message
                if isinstance(exc, InvalidFileSet):
                    info["feedback"] = message
                if not retry or stage == "notifying" or info["attempts"] >= self.settings.attempts:
                    self._fail(run, stage, info, message)
                    return False
                log.warning("round %s: %s attempt %s failed: %s", run.round.id, stage, info["attempts"], message)
                wait = self._plan_wait(info, self.settings.retry_s * 2 ** (info["attempts"] - 1))
                self._save(run, stage, info, last_error=f"{stage}: {message}")
                self._wait(run, wait)
                continue
            finished = utcnow()
            info["finished_at"] = isoformat(finished)
            info["seconds"] = round((finished - parse_iso(info["started_at"])).total_seconds(), 3)
            self._save(run, stage, info, stage_done=stage)
            return True

    def _generating(self, run: Run, info: dict[str, Any]) -> None:
        round_, task = run.round, run.task
        attachments = load_attachments(round_.attachments, self.settings.allow_hosts)
        current: dict[str, bytes] = {}
        if round_.round > 1:
            repo = self._repo(task)
            head = self._require_repos().head(repo)
            current = self._require_repos().read_files(repo, head) if head else {}
        routes = self.registry.plan(self.settings.provider)
        vision = routes[0].provider.name in VISION_PROVIDERS
        brief = Brief(task.name, round_.round, round_.brief, round_.checks, attachments, current)
        request = build_request(brief, vision=vision, feedback=info.get("feedback"),
                                max_tokens=self.settings.max_tokens)
        answer = self.gateway.complete(request, routes)
        run.lease.check()
        file_set = parse_file_set(answer.text, self.settings.limits, secrets=self.secrets, existing=current)
        file_set.files = complete_pages(file_set.files, title=file_set.title or task.name, description=round_.brief)
        file_set.provider, file_set.model = answer.provider, answer.model
        info["model"] = f"{answer.provider}/{answer.model}"
        info.pop("feedback", None)
        self._write(run, files=file_set.to_dict())

    def _committing(self, run: Run, info: dict[str, Any]) -> None:
        repos, round_ = self._require_repos(), run.round
        repo = self._ensure_repo(run)
        files = self._files(run, repo)
        head = repos.head(repo)
        if round_.commit_sha and head == round_.commit_sha:
            pass  # committed and pushed before an interruption
        elif round_.commit_sha and head == info.get("parent"):
            repos.move_branch(repo, round_.commit_sha)
        else:
            message = f"Round {round_.round}: {(round_.files or {}).get('title') or run.task.name}\n\n" \
                      f"{round_.brief[:2000]}"
            sha = repos.commit_files(repo, files, message, parent=head, keep_existing=round_.round > 1)
            info["parent"] = head
            self._save(run, "committing", info, commit_sha=sha)
            repos.move_branch(repo, sha)
        self._write(run, repo_url=repo.html_url,
                    file_list=[{"path": p, "size": len(d)} for p, d in sorted(files.items())])

    def _publishing(self, run: Run, info: dict[str, Any]) -> None:
        repos, round_ = self._require_repos(), run.round
        repo = self._repo(run.task)
        site = repos.enable_pages(repo)
        pages_url = site.get("html_url") or run.task.pages_url or _predicted_pages_url(repo)
        self._write(run, pages_url=pages_url)
        self._set_task(run, pages_url=pages_url)
        deadline = parse_iso(info["started_at"]) + timedelta(seconds=self.settings.pages_wait_s)
        while True:
            run.lease.check()
            build = repos.latest_pages_build(repo)
            ours = build is None or build.get("commit") == round_.commit_sha
            if ours and (build is None or build.get("status") == "built") and self._answers_200(pages_url):
                info["polls"] = info.get("polls", 0) + 1
                return
            if ours and build is not None and build.get("status") == "errored":
                reason = (build.get("error") or {}).get("message")
                info["warning"] = f"GitHub Pages could not build the commit: {reason}"
                return
            info["polls"] = info.get("polls", 0) + 1
            remaining = (deadline - utcnow()).total_seconds()
            if remaining <= 0:
                info["warning"] = (f"The Pages URL did not answer 200 within PAGES_WAIT_S "
                                   f"({self.settings.pages_wait_s:g} s); notified anyway.")
                log.warning("round %s: %s", round_.id, info["warning"])
                return
            self._wait(run, min(self.settings.pages_poll_s, remaining))

    def _notifying(self, run: Run, info: dict[str, Any]) -> None:
        round_, task = run.round, run.task
        payload = {"email": round_.email, "task": task.name, "round": round_.round, "nonce": round_.nonce,
                   "repo_url": task.repo_url, "commit_sha": round_.commit_sha, "pages_url": round_.pages_url}
        deadline = parse_iso(info["started_at"]) + timedelta(seconds=self.settings.notify_deadline_s)
        attempts = round_.notify_attempts
        while True:
            run.lease.check()
            attempts += 1
            info["attempts"] = attempts
            self._save(run, "notifying", info, notify_attempts=attempts)
            outcome = self._post(round_.evaluation_url, payload)
            if outcome is None:
                self._write(run, notified_at=utcnow())
                info.pop("error", None)
                return
            info["error"] = outcome
            remaining = (deadline - utcnow()).total_seconds()
            if remaining <= 0:
                raise PermanentFailure(f"evaluation_url did not answer 200 within NOTIFY_DEADLINE_S "
                                       f"({self.settings.notify_deadline_s:g} s) after {attempts} attempts; "
                                       f"last: {outcome}.")
            wait = self._plan_wait(info, min(self.settings.notify_backoff_s * 2 ** (attempts - 1), remaining))
            self._save(run, "notifying", info)
            self._wait(run, wait)

    # -- helpers ---------------------------------------------------------------------------------------------

    def _files(self, run: Run, repo: Repo) -> dict[str, bytes]:
        if not run.round.files:
            raise PermanentFailure("The generated file set is missing; the round must be submitted again.")
        attachments = load_attachments(run.round.attachments, self.settings.allow_hosts)
        files = repo_files(FileSet.from_dict(run.round.files), attachments, task=run.task.name, owner=repo.owner,
                           repo=repo.name, repo_url=repo.html_url,
                           pages_url=run.task.pages_url or _predicted_pages_url(repo))
        leaked = find_secret(files, self.secrets)
        if leaked:
            raise PermanentFailure(f"{leaked} contains what looks like a secret; it was not committed.")
        return files

    def _ensure_repo(self, run: Run) -> Repo:
        task = run.task
        if task.repo_name:
            return self._repo(task)
        repos = self._require_repos()
        name = repo_name_for(task.name, hashlib.sha256(task.id.encode()).hexdigest()[:6])
        title = (run.round.files or {}).get("title") or task.name
        repo = repos.create_repo(name, owner=self.settings.owner, description=f"{title} (task {task.name})")
        self._set_task(run, repo_owner=repo.owner, repo_name=repo.name, repo_url=repo.html_url,
                       default_branch=repo.default_branch)
        return repo

    def _repo(self, task: DeployTask) -> Repo:
        if not task.repo_name:
            raise PermanentFailure("The task has no repository yet.")
        return Repo(task.repo_owner, task.repo_name, task.repo_url, task.default_branch or "main")

    def _require_repos(self) -> Repos:
        require_client(self.github, NEEDS_GITHUB)
        return self.repos

    def _answers_200(self, url: str) -> bool:
        try:
            response = guarded_request("GET", url, allow_hosts=self.settings.allow_hosts, resolver=self.resolver,
                                       timeout=(5, 15), max_bytes=5_000_000)
        except (requests.RequestException, BlockedURL) as exc:
            log.info("Pages URL %s not reachable yet: %s", url, type(exc).__name__)
            return False
        return response.status_code == 200

    def _post(self, url: str, payload: dict[str, Any]) -> str | None:
        """None when the evaluator accepted `payload` (any 2xx), else what went wrong."""
        try:
            response = guarded_request("POST", url, json=payload, allow_hosts=self.settings.allow_hosts,
                                       resolver=self.resolver, timeout=(5, 30), max_bytes=1_000_000)
        except BlockedURL as exc:
            raise PermanentFailure(f"evaluation_url is not allowed: {exc.message}") from None
        except requests.RequestException as exc:
            return f"{type(exc).__name__} sending to evaluation_url"
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}"

    def _describe(self, exc: Exception) -> tuple[str, bool]:
        """(message, retryable) of a stage failure."""
        if isinstance(exc, (PermanentFailure, NotConfigured, Forbidden, BlockedURL)):
            return exc.message, False
        if isinstance(exc, APIError):
            return exc.message, True
        if isinstance(exc, requests.RequestException):
            return f"{type(exc).__name__}: a request failed", True
        log.exception("unexpected error in a deployment stage")
        return f"Internal error: {type(exc).__name__}: {exc}", True

    @staticmethod
    def _plan_wait(info: dict[str, Any], seconds: float) -> float:
        """`seconds`, noted in the stage's `waits` (the retry waits, in order) before waiting them."""
        info.setdefault("waits", []).append(round(seconds, 3))
        return seconds

    def _wait(self, run: Run, seconds: float) -> None:
        """Sleep, in short steps so a lost lease is noticed."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            run.lease.check()
            self.sleep(min(left, 1.0))

    def _save(self, run: Run, stage: str, info: dict[str, Any], **fields: Any) -> None:
        self._write(run, stages={**run.round.stages, stage: dict(info)}, **fields)

    def _write(self, run: Run, **fields: Any) -> None:
        """Update the round while this worker holds it; `LeaseLost` when it does not any more."""
        fields["updated_at"] = utcnow()
        with database.connection_context():
            written = (DeployRound.update(**fields)
                       .where(DeployRound.id == run.round.id, DeployRound.lease_owner == run.lease.owner).execute())
        if not written:
            run.lease.lost = True
            run.lease.check()
        for name, value in fields.items():
            setattr(run.round, name, value)

    def _set_task(self, run: Run, **fields: Any) -> None:
        fields["updated_at"] = utcnow()
        status = fields.pop("status", None)
        with database.connection_context():
            if fields:
                DeployTask.update(**fields).where(DeployTask.id == run.task.id).execute()
            if status:  # the task shows its latest round's state
                (DeployTask.update(status=status, updated_at=fields["updated_at"])
                 .where(DeployTask.id == run.task.id, DeployTask.rounds <= run.round.round).execute())
        for name, value in fields.items():
            setattr(run.task, name, value)

    def _fail(self, run: Run, stage: str, info: dict[str, Any], message: str) -> None:
        info["finished_at"] = isoformat(utcnow())
        log.warning("round %s of task %s failed at %s: %s", run.round.round, run.task.id, stage, message)
        self._save(run, stage, info, status="failed", last_error=f"{stage}: {message}", finished_at=utcnow())
        self._set_task(run, status="failed")

    def _finish(self, run: Run, status: str) -> None:
        self._write(run, status=status, finished_at=utcnow(), files=None)
        self._set_task(run, status=status)


def _predicted_pages_url(repo: Repo) -> str | None:
    """github.com's Pages URL for a repo (None elsewhere: Enterprise hosts differ)."""
    if not repo.html_url.startswith("https://github.com/"):
        return None
    if repo.name.lower() == f"{repo.owner.lower()}.github.io":
        return f"https://{repo.owner.lower()}.github.io/"
    return f"https://{repo.owner.lower()}.github.io/{repo.name}/"
