"""Time as this server stores and shows it: naive UTC in the database, ISO 8601 with a `Z` on the wire;
and `within`, a deadline over blocking work."""
from __future__ import annotations

import contextlib
from datetime import datetime, timezone
from typing import Any, ContextManager

from gevent import monkey
from gevent.timeout import Timeout


def utcnow() -> datetime:
    """Naive UTC, the one time representation stored (both SQLite and PostgreSQL keep it as is)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def isoformat(moment: datetime | None, timespec: str = "auto") -> str | None:
    """`moment` (naive UTC as stored, or aware) as ISO 8601 UTC with a `Z`: "2024-05-01T12:00:00.250000Z"
    (`timespec="seconds"` drops the fraction); None for None. The one format every answer uses."""
    if moment is None:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment.isoformat(timespec=timespec) + "Z"


def parse_iso(value: Any) -> datetime | None:
    """An ISO 8601 time ("2024-05-01", "2024-05-01T12:00:00Z", any offset; none means UTC) as naive
    UTC, the stored representation; None when absent or not such a time."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.astimezone(timezone.utc).replace(tzinfo=None) if moment.tzinfo else moment


def from_epoch(seconds: float) -> datetime:
    """Seconds since the epoch (as OpenAI's `created_at`) as naive UTC, the stored representation."""
    return datetime.fromtimestamp(seconds, timezone.utc).replace(tzinfo=None)


def epoch(moment: datetime) -> int:
    """Whole seconds since the epoch of `moment`, naive UTC as stored."""
    return int(moment.replace(tzinfo=timezone.utc).timestamp())


def within(seconds: float, exception: type[BaseException]) -> ContextManager[Any]:
    """A context raising `exception` in the current greenlet once `seconds` have passed, whatever it is
    blocked on (one `gevent.Timeout` for the whole block, where a socket timeout bounds each read).
    Under Gunicorn's gevent workers sockets are cooperative; in a process gevent has not patched
    (Flask's test client, a script) nothing can interrupt a blocking read, so it does nothing there
    rather than start a gevent hub per thread."""
    if not monkey.is_module_patched("socket"):
        return contextlib.nullcontext()
    return Timeout(max(seconds, 0.0), exception)
