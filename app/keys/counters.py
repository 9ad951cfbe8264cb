"""Counters that every worker and instance of a deployment shares, for the per-key limits: Redis when
REDIS_URL is set, else the database (the `limit_counter` table), never a process's memory (each
Gunicorn worker would count on its own: two workers admitted twice a key's rpm).

- `RedisCounters` / `DatabaseCounters`: `take` reserves a call's tokens and dollars against a key's
  tpm, daily tokens and monthly budget in one atomic step (refused when a counter is already at its
  limit), `add` settles them to what the call used (`app.keys.limits`).
- `DatabaseStorage`: flask-limiter's storage without Redis (`aiserver-database://`), a sliding
  window counter per limit (the requests-per-minute limit, the `/task` limits).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable

from limits.storage import Storage
from limits.storage.base import SlidingWindowCounterSupport, TimestampedSlidingWindow
from peewee import PeeweeException
from playhouse.pool import MaxConnectionsExceeded

from app.core.db import database, locked_row, write_transaction
from app.keys.models import LimitCounter


@dataclass(frozen=True)
class Claim:
    """A call's share of one counter: refused when the counter is already at `limit`."""

    name: str  # "tpm:<key>:<minute>", "day:<key>:<date>", "month:<key>:<month>"
    amount: float
    limit: float
    ttl: int  # seconds the counter lives once made
    seed: Callable[[], float] | None = None  # its start when absent: what usage rows already hold


class RedisCounters:
    """Counters as Redis keys (INCRBYFLOAT), checked and taken in one script."""

    TAKE = """
    for i, key in ipairs(KEYS) do
      local current = redis.call('GET', key)
      if not current then
        if ARGV[4 * i] == '1' then return -i end
        current = '0'
      end
      if tonumber(current) >= tonumber(ARGV[4 * i - 2]) then return i end
    end
    for i, key in ipairs(KEYS) do
      redis.call('INCRBYFLOAT', key, ARGV[4 * i - 3])
      if redis.call('TTL', key) < 0 then redis.call('EXPIRE', key, ARGV[4 * i - 1]) end
    end
    return 0
    """
    ADD = "if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('INCRBYFLOAT', KEYS[1], ARGV[1]) end"

    def __init__(self, client: Any, prefix: str):
        self.client = client
        self.prefix = prefix + ":spend:"
        self.take_script = client.register_script(self.TAKE)
        self.add_script = client.register_script(self.ADD)

    def take(self, claims: list[Claim]) -> Claim | None:
        """Add every claim's amount, or none: the first claim whose counter is at its limit, else None.
        An absent counter that has a seed is made from it first (SET NX: one of several makers wins)."""
        keys = [self.prefix + claim.name for claim in claims]
        args = [value for claim in claims for value in (claim.amount, claim.limit, claim.ttl, int(bool(claim.seed)))]
        for _ in range(len(claims) + 1):
            result = int(self.take_script(keys=keys, args=args))
            if result >= 0:
                return claims[result - 1] if result else None
            claim = claims[-result - 1]
            self.client.set(keys[-result - 1], claim.seed() if claim.seed else 0, nx=True, ex=claim.ttl)
        raise RuntimeError("limit counters kept vanishing")  # pragma: no cover: each seed is made at most once

    def add(self, name: str, amount: float) -> None:
        """Add `amount` (negative: give back) to a counter that still exists."""
        if amount:
            self.add_script(keys=[self.prefix + name], args=[amount])


class DatabaseCounters:
    """Counters as rows of `limit_counter`, checked and taken in one write transaction (SQLite's write
    lock, or the rows locked FOR UPDATE on PostgreSQL)."""

    def take(self, claims: list[Claim]) -> Claim | None:
        now = time.time()
        with database.connection_context(), write_transaction():
            current = {claim.name: locked_amount(claim.name, claim.ttl, now, claim.seed) for claim in claims}
            refused = next((claim for claim in claims if current[claim.name] >= claim.limit), None)
            if refused is None:
                for claim in claims:
                    LimitCounter.update(amount=LimitCounter.amount + claim.amount).where(
                        LimitCounter.name == claim.name).execute()
        return refused

    def add(self, name: str, amount: float) -> None:
        if amount:
            with database.connection_context():
                LimitCounter.update(amount=LimitCounter.amount + amount).where(
                    (LimitCounter.name == name) & (LimitCounter.expires_at > time.time())).execute()


