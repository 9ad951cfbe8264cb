"""Leases: a claim on one database row that expires unless its holder keeps renewing it.

A row is held while its owner column names the holder and its until column is in the future. The
holder renews every third of the lease's length from a background thread (a greenlet in the web
workers, where gevent patches `threading`; a real thread in the job worker). A holder that dies,
even by SIGKILL, stops renewing, so the row is free again once the lease runs out; a renewal that
matches no row means someone else took the row over, and `check` then raises `LeaseLost`.

How a row is claimed differs (a conversation turn also stores the user's message; a deployment
round counts its runs), so claiming stays with each feature; holding, renewing and releasing are here.
"""
from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Any

from peewee import Field, Model

from app.core.clock import utcnow
from app.core.db import database

log = logging.getLogger("aiserver.leases")


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
