"""Writes taken off the request path: items are appended to an in-memory batch (a deque append: no
I/O, no lock) and written together by one background thread per process, every `flush_interval`
seconds. A failed write keeps the batch for the next round; a crash loses at most one interval."""
from __future__ import annotations

import atexit
import logging
import threading
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
            try:
                self.flush()
            except Exception:  # the database may be briefly away; the batch waits for the next round
                log.warning("could not write %s; will retry", self.name, exc_info=True)

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
