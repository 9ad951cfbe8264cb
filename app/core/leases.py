"""Leases: a claim on one database row that expires unless its holder keeps renewing it.

A row is held while its owner column names the holder and its until column is in the future. The
holder renews every third of the lease's length from a background thread (a greenlet in the web
workers, where gevent patches `threading`; a real thread in the job worker). A holder that dies,
even by SIGKILL, stops renewing, so the row is free again once the lease runs out; a renewal that
matches no row means someone else took the row over, and `check` then raises `LeaseLost`.

How a row is claimed differs (a conversation turn also stores the user's message; a deployment
round counts its runs), so claiming stays with each feature; holding, renewing and releasing are here.

A claim can also name its holding process (`this_process`): then a claimer on the same machine need
not wait for the lease to run out when that process is gone (`holder_gone`), a `kill -9` of a worker
frees its rows at once for the others. Only the same kernel boot and PID namespace can tell, so
another machine's (or container's) holder is never judged gone: its lease still bounds the wait.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
import threading
from datetime import timedelta
from typing import Any

from peewee import Field, Model

from app.core.clock import utcnow
from app.core.db import database

log = logging.getLogger("aiserver.leases")


@functools.cache
def _machine() -> str:
    """This kernel boot and PID namespace, hashed: processes with the same value share one PID space."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as boot:
            place = boot.read().strip() + os.readlink("/proc/self/ns/pid")
    except OSError:  # no /proc (not Linux): no holder is ever judged gone
        return "nowhere"
    return hashlib.sha256(place.encode()).hexdigest()[:16]


def _started(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot, /proc/PID/stat), None if it does not exist."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


_identity: dict[int, str] = {}


def this_process() -> str:
    """This process as a lease holder: machine, pid and start time (`machine:pid:start`), so a pid
    reused by a later process is not taken for the holder."""
    pid = os.getpid()
    if pid not in _identity:  # once per process (a forked worker has its own pid)
        _identity[pid] = f"{_machine()}:{pid}:{_started(pid)}"
    return _identity[pid]


def holder_gone(holder: str | None) -> bool:
    """Whether `holder` (from `this_process`) certainly no longer runs: a process of this machine and
    PID namespace that has exited (or whose pid now belongs to a later process). False when unknown."""
    parts = (holder or "").split(":")
    if len(parts) != 3 or parts[0] != _machine() or parts[0] == "nowhere" or not parts[1].isdigit():
        return False
    return _started(int(parts[1])) != parts[2]


class LeaseLost(Exception):
    """Someone else holds the row now; the old holder must stop touching it."""


class Lease:
    """The lease `owner` holds on the `model` row whose primary key is `key`, for `seconds` at a time."""

    def __init__(self, model: type[Model], key: Any, owner_field: Field, until_field: Field, owner: str,
                 seconds: float):
        self.model, self.key, self.owner, self.seconds = model, key, owner, seconds
        self.owner_field, self.until_field = owner_field, until_field
        self.lost = False
        self._stop = threading.Event()
        self._renewer = threading.Thread(target=self._renew_until_stopped, name=f"lease-{key}", daemon=True)

    def expiry(self):
        """When a lease taken or renewed now runs out (naive UTC, as stored)."""
        return utcnow() + timedelta(seconds=self.seconds)

    def start(self) -> Lease:
        """Start renewing (the caller has just claimed the row); returns the lease."""
        self._renewer.start()
        return self

    def check(self) -> None:
        """Raise `LeaseLost` if a renewal or a write found the row taken over."""
        if self.lost:
            raise LeaseLost(f"{self.model.__name__} {self.key} was taken over by another holder")

    def stop(self) -> None:
        """Stop renewing, leaving the row as it is (the caller clears it in its own transaction)."""
        self._stop.set()
        if self._renewer.is_alive() and self._renewer is not threading.current_thread():
            self._renewer.join(timeout=5)

    def release(self) -> None:
        """Stop renewing and free the row, if it is still ours."""
        self.stop()
        with database.connection_context():
            (self.model.update({self.owner_field: None, self.until_field: None})
             .where(self._ours()).execute())

    def _ours(self) -> Any:
        return (self.model._meta.primary_key == self.key) & (self.owner_field == self.owner)

    def _renew_until_stopped(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                with database.connection_context():
                    renewed = self.model.update({self.until_field: self.expiry()}).where(self._ours()).execute()
            except Exception:  # a busy database only shortens the lease; the next beat tries again
                log.warning("could not renew the lease on %s %s", self.model.__name__, self.key, exc_info=True)
                continue
            if not renewed:
                self.lost = True
                return
