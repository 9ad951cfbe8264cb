"""The call log: one row per request to an LLM front door, with what answered, every attempt on the
way, status, timings, tokens and cost, and (LOG_PAYLOADS) its bodies.

A request to a front door (`FRONT_DOORS`) opens a `CallInProgress` (`app.calls.capture`); the
gateway's `record` callback, which already gets a `UsageEvent` after every attempt (the same events
the usage rows are made of), hands each one to `CallLog.observe`, which adds it to the call of the
current context (a context variable: it follows a stream into the greenlet that pumps it). When the
response is closed (a stream's last byte) the call is queued whole; the row, the payloads'
redaction, cutting and compression are made by the background writer (`app.core.batches`), never on
the request's path.

Offsets are from the request's start: an attempt's `offset_ms` is when it began, `ttft_ms` when the
first item of a streamed answer arrived. `fallbacks` counts the moves to another deployment (a
retry of the same one is not a fallback).
"""
from __future__ import annotations

import contextvars
import functools
import json
import re
import time
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable

from app.calls.models import CallRecord
from app.core.batches import BackgroundBatches
from app.core.caller import owned_by
from app.core.clock import isoformat, utcnow
from app.core.db import change_in_batches, database, delete_older_than, insert_rows
from app.core.errors import NotFound
from app.core.paging import Keyset, moment, row_id
from app.llm.usage import UsageEvent

# The routes whose requests are logged: every one that answers through the gateway (token counts,
# which answer nothing and cost nothing, are not).
FRONT_DOORS = frozenset({
    "/v1/chat/completions", "/api/v1/chat/completions", "/v1/embeddings", "/api/v1/embeddings",
    "/v1/responses", "/api/v1/responses", "/v1/messages", "/anthropic/v1/messages", "/v1/ask", "/api/v1/ask",
    "/chat", "/chat/{provider}", "/chat/gist"})
PAYLOAD_MODES = ("off", "errors", "all")
CUT_MARK = "\n[cut: LOG_PAYLOADS_MAX_BYTES reached]"
PAYLOAD_COLUMNS = (CallRecord.request_payload, CallRecord.response_payload)
LISTED = [column for column in CallRecord._meta.sorted_fields if column not in PAYLOAD_COLUMNS]
NEWEST_FIRST = Keyset(CallRecord.created_at, CallRecord.id, readers=(moment, row_id))

_current: contextvars.ContextVar["CallInProgress | None"] = contextvars.ContextVar("call", default=None)


@functools.lru_cache(maxsize=512)
def front_door_of(rule: str | None) -> str | None:
    """The front door a route rule belongs to ("/chat/<provider:provider>" is "/chat/{provider}"), or None."""
    name = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule or "")
    return name if name in FRONT_DOORS else None


