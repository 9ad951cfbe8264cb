"""Keyset paging: lists ordered newest first by a key (`Keyset`), and the opaque `next_cursor` of a page.

A cursor holds the sort key of a page's last row (e.g. `(last_updated, id)`), so the next page
starts right after it, however deep, and rows added meanwhile never shift a page. It is the key's
parts joined by `|`, in URL-safe base64 without padding, so clients treat it as opaque. Every list
endpoint reads its cursor with `decode_cursor`, each part checked by its reader (`moment`, `row_id`,
`matching(pattern)`): anything this server did not make is the same 400, `invalid_cursor`.
"""
from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime
from typing import Any, Callable, Sequence, TypeVar

from peewee import Field, Model, ModelSelect, Tuple

from app.core.errors import BadRequest

# What the document says of every `cursor` parameter: URL-safe base64 (what `decode_cursor` reads), and
# only one this server sent as `next_cursor` is a cursor; any other is the 400 `invalid_cursor`.
CURSOR_DOC = {"pattern": r"^[A-Za-z0-9_=+/-]*$",
              "description": "The `next_cursor` of the previous page, as this server sent it (opaque: "
                             "any other value is a 400, `invalid_cursor`)."}


class InvalidCursor(BadRequest):
    code = "invalid_cursor"


def encode_cursor(*key: datetime | str | int) -> str:
    """The cursor of a row whose sort key is `key` (datetimes naive UTC, as stored)."""
    raw = "|".join(part.isoformat(timespec="microseconds") if isinstance(part, datetime) else str(part)
                   for part in key)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, *readers: Callable[[str], Any]) -> tuple[Any, ...]:
    """The sort key `cursor` holds, one part per reader (which raises ValueError on a bad part);
    `InvalidCursor` (400) if it is not a cursor this server made."""
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
        parts = raw.split("|", len(readers) - 1)
        if len(parts) != len(readers):
            raise ValueError("wrong number of parts")
        return tuple(read(part) for read, part in zip(readers, parts))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidCursor("Invalid cursor: pass back the next_cursor of a previous page.",
                            details={"param": "cursor"}) from None


def moment(part: str) -> datetime:
    """A naive UTC datetime part."""
    value = datetime.fromisoformat(part)
    if value.tzinfo is not None:
        raise ValueError("a cursor's time is naive UTC")
    return value


def row_id(part: str) -> int:
    """A positive integer id part."""
    if not re.fullmatch(r"[1-9][0-9]{0,17}", part):
        raise ValueError("not a row id")
    return int(part)


def matching(pattern: re.Pattern[str]) -> Callable[[str], str]:
    """A reader of string parts that must match `pattern` (an id rule)."""
    def read(part: str) -> str:
        if not pattern.fullmatch(part):
            raise ValueError("not an id")
        return part
    return read


Row = TypeVar("Row")
M = TypeVar("M", bound=Model)


class Keyset:
    """A list ordered newest first by `columns` (together unique, with an index in that order), read a
    page at a time: `page` limits a query to the rows after a cursor, `split` cuts the rows it returned
    into the page and the next page's cursor. Each page costs the same however deep it is."""

    def __init__(self, *columns: Field, readers: Sequence[Callable[[str], Any]]):
        self.columns, self.readers = columns, tuple(readers)

    def page(self, query: ModelSelect[M], limit: int, cursor: str | None) -> ModelSelect[M]:
        """`query` ordered by the key, after `cursor` (400 if not a cursor of this list), one row past `limit`."""
        query = query.order_by(*(column.desc() for column in self.columns)).limit(limit + 1)
        if cursor:
            key = decode_cursor(cursor, *self.readers)
            query = query.where(Tuple(*self.columns) < Tuple(*key))
        return query

    @staticmethod
    def split(rows: list[Row], limit: int, key: Callable[[Row], tuple[Any, ...]]) -> tuple[list[Row], str | None]:
        """The page (the first `limit` rows) and the cursor of the next one (None on the last page)."""
        page = rows[:limit]
        return page, (encode_cursor(*key(page[-1])) if len(rows) > limit else None)
