"""Writes taken off the request path: items are appended to an in-memory batch (a deque append: no
I/O, no lock) and written together by one background thread per process, every `flush_interval`
seconds. A failed write keeps the batch for the next round; a crash loses at most one interval.
An outage (the database away for minutes) is one warning when writes start failing and one when they
succeed again, not a traceback per round."""
from __future__ import annotations

import atexit
import logging
import threading
import time
from collections import deque
from typing import Any, Callable

log = logging.getLogger("aiserver.batches")


class BackgroundBatches:
    def __init__(self, write: Callable[[list[Any]], None], flush_interval: float = 1.0, name: str = "batches"):
        """`write(batch)` stores a batch or raises; `flush_interval` 0 means no background thread:
        `flush()` is called by hand (tests)."""
        self.write = write
        self.flush_interval = flush_interval
        self.name = name
        self._pending: deque[Any] = deque()
        self._flusher: threading.Thread | None = None
        self._stop = threading.Event()
        self._failing_since: float | None = None  # monotonic time of the first failed round of an outage

    def add(self, item: Any) -> None:
        self._pending.append(item)
        if self._flusher is None and self.flush_interval > 0:
            self._start()

    def _start(self) -> None:
        """Started by the first item, so it runs in the serving process (after Gunicorn's fork)."""
        self._flusher = threading.Thread(target=self._flush_forever, name=f"{self.name}-flusher", daemon=True)
        self._flusher.start()
        atexit.register(self.stop)

    def _flush_forever(self) -> None:
        while not self._stop.wait(self.flush_interval):
            self.flush_or_wait()

    def flush_or_wait(self) -> None:
        """One background round: a failed write keeps the batch for the next round (the database may be
        away); the first failure of an outage is logged, and its end, never each retry."""
        try:
            self.flush()
        except Exception as exc:
            if self._failing_since is None:
                self._failing_since = time.monotonic()
                log.warning("could not write %s (%s: %s); keeping them and retrying every %s s", self.name,
                            type(exc).__name__, exc, self.flush_interval)
            return
        if self._failing_since is not None:
            log.warning("%s written again after %.0f s of failed writes", self.name,
                        time.monotonic() - self._failing_since)
            self._failing_since = None

    def flush(self) -> int:
        """Write the pending items now; returns how many were written."""
        batch = [self._pending.popleft() for _ in range(len(self._pending))]
        if not batch:
            return 0
        try:
            self.write(batch)
        except Exception:
            self._pending.extendleft(reversed(batch))  # keep them for the next round
            raise
        return len(batch)

    def stop(self) -> None:
        self._stop.set()
        self.flush()