@dataclass
class CallInProgress:
    """One request's call as it happens: its attempts as the gateway reports them, then (`answered`)
    what the response said and who asked."""

    front_door: str
    created_at: datetime = field(default_factory=utcnow)
    started: float = field(default_factory=time.perf_counter)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    answers: list[tuple[UsageEvent, int]] = field(default_factory=list)  # (event, offset ms) of each answer
    fields: dict[str, Any] = field(default_factory=dict)  # key, client, user, request id, requested model
    status: int = 0
    error_type: str | None = None
    streamed: bool = False
    latency_ms: int = 0
    request_body: bytes | None = None
    response_body: bytes | None = None

    def observe(self, event: UsageEvent) -> None:
        offset = max(0, round((time.perf_counter() - self.started) * 1000) - event.latency_ms)
        failed = event.outcome == "attempt_failed"
        self.attempts.append({
            "provider": event.provider, "model": event.model, "deployment": event.deployment or None,
            "offset_ms": offset, "duration_ms": event.latency_ms, "status": event.status if failed else 200,
            "error_type": (event.error_type or "failed") if failed else (None if event.outcome == "ok"
                                                                          else event.outcome)})
        if not failed:
            self.answers.append((event, offset))

    def answered(self, status: int, error_type: str | None, streamed: bool, fields: dict[str, Any]) -> None:
        self.status, self.error_type, self.streamed, self.fields = status, error_type, streamed, fields

    @property
    def failed(self) -> bool:
        """Answered with an error status, or a stream that broke or was left."""
        return self.status >= 400 or bool(self.error_type) or any(event.outcome != "ok" for event, _ in self.answers)

    def closed(self) -> None:
        self.latency_ms = round((time.perf_counter() - self.started) * 1000)

    def row(self, cost: Callable[[UsageEvent], float]) -> dict[str, Any]:
        """The call's row: what answered is the last answer; tokens and cost are summed over every
        answer (a request that asks twice, as `/chat/gist` may, is one call)."""
        last = self.answers[-1][0] if self.answers else None
        streams = [(event, offset) for event, offset in self.answers if event.first_item_ms is not None]
        interrupted = next((event.outcome for event, _ in self.answers if event.outcome != "ok"), None)
        return {
            "created_at": self.created_at, "front_door": self.front_door, **self.fields,
            "provider": last and last.provider, "model": last and last.model, "deployment": last and last.deployment,
            "status": self.status, "error_type": self.error_type or interrupted, "latency_ms": self.latency_ms,
            "ttft_ms": streams[0][1] + (streams[0][0].first_item_ms or 0) if self.streamed and streams else None,
            **{name: sum(getattr(event, name) for event, _ in self.answers)
               for name in ("prompt_tokens", "cached_tokens", "completion_tokens", "reasoning_tokens")},
            "cost_usd": round(sum(cost(event) for event, _ in self.answers), 9), "streamed": self.streamed,
            "fallbacks": sum(1 for before, after in zip(self.attempts, self.attempts[1:])
                             if before["deployment"] != after["deployment"]),
            "attempts": self.attempts}


class CallLog:
    """The factory's one call log: `begin` and `finish` are called by the request hooks
    (`app.calls.capture`), `observe` by the gateway's `record` callback."""

    def __init__(self, config: dict[str, Any], cost: Callable[[UsageEvent], float], redact: Callable[[str], str]):
        """`cost` prices an answer's event (the price table's); `redact` scrubs configured secrets and
        anything shaped like a key from a payload (the log redaction filter's)."""
        self.enabled = config["CALL_LOG"]
        self.payloads = config["LOG_PAYLOADS"] if self.enabled else "off"
        self.max_bytes = config["LOG_PAYLOADS_MAX_BYTES"]
        self.cost = cost
        self.redact = redact
        self.rows = BackgroundBatches(self.write, config["USAGE_FLUSH_S"], name="call-log rows")

    def begin(self, front_door: str | None) -> CallInProgress | None:
        """Open the current request's call (None: not a front door, or the log is off)."""
        call = CallInProgress(front_door) if front_door and self.enabled else None
        _current.set(call)
        return call

    @staticmethod
    def end() -> None:
        """Forget the current context's call (its stream's greenlet keeps its own reference)."""
        _current.set(None)

    @staticmethod
    def observe(event: UsageEvent) -> None:
        call = _current.get()
        if call is not None:
            call.observe(event)

    def finish(self, call: CallInProgress) -> None:
        """Queue a closed call (its row is made by the writer), with its bodies if LOG_PAYLOADS keeps them."""
        call.closed()
        if not (self.payloads == "all" or (self.payloads == "errors" and call.failed)):
            call.request_body = call.response_body = None
        self.rows.add(call)

    def write(self, calls: list[CallInProgress]) -> None:
        rows = [{**call.row(self.cost), "request_payload": self.packed(call.request_body),
                 "response_payload": self.packed(call.response_body)} for call in calls]
        with database.connection_context(), database.atomic():
            insert_rows(CallRecord, rows)

    def packed(self, body: bytes | None) -> bytes | None:
        """A body as stored: secrets redacted, then cut at LOG_PAYLOADS_MAX_BYTES, then zlib-compressed."""
        if body is None:
            return None
        text = self.redact(body.decode("utf-8", "replace"))
        raw = text.encode()
        if len(raw) > self.max_bytes:
            raw = raw[:self.max_bytes].decode("utf-8", "ignore").encode() + CUT_MARK.encode()
        return zlib.compress(raw)


