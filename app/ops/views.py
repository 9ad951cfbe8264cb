"""Liveness, readiness and per-provider status."""
from __future__ import annotations

import time

from flask import current_app, jsonify
from flask_smorest import Blueprint

from app.core.caller import current_caller
from app.core.clock import isoformat, utcnow
from app.core.openapi import errors
from app.core.version import __version__
from app.llm.responses import registry
from app.ops.health import ProviderHealth, database_ok
from app.ops.schemas import HealthSchema, NamedProviderStatusSchema, PingSchema, StatusSchema

bp = Blueprint("health", __name__, description="Liveness, readiness and each provider's status.")


def provider_health() -> ProviderHealth:
    return current_app.extensions["provider_health"]


OPEN_WARNING = ("No client API key is configured: anyone who can reach this server may use it. "
                "Create one: flask --app app.wsgi keys create NAME --admin")


@bp.get("/health")
@bp.response(200, HealthSchema, description="The database answers (`degraded` when no provider is reachable).")
@bp.alt_response(503, schema=HealthSchema, description="The database does not answer (`status: error`).")
def health():
    """Status, version, uptime, database and every provider (configured, reachable); an anonymous
    caller of a server with keys sees no provider details."""
    caller = current_caller()
    database = database_ok(current_app.extensions["database"])
    providers = provider_health().all()
    usable = any(p["reachable"] for p in providers.values())
    status = "ok" if database["ok"] and usable else ("degraded" if database["ok"] else "error")
    body = {"status": status, "timestamp": isoformat(utcnow()), "version": __version__,
            "uptime_s": round(time.time() - current_app.config["STARTED_AT"], 1), "database": database,
            "providers": providers, "auth": {"open": caller.open_mode}}
    if caller.open_mode:
        body["auth"]["warning"] = OPEN_WARNING
    elif caller.key_id is None:
        del body["providers"]
    return jsonify(body), 200 if database["ok"] else 503


@bp.get("/health/<provider>")
@bp.response(200, NamedProviderStatusSchema, description="Configured and reachable.")
@bp.alt_response(503, schema=NamedProviderStatusSchema, description="Not configured, or not reachable.")
@errors((404, "Unknown provider."))
def health_of(provider: str):
    """One provider's status; 503 when not configured or unreachable."""
    name = registry().canonical(provider)
    if name not in registry().names:
        registry().get(name)
    status = provider_health().status(name)
    return jsonify({"provider": name, **status}), 200 if status["reachable"] else 503


@bp.get("/ping")
@bp.response(200, PingSchema)
def ping():
    """Liveness: answers while the process serves requests."""
    return jsonify({"status": "ok", "message": "pong"})


@bp.get("/v1/health")
@bp.get("/api/v1/health")
@bp.response(200, StatusSchema)
def v1_health():
    """Liveness in the older api-server's shape."""
    return jsonify({"status": "ok"})
