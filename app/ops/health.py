"""Health checks: the database answers a query; each provider is configured and reachable.

Reachability uses each provider's `check()` (a model listing: no tokens are spent), run
concurrently and cached for HEALTH_CACHE_S so a monitor polling `/health` does not hammer vendors.
The cache is per process and only ever a cache: losing it costs one check.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import gevent

from app.llm.providers.base import ProviderFailure
from app.llm.registry import Registry


class ProviderHealth:
    def __init__(self, registry: Registry, ttl: float, redact: Callable[[str], str] = str):
        """`redact` scrubs secrets that a vendor may echo back in an error (a bad key)."""
        self.registry = registry
        self.ttl = ttl
        self.redact = redact
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}

    def status(self, name: str) -> dict[str, Any]:
        name = self.registry.canonical(name)
        if name in self.registry.missing:
            return {"configured": False, "reachable": False, "variable": self.registry.missing[name]}
        cached = self._cache.get(name)
        if cached and time.monotonic() - cached[0] < self.ttl:
            return cached[1]
        result = self._check(name)
        self._cache[name] = (time.monotonic(), result)
        return result

    def all(self) -> dict[str, dict[str, Any]]:
        names = self.registry.names
        jobs = [gevent.spawn(self.status, name) for name in names]
        gevent.joinall(jobs, timeout=10)
        return {name: job.value if job.successful() else {"configured": True, "reachable": False,
                                                           "error": "health check did not finish"}
                for name, job in zip(names, jobs)}

    def _check(self, name: str) -> dict[str, Any]:
        provider = self.registry.providers[name]
        started = time.perf_counter()
        try:
            provider.check()
        except ProviderFailure as failure:
            return {"configured": True, "reachable": False, "error": self.redact(failure.message),
                    "default_model": provider.default_model}
        return {"configured": True, "reachable": True, "default_model": provider.default_model,
                "latency_ms": round((time.perf_counter() - started) * 1000, 1)}


def database_ok(db) -> dict[str, Any]:
    try:
        with db.connection_context():
            db.execute_sql("SELECT 1")
        return {"ok": True, "engine": type(db).__name__}
    except Exception as exc:  # any driver error means "not ready"
        return {"ok": False, "engine": type(db).__name__, "error": type(exc).__name__}