def unpacked(blob: bytes | None) -> Any:
    """A stored body: its JSON value when it is JSON, else its text (a stream's events, a cut body)."""
    if blob is None:
        return None
    text = zlib.decompress(bytes(blob)).decode("utf-8", "replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def list_calls(reader: Any, filters: dict[str, Any], limit: int, cursor: str | None) -> dict[str, Any]:
    """The calls `reader` may see (a key id, None for calls made without a key, or EVERYONE), newest
    first, narrowed by `filters` (key_id, model, provider, status, since, until, request_id)."""
    query = CallRecord.select(*LISTED).where(owned_by(CallRecord.key_id, reader), *conditions(filters))
    with database.connection_context():
        rows, next_cursor = Keyset.split(list(NEWEST_FIRST.page(query, limit, cursor)), limit,
                                         key=lambda row: (row.created_at, row.id))
    return {"data": [call_view(row) for row in rows], "next_cursor": next_cursor}


def conditions(filters: dict[str, Any]) -> list[Any]:
    found = []
    if filters.get("key_id"):
        found.append(CallRecord.key_id == filters["key_id"])
    if filters.get("model"):
        found.append((CallRecord.requested_model == filters["model"]) | (CallRecord.model == filters["model"]))
    if filters.get("provider"):
        found.append(CallRecord.provider == filters["provider"])
    if filters.get("status") == "error":
        found.append(CallRecord.status >= 400)
    elif filters.get("status"):
        found.append(CallRecord.status == int(filters["status"]))
    if filters.get("since"):
        found.append(CallRecord.created_at >= filters["since"])
    if filters.get("until"):
        found.append(CallRecord.created_at <= filters["until"])
    if filters.get("request_id"):
        found.append(CallRecord.request_id == filters["request_id"])
    return found


def get_call(reader: Any, call_id: int) -> dict[str, Any]:
    """One call `reader` may see, with its payloads (null when none were kept); 404 otherwise (another
    key's call is as absent as one that never was)."""
    with database.connection_context():
        row = CallRecord.get_or_none((CallRecord.id == call_id) & owned_by(CallRecord.key_id, reader))
    if row is None:
        raise NotFound(f"No call {call_id}.", code="call_not_found")
    payload = None
    if row.request_payload is not None or row.response_payload is not None:
        payload = {"request": unpacked(row.request_payload), "response": unpacked(row.response_payload)}
    return {**call_view(row), "payload": payload}


def call_view(row: CallRecord) -> dict[str, Any]:
    return {"id": row.id, "request_id": row.request_id, "created_at": isoformat(row.created_at),
            "key_id": row.key_id, "key_name": row.key_name, "client_id": row.client_id, "user_id": row.user_id,
            "front_door": row.front_door, "requested_model": row.requested_model, "provider": row.provider,
            "model": row.model, "deployment": row.deployment, "status": row.status, "error_type": row.error_type,
            "latency_ms": row.latency_ms, "ttft_ms": row.ttft_ms, "prompt_tokens": row.prompt_tokens,
            "cached_tokens": row.cached_tokens, "completion_tokens": row.completion_tokens,
            "reasoning_tokens": row.reasoning_tokens, "cost_usd": row.cost_usd, "streamed": row.streamed,
            "fallbacks": row.fallbacks, "attempts": row.attempts}


def prune(call_days: int, payload_days: int, now: datetime | None = None) -> tuple[int, int]:
    """Drop the payloads older than `payload_days` and the calls older than `call_days`; returns (calls
    deleted, payloads dropped)."""
    now = now or utcnow()
    kept = CallRecord.request_payload.is_null(False) | CallRecord.response_payload.is_null(False)
    dropped = change_in_batches(
        CallRecord, (CallRecord.created_at < now - timedelta(days=payload_days)) & kept,
        lambda ids: CallRecord.update(request_payload=None, response_payload=None)
        .where(CallRecord.id.in_(ids)).execute())
    return delete_older_than(CallRecord, CallRecord.created_at, now - timedelta(days=call_days)), dropped
