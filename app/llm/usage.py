"""Usage accounting off the hot path: LLM calls are counted in memory and added to the database in
batches, once a second, by one background flusher per process.

`record` is a deque append (`app.core.batches`), so a request pays nothing for being counted; the
flusher folds the batch into per-(day, provider, model, outcome) sums and upserts
them, adding to whatever other processes and instances wrote. A crash loses at most the last second
of counts, never a request. `totals` are the all-time sums of every instance together (the
`/metrics` endpoint shows each instance's own counters instead: `app.core.metrics`).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any, cast

from peewee import fn

from app.core.batches import BackgroundBatches
from app.core.db import database
from app.llm.models import UsageCounter

FIELDS = ("calls", "prompt_tokens", "completion_tokens", "latency_ms")


@dataclass(frozen=True)
class UsageEvent:
    provider: str
    model: str
    outcome: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: int = 0
    label: str = ""  # the model's /metrics label: `model` if configured, else "other" (callers mint no labels)
    first_item_ms: int | None = None  # a stream's time to its first item (the time to first token)
    reasoning_tokens: int = 0  # included in completion_tokens, as OpenAI counts them


class UsageRecorder:
    def __init__(self, flush_interval: float = 1.0):
        """`flush_interval` 0 means no background flusher: `flush()` is called by hand (tests)."""
        self.batches = BackgroundBatches(write_counters, flush_interval, name="usage counters")

    def record(self, event: UsageEvent) -> None:
        self.batches.add((datetime.now(timezone.utc).date(), event))

    def flush(self) -> int:
        """Add the pending counts to the database; returns how many calls were written."""
        return self.batches.flush()

    def stop(self) -> None:
        self.batches.stop()


def write_counters(batch: list[tuple[date, UsageEvent]]) -> None:
    """Fold a batch into per-(day, provider, model, outcome) sums and add them to the stored ones."""
    sums: dict[tuple, Counter] = {}
    for day, event in batch:
        totals = sums.setdefault((day, event.provider, event.label or event.model, event.outcome), Counter())
        totals.update(calls=1, prompt_tokens=event.prompt_tokens, completion_tokens=event.completion_tokens,
                      latency_ms=event.latency_ms)
    with database.connection_context(), database.atomic():
        # Sorted: every process locks the rows it adds to in the same order, so two flushes at once
        # queue up on PostgreSQL instead of deadlocking (one of a deadlocked pair would be aborted).
        for (day, provider, model, outcome), totals in sorted(sums.items(), key=lambda item: item[0]):
            row = {"day": day, "provider": provider, "model": model, "outcome": outcome,
                   **{name: totals[name] for name in FIELDS}}
            (UsageCounter.insert(**row)
             .on_conflict(conflict_target=[UsageCounter.day, UsageCounter.provider, UsageCounter.model,
                                           UsageCounter.outcome],
                          update={getattr(UsageCounter, name): getattr(UsageCounter, name) + totals[name]
                                  for name in FIELDS})
             .execute())


def totals() -> list[dict[str, Any]]:
    """All-time sums per provider, model and outcome."""
    with database.connection_context():
        query = (UsageCounter
                 .select(UsageCounter.provider, UsageCounter.model, UsageCounter.outcome,
                         *(fn.SUM(getattr(UsageCounter, name)).alias(name) for name in FIELDS))
                 .group_by(UsageCounter.provider, UsageCounter.model, UsageCounter.outcome)
                 .order_by(UsageCounter.provider, UsageCounter.model, UsageCounter.outcome)
                 .dicts())
        return cast(list[dict[str, Any]], list(query))
