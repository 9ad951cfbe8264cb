"""One usage row per LLM call (every attempt the gateway makes, failed ones with zero tokens), with
the key, client and user ids and request id of the request that made it, and its cost from the
price table. Rows are written off the request path in batches (`app.core.batches`); daily-token
and monthly-budget limits, `GET /usage` and `GET /v1/key/info` read them."""
from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from typing import Any, Iterable, NamedTuple

from peewee import Case, fn

from app.core.caller import EVERYONE, calling_key
from app.core.clock import utcnow
from app.core.db import database, delete_older_than, insert_rows
from app.keys.models import UsageRecord
from app.keys.prices import PriceTable
from app.llm.usage import UsageEvent

log = logging.getLogger("aiserver.keys.usage")
GROUPS = ("key", "provider", "model", "day")
PRUNE_BATCH = 5000


def usage_row(event: UsageEvent, prices: PriceTable, now: datetime | None = None) -> dict[str, Any]:
    """The row for one call, attributed to the request's caller (none in the worker)."""
    caller = calling_key()
    return {"created_at": now or utcnow(), "key_id": caller and caller.key_id,
            "client_id": caller and caller.client_id, "user_id": caller and caller.user_id,
            "provider": event.provider, "model": event.model, "prompt_tokens": event.prompt_tokens,
            "completion_tokens": event.completion_tokens, "reasoning_tokens": event.reasoning_tokens,
            "cached_read_tokens": event.cached_tokens,
            "cache_write_tokens": event.cache_write_tokens, "cost_usd": prices.cost_of(event),
            "priced": prices.price(event.model) is not None, "latency_ms": event.latency_ms, "status": event.outcome,
            "request_id": caller and caller.request_id}


def write_rows(rows: list[dict[str, Any]]) -> None:
    with database.connection_context(), database.atomic():
        insert_rows(UsageRecord, rows)


class Spent(NamedTuple):
    tokens: int
    cost_usd: float
    cached_read_tokens: int  # of the tokens, prompt tokens read from the vendor's prompt cache
    cache_write_tokens: int  # of the tokens, prompt tokens written to it


def spent(key_id: str, since: datetime) -> Spent:
    """Tokens and USD the key has used since `since` (naive UTC), and its cached prompt tokens."""
    with database.connection_context():
        sums: Any = (UsageRecord
                        .select(fn.COALESCE(fn.SUM(UsageRecord.prompt_tokens + UsageRecord.completion_tokens), 0),
                                fn.COALESCE(fn.SUM(UsageRecord.cost_usd), 0),
                                fn.COALESCE(fn.SUM(UsageRecord.cached_read_tokens), 0),
                                fn.COALESCE(fn.SUM(UsageRecord.cache_write_tokens), 0))
                        .where((UsageRecord.key_id == key_id) & (UsageRecord.created_at >= since))
                        .tuples().get())
    return Spent(int(sums[0]), float(sums[1]), int(sums[2]), int(sums[3]))


def day_start(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def month_start(now: datetime) -> datetime:
    return day_start(now).replace(day=1)


def summarize(reader: Any, key_id: str | None, since: date, until: date, group_by: Iterable[str]
              ) -> list[dict[str, Any]]:
    """Calls, tokens and cost from `since` to `until` (both UTC days, inclusive), summed per
    `group_by` (any of key, provider, model, day). `reader` is what the caller may see (a key id or
    EVERYONE); `key_id` narrows an admin's view to one key."""
    columns: dict[str, Any] = {"key": UsageRecord.key_id, "provider": UsageRecord.provider, "model": UsageRecord.model,
               "day": fn.DATE(UsageRecord.created_at)}
    groups = [name for name in GROUPS if name in set(group_by)]
    selected = [columns[name].alias(name) for name in groups]
    sums: list[Any] = [fn.COUNT(UsageRecord.id).alias("calls"),
            *(fn.COALESCE(fn.SUM(getattr(UsageRecord, name)), 0).alias(name)
              for name in ("prompt_tokens", "completion_tokens", "reasoning_tokens", "cached_read_tokens",
                           "cache_write_tokens", "cost_usd")),
            fn.COALESCE(fn.SUM(Case(None, ((UsageRecord.priced == False, 1),), 0)), 0)  # noqa: E712
            .alias("unpriced_calls")]
    query = UsageRecord.select(*selected, *sums).where(
        (UsageRecord.created_at >= datetime.combine(since, datetime.min.time()))
        & (UsageRecord.created_at < datetime.combine(until + timedelta(days=1), datetime.min.time())))
    if reader is not EVERYONE:
        query = query.where(UsageRecord.key_id == reader)
    elif key_id:
        query = query.where(UsageRecord.key_id == key_id)
    if groups:
        query = query.group_by(*(columns[name] for name in groups)).order_by(*(columns[name] for name in groups))
    with database.connection_context():
        rows: list[Any] = list(query.dicts())
    for row in rows:
        if "day" in row:
            row["day"] = str(row["day"])[:10]
        row["cost_usd"] = round(float(row["cost_usd"]), 9)
        row["total_tokens"] = int(row["prompt_tokens"]) + int(row["completion_tokens"])
    return [row for row in rows if row["calls"]]


def prune(retention_days: int, now: datetime | None = None, batch: int = PRUNE_BATCH) -> int:
    """Delete rows older than `retention_days`; returns how many were deleted."""
    return delete_older_than(UsageRecord, UsageRecord.created_at, (now or utcnow()) - timedelta(days=retention_days),
                             batch)
