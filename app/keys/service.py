"""Client API keys: made, found, listed, revoked and rotated.

A key is `ais-` and 32 random bytes (URL-safe base64), a prefix secret scanners can be taught. Only
its HMAC-SHA256 under the server secret (`app.keys.secret`) is stored: a random 256-bit key needs
no slow password hash, and a lookup is one equality on a unique index, so finding a key costs the
same and leaks nothing through timing whichever key is sent.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import uuid
import weakref
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.core.clock import isoformat, utcnow
from app.core.db import database
from app.core.errors import BadRequest, NotFound
from app.keys.models import SCOPES, ApiKey

KEY_PREFIX = "ais-"


@dataclass(frozen=True)
class KeySpec:
    """What a new key may do; None for a limit means unlimited, for `models` every model."""

    name: str
    admin: bool = False
    models: list[str] | None = None
    scopes: list[str] = field(default_factory=list)
    rpm: int | None = None
    tpm: int | None = None
    daily_tokens: int | None = None
    monthly_budget_usd: float | None = None
    expires_at: datetime | None = None
    response_cache: bool = True
    response_cache_namespace: str | None = None

    def __post_init__(self) -> None:
        unknown = sorted(set(self.scopes) - set(SCOPES))
        if unknown:
            raise BadRequest(f"Unknown scope(s): {', '.join(unknown)}; known: {', '.join(SCOPES)}.",
                             code="unknown_scope", details={"param": "scopes"})


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str, secret: bytes) -> str:
    return hmac.new(secret, key.encode("utf-8"), hashlib.sha256).hexdigest()


def hint(key: str) -> str:
    """Enough to tell keys apart in a list, far too little to guess one: `ais-…` and the last 4."""
    return f"{KEY_PREFIX}…{key[-4:]}"


def create_key(spec: KeySpec, secret: bytes) -> tuple[ApiKey, str]:
    """A new key row and the key itself, which is never stored and cannot be shown again."""
    key = new_key()
    values = {name: getattr(spec, name) for name in ("name", "admin", "models", "scopes", "rpm", "tpm",
                                                      "daily_tokens", "monthly_budget_usd", "expires_at",
                                                      "response_cache", "response_cache_namespace")}
    with database.connection_context():
        row = ApiKey.create(id=f"key_{uuid.uuid4().hex[:16]}", hint=hint(key), key_hash=key_hash(key, secret),
                            **values)
    return row, key


def find_key(key: str, secret: bytes) -> ApiKey | None:
    """The row of `key` (revoked and expired ones too: the caller decides), or None if unknown.

    Asked on every request, so answered from this process's `KnownKeys` of the database while the key
    table's generation (`key_generation`, bumped by the database in the same transaction as any change
    to `api_key`: migration 0016) is the one it was read at: one tiny read a request instead of the
    key's row, and a revoked, rotated or edited key is still seen by every worker and instance on its
    next request."""
    if not key.startswith(KEY_PREFIX):
        return None
    known = _known_keys.get(database.obj)
    if known is None:
        known = _known_keys[database.obj] = KnownKeys()
    return known.find(key_hash(key, secret))


class KnownKeys:
    """The key rows one process has found in one database, kept while its key generation stays the
    same; unknown keys are not kept (anyone may send any number of them)."""

    LIMIT = 10_000  # rows kept at most; past it, further keys are read each time

    def __init__(self) -> None:
        self.generation: int | None = None
        self.rows: dict[str, ApiKey] = {}

    def find(self, digest: str) -> ApiKey | None:
        kind = type(database.obj).__name__
        with database.connection_context():
            generation = database.execute_sql(GENERATION_SQL).fetchone()[0]  # first: a change after it re-reads
            if generation != self.generation:
                self.rows, self.generation = {}, generation
            row = self.rows.get(digest)
            if row is None:
                row = next(iter(ApiKey.raw(lookup_sql(kind), digest)), None)
                # kept only if no newer generation was seen while it was read (another request may have)
                if row is not None and self.generation == generation and len(self.rows) < self.LIMIT:
                    self.rows[digest] = row
        return row


GENERATION_SQL = "SELECT value FROM key_generation WHERE id = 1"
_known_keys: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # database -> its KnownKeys here


@functools.cache
def lookup_sql(kind: str) -> str:
    """The SQL of the lookup by hash in the dialect of `kind` (the database class), one parameter: the
    hash; compiled once, since peewee building it cost ~190 µs a request, four times the read itself."""
    sql, _ = ApiKey.select().where(ApiKey.key_hash == "").sql()
    return sql


def any_key_exists() -> bool:
    """Whether any key was ever made (revoked ones count: the server stays closed). Keys are never
    deleted, so once true it is remembered; until then it is asked every time (another instance may
    make the first key)."""
    if database.obj in _databases_with_keys:
        return True
    with database.connection_context():
        exists = ApiKey.select(ApiKey.id).limit(1).exists()
    if exists:
        _databases_with_keys.add(database.obj)
    return exists


_databases_with_keys: weakref.WeakSet = weakref.WeakSet()  # the databases a key was seen in


def list_keys() -> list[ApiKey]:
    with database.connection_context():
        return list(ApiKey.select().order_by(ApiKey.created_at, ApiKey.id))


def get_key(key_id: str) -> ApiKey:
    with database.connection_context():
        row = ApiKey.get_or_none(ApiKey.id == key_id)
    if row is None:
        raise NotFound(f"No key {key_id!r}.", code="key_not_found")
    return row


def revoke_key(key_id: str) -> ApiKey:
    """Revoke a key: refused from the next request on, by every instance (the write bumps the key
    generation, which every process checks before using a key row it kept)."""
    row = get_key(key_id)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        with database.connection_context():
            ApiKey.update(revoked_at=row.revoked_at).where(ApiKey.id == key_id).execute()
    return row


def rotate_key(key_id: str, secret: bytes) -> tuple[ApiKey, str]:
    """Give a key a new secret value, keeping its id, settings, usage and what it owns; the old value
    stops working at once."""
    row = get_key(key_id)
    key = new_key()
    row.key_hash, row.hint, row.rotated_at = key_hash(key, secret), hint(key), utcnow()
    with database.connection_context():
        ApiKey.update(key_hash=row.key_hash, hint=row.hint, rotated_at=row.rotated_at).where(
            ApiKey.id == key_id).execute()
    return row, key


def update_limits(key_id: str, limits: dict[str, Any]) -> ApiKey:
    """Change some of a key's limits (rpm, tpm, daily_tokens, monthly_budget_usd; None for no limit),
    effective from its next request: limits are read with the key on every request."""
    row = get_key(key_id)
    for name, value in limits.items():
        setattr(row, name, value)
    with database.connection_context():
        ApiKey.update(**limits).where(ApiKey.id == key_id).execute()
    return row


def refusal(row: ApiKey, now: datetime | None = None) -> str | None:
    """Why a known key may not be used ("revoked", "expired"), or None."""
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at is not None and row.expires_at <= (now or utcnow()):
        return "expired"
    return None


def key_view(row: ApiKey) -> dict[str, Any]:
    """A key as listed: never its value or hash."""
    return {"id": row.id, "name": row.name, "hint": row.hint, "admin": row.admin, "models": row.models,
            "scopes": row.scopes, "limits": limits_view(row), "created_at": isoformat(row.created_at),
            "expires_at": isoformat(row.expires_at), "revoked_at": isoformat(row.revoked_at),
            "rotated_at": isoformat(row.rotated_at), "status": refusal(row) or "active",
            "response_cache": row.response_cache, "response_cache_namespace": row.response_cache_namespace}


def limits_view(row: ApiKey) -> dict[str, Any]:
    return {"rpm": row.rpm, "tpm": row.tpm, "daily_tokens": row.daily_tokens,
            "monthly_budget_usd": row.monthly_budget_usd}


def model_allowed(allowed: list[str] | None, provider: str, model: str) -> bool:
    """Whether a key whose list is `allowed` may use `provider`/`model`: an entry is a model name,
    `provider/model` or `provider/*`; no list allows every model."""
    if allowed is None:
        return True
    return any(entry in (model, f"{provider}/{model}", f"{provider}/*") for entry in allowed)