def locked_amount(name: str, ttl: float, now: float, seed: Callable[[], float] | None = None) -> float:
    """The counter `name`, locked until the transaction ends; made (from `seed`, else 0) when absent
    or expired. Runs inside `write_transaction`."""
    row = locked_row(LimitCounter, name)
    if row is not None and row.expires_at > now:
        return float(row.amount)
    start = seed() if seed else 0.0
    if row is None:
        LimitCounter.insert(name=name, amount=start, expires_at=now + ttl).on_conflict_ignore().execute()
        row = locked_row(LimitCounter, name)  # on PostgreSQL, another maker's row if it won
        if row is not None and row.amount != start:
            return float(row.amount)
    LimitCounter.update(amount=start, expires_at=now + ttl).where(LimitCounter.name == name).execute()
    return start


def prune_counters(now: float | None = None) -> int:
    """Delete expired counters; returns how many."""
    with database.connection_context():
        return LimitCounter.delete().where(LimitCounter.expires_at <= (now or time.time())).execute()


class DatabaseStorage(Storage, SlidingWindowCounterSupport, TimestampedSlidingWindow):
    """flask-limiter's storage in the database (`aiserver-database://`), for an instance without Redis:
    its workers share one count. The sliding window counter weighs the previous window's count by the
    part of it still inside the last `expiry` seconds: a burst is admitted exactly up to the limit."""

    STORAGE_SCHEME = ["aiserver-database"]

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return PeeweeException, MaxConnectionsExceeded

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = time.time()
        with database.connection_context(), write_transaction():
            total = locked_amount(key, expiry, now) + amount
            LimitCounter.update(amount=total).where(LimitCounter.name == key).execute()
        return int(total)

    def get(self, key: str) -> int:
        with database.connection_context():
            row = LimitCounter.get_or_none((LimitCounter.name == key) & (LimitCounter.expires_at > time.time()))
        return int(row.amount) if row else 0

    def get_expiry(self, key: str) -> float:
        with database.connection_context():
            row = LimitCounter.get_or_none(LimitCounter.name == key)
        return float(row.expires_at) if row else time.time()

    def check(self) -> bool:
        with database.connection_context():
            database.execute_sql("SELECT 1")
        return True

    def reset(self) -> int | None:
        return None  # the table also holds the reservations, which a limiter reset must not drop

    def clear(self, key: str) -> None:
        with database.connection_context():
            LimitCounter.delete().where(LimitCounter.name == key).execute()

    def acquire_sliding_window_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        """Count `amount` in the current window if the weighted count stays within `limit`."""
        if amount > limit:
            return False
        now = time.time()
        previous_key, current_key = self.sliding_window_keys(key, expiry, now)
        with database.connection_context(), write_transaction():
            previous = self.get(previous_key)  # a past window: no longer counted in
            current = locked_amount(current_key, 2 * expiry, now)
            weighted = previous * previous_ttl(previous, expiry, now) / expiry + current
            if math.floor(weighted) + amount > limit:
                return False
            LimitCounter.update(amount=current + amount).where(LimitCounter.name == current_key).execute()
        return True

    def get_sliding_window(self, key: str, expiry: int) -> tuple[int, float, int, float]:
        now = time.time()
        previous_key, current_key = self.sliding_window_keys(key, expiry, now)
        previous, current = self.get(previous_key), self.get(current_key)
        return previous, previous_ttl(previous, expiry, now), current, (1 - ((now / expiry) % 1)) * expiry + expiry

    def clear_sliding_window(self, key: str, expiry: int) -> None:
        for name in self.sliding_window_keys(key, expiry, time.time()):
            self.clear(name)


def previous_ttl(previous: float, expiry: int, now: float) -> float:
    """How much of the previous window is still inside the last `expiry` seconds (limits' formula)."""
    return 0.0 if not previous else (1 - (((now - expiry) / expiry) % 1)) * expiry
