"""Who is calling: the client API key a request came with (set once per request by the
authentication hook in `app.keys.auth`), read by views to pass owners to services and by the
gateway's callbacks to check a key's models and count its usage.

It is a context variable, not Flask state, so it follows a streamed answer into the greenlet that
produces it (`app.llm.pump` copies the context) and is absent (None) in the background worker.

Ownership in services: a row's owner is the id of the key that made it (None without a key). A
reader is a key id (sees its own rows), None (an anonymous caller: sees rows nobody owns) or
`EVERYONE` (an admin key, or a server with no key configured: sees all rows).
"""
from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import Any

from peewee import SQL

from app.core.credentials import redact_tokens
from app.core.errors import Forbidden

MAX_LABEL = 200  # the usage and gist revision rows' client_id/user_id columns


def client_label(raw: Any) -> str | None:
    """A client or user id (`X-Client-Id`, a body's `client_id`/`user_id`/`user`) as stored and logged:
    printable, at most MAX_LABEL characters, None when empty. Anything shaped like a credential (a
    client key sent in the wrong field, `ais-...`) is redacted to its prefix and `***` (`ais-***`):
    usage rows are read by every admin and kept for months, and a key must never sit there in clear."""
    if not isinstance(raw, str):
        return None
    text = "".join(ch for ch in raw if ch.isprintable()).strip()
    return redact_tokens(text)[:MAX_LABEL] or None


class _Everyone:
    def __repr__(self) -> str:
        return "EVERYONE"


EVERYONE: Any = _Everyone()


@dataclass
class Caller:
    key_id: str | None = None
    admin: bool = False
    open_mode: bool = False  # no key exists and AUTH_REQUIRED is false: nothing is protected
    scopes: frozenset[str] = frozenset()
    key: Any = field(default=None, repr=False)  # the key's row (app.keys.models.ApiKey): models, limits
    client_id: str | None = None
    user_id: str | None = None
    request_id: str | None = None
    cache_namespace: str | None = None  # where its answers are cached (`app.llm.response_cache`); None: not

    @property
    def owner(self) -> str | None:
        """The owner of what this caller creates."""
        return self.key_id

    @property
    def reader(self) -> Any:
        """What this caller may read: a key id, None (unowned rows only) or EVERYONE."""
        return EVERYONE if self.open_mode or self.admin else self.key_id

    def attribute(self, client_id: Any = None, user_id: Any = None) -> None:
        """Name the end client and user for usage rows (from a body's fields, over the headers)."""
        self.client_id = client_label(client_id) or self.client_id
        self.user_id = client_label(user_id) or self.user_id

    def require_scope(self, scope: str, action: str) -> None:
        """403 unless the key has `scope` (admin keys and an open server have every scope)."""
        if not (self.open_mode or self.admin or scope in self.scopes):
            raise Forbidden(f"{action} needs a key with the '{scope}' scope.", code="missing_scope",
                            details={"scope": scope})


_current: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("caller", default=None)


def current_caller() -> Caller:
    """The request's caller; outside a request (worker, shell), an anonymous one with no rights."""
    return _current.get() or Caller()


def set_caller(caller: Caller) -> None:
    _current.set(caller)


def calling_key() -> Caller | None:
    """The caller when the current call runs for a request (None in the worker or a shell)."""
    return _current.get()


def owned_by(column: Any, reader: Any) -> Any:
    """A peewee condition selecting the rows of `column` (an owner column) that `reader` may see."""
    if reader is EVERYONE:
        return SQL("1 = 1")
    return column.is_null() if reader is None else column == reader
