"""Running deployment rounds in the worker (`Pipeline.run`); `intake` accepts them, `status` shows them.

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
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

import requests
from peewee import fn

from app.core.backoff import backoff_delay
from app.core.clock import isoformat, parse_iso, utcnow
from app.core.db import database
from app.core.errors import APIError, Forbidden, NotConfigured
from app.core.leases import Lease, LeaseLost
from app.core.tracing import OFF, Tracing, record_failure
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
from app.integrations.netguard import BlockedURL, Resolver, guarded_request, system_resolver

log = logging.getLogger("aiserver.deploy")

NEEDS_GITHUB = "create repositories and publish them with GitHub Pages"


class PermanentFailure(APIError):
    """A stage failure that retrying cannot fix."""

    status, type, code = 502, "upstream_error", "deploy_failed"


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


def claim_round(round_id: int, seconds: float) -> Lease | None:
    """The lease on a round that is not final and not held by a live worker, or None."""
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    lease = Lease(DeployRound, round_id, DeployRound.lease_owner, DeployRound.lease_until, owner, seconds)
    now = utcnow()
    with database.connection_context():
        claimed = (DeployRound.update(lease_owner=owner, lease_until=lease.expiry(), runs=DeployRound.runs + 1,
                                      updated_at=now, started_at=fn.COALESCE(DeployRound.started_at, now))
                   .where(DeployRound.id == round_id, DeployRound.status.not_in(FINAL),
                          DeployRound.lease_until.is_null() | (DeployRound.lease_until < now))
                   .execute())
    return lease.start() if claimed else None


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
                 resolver: Resolver = system_resolver, tracing: Tracing = OFF):
        """`tracing`: each run of a round is one trace, a span per stage (its LLM attempts inside)."""
        self.settings = settings
        self.gateway = gateway
        self.registry = registry
        self.github = github
        self.repos = Repos(github) if github is not None else None
        self.secrets = list(secrets or [])
        self.sleep = sleep
        self.resolver = resolver
        self.tracing = tracing

    # -- the job ----------------------------------------------------------------------------------------

    def run(self, round_id: int, origin: dict[str, str] | None = None) -> str | None:
        """Run (or resume) a round to done or failed; None when another worker holds it or it is final.
        `origin`: the trace context of the request that queued it, which the round's trace links to."""
        with self.tracing.span("deploy round", {"aiserver.deploy.round_id": round_id}, new_trace=True,
                               origin=origin) as span:
            outcome = self._run(round_id, span)
            span.set_attribute("aiserver.deploy.outcome", outcome or "skipped")
            return outcome

    def _run(self, round_id: int, span: Any) -> str | None:
        lease = claim_round(round_id, self.settings.lease_s)
        if lease is None:
            log.info("round %s is final or held by another worker; skipped", round_id)
            return None
        try:
            with database.connection_context():
                round_ = DeployRound.get_by_id(round_id)
                task = DeployTask.get_by_id(round_.task_id)
            run = Run(round_, task, lease)
            span.set_attributes({"aiserver.deploy.task_id": task.id, "aiserver.deploy.round": round_.round})
            start = STAGES.index(round_.stage_done) + 1 if round_.stage_done else 0
            for stage in STAGES[start:]:
                with self.tracing.span(f"deploy {stage}", {"aiserver.deploy.stage": stage}) as stage_span:
                    if not self._stage(run, stage, stage_span):
                        record_failure(span, "stage_failed", f"{stage} failed")
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

    def _stage(self, run: Run, stage: str, span: Any) -> bool:
        """Run one stage with its retries; False when the round failed. Each failed attempt is an event
        of the stage's `span`; the last, when the round fails, the span's error."""
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
                span.add_event("stage attempt failed", {"aiserver.attempt": info.get("attempts", 1),
                                                        "error.type": type(exc).__name__})
                info["error"] = message
                if isinstance(exc, InvalidFileSet):
                    info["feedback"] = message
                if not retry or stage == "notifying" or info["attempts"] >= self.settings.attempts:
                    record_failure(span, type(exc).__name__, message)  # the round's error, as /tasks shows it
                    self._fail(run, stage, info, message)
                    return False
                log.warning("round %s: %s attempt %s failed: %s", run.round.id, stage, info["attempts"], message)
                wait = self._plan_wait(info, backoff_delay(info["attempts"], self.settings.retry_s))
                self._save(run, stage, info, last_error=f"{stage}: {message}")
                self._wait(run, wait)
                continue
            finished = utcnow()
            info["finished_at"] = isoformat(finished)
            info["seconds"] = round((finished - _started_at(info)).total_seconds(), 3)
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
        deadline = _started_at(info) + timedelta(seconds=self.settings.pages_wait_s)
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
        deadline = _started_at(info) + timedelta(seconds=self.settings.notify_deadline_s)
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
            wait = self._plan_wait(info, backoff_delay(attempts, self.settings.notify_backoff_s, cap=remaining))
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
        return Repo(task.repo_owner or "", task.repo_name, task.repo_url or "", task.default_branch or "main")

    def _require_repos(self) -> Repos:
        require_client(self.github, NEEDS_GITHUB)  # a 503 naming GITHUB_TOKEN when there is no client
        assert self.repos is not None  # made with the client
        return self.repos

    def _answers_200(self, url: str | None) -> bool:
        if url is None:  # no Pages URL known yet
            return False
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


def _started_at(info: dict[str, Any]) -> datetime:
    """When a stage started (noted before it runs; now, if the note is unreadable)."""
    return parse_iso(info.get("started_at")) or utcnow()
