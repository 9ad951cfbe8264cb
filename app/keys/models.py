"""Client API keys and the per-call usage rows that limits, budgets and `/usage` read.

A key is stored as its HMAC-SHA256 (`key_hash`, unique, so finding a key is an index lookup on a
digest and never compares secrets character by character) with a `hint` (`ais-…` and the last four
characters) to tell keys apart in a list; the key itself is shown once and never stored.
`models` is null for every model, else a list of `model`, `provider/model` or `provider/*`.

`response_cache` says whether its answers are cached (when the server's RESPONSE_CACHE_TTL_S is on),
`response_cache_namespace` names a cache it shares with the keys given the same name (null: its own).

Tables: `app/migrations/0006_keys.py`, `0014_response_cache.py`.
"""
from __future__ import annotations

from peewee import BigAutoField, BigIntegerField, BooleanField, CharField, DateTimeField, FloatField, IntegerField

from app.core.clock import utcnow
from app.core.db import BaseModel, JSONField

SCOPES = ("gists",)


class ApiKey(BaseModel):
    id = CharField(primary_key=True, max_length=40)
    name = CharField(max_length=100)
    hint = CharField(max_length=16)
    key_hash = CharField(max_length=64, unique=True)
    admin = BooleanField(default=False)
    models = JSONField(null=True)
    scopes = JSONField(default=list)
    rpm = IntegerField(null=True)
    tpm = IntegerField(null=True)
    daily_tokens = BigIntegerField(null=True)
    monthly_budget_usd = FloatField(null=True)
    expires_at = DateTimeField(null=True)
    revoked_at = DateTimeField(null=True)
    created_at = DateTimeField(default=utcnow)
    rotated_at = DateTimeField(null=True)
    response_cache = BooleanField(default=True)  # its answers cached when RESPONSE_CACHE_TTL_S is on
    response_cache_namespace = CharField(max_length=100, null=True)  # shared with keys given the same; else its own

    class Meta:
        table_name = "api_key"


class UsageRecord(BaseModel):
    id = BigAutoField()
    created_at = DateTimeField(index=True)
    key_id = CharField(max_length=40, null=True)
    client_id = CharField(max_length=200, null=True)
    user_id = CharField(max_length=200, null=True)
    provider = CharField(max_length=64)
    model = CharField(max_length=200)
    prompt_tokens = IntegerField(default=0)
    completion_tokens = IntegerField(default=0)
    reasoning_tokens = IntegerField(default=0)
    cached_read_tokens = IntegerField(default=0)  # of prompt_tokens, read from the vendor's prompt cache
    cache_write_tokens = IntegerField(default=0)  # of prompt_tokens, written to the vendor's prompt cache
    cost_usd = FloatField(default=0)
    priced = BooleanField(default=True)  # false: the model is not in the price table, so cost_usd is 0
    latency_ms = IntegerField(default=0)
    status = CharField(max_length=16)  # the gateway's outcome: ok, attempt_failed, interrupted, cancelled;
    # cache_hit: answered from the response cache (no tokens, no cost)
    request_id = CharField(max_length=128, null=True)

    class Meta:
        table_name = "usage_record"
        indexes = ((("key_id", "created_at"), False),)


class LimitCounter(BaseModel):
    """A counter every worker and instance shares when there is no Redis (`app.keys.counters`): a key's
    tokens or dollars reserved and spent in one minute, day or month, and flask-limiter's windows.
    A row past `expires_at` (epoch seconds) counts as absent; the nightly prune deletes it."""

    name = CharField(primary_key=True, max_length=255)
    amount = FloatField(default=0)
    expires_at = FloatField(index=True)

    class Meta:
        table_name = "limit_counter"
