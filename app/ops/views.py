"""Liveness, readiness and per-provider status."""
from __future__ import annotations

import time

from flask import current_app, jsonify
from flask_smorest import Blueprint

from app.core.caller import current_caller
from app.core.clock import isoformat, utcnow
from app.core.errors import Forbidden
from app.core.openapi import errors
from app.core.version import __version__
from app.llm.responses import registry
from app.ops.health import ProviderHealth, database_ok
from app.ops.schemas import HealthSchema, NamedProviderStatusSchema, PingSchema, StatusSchema, UpstreamsSchema

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
            "providers": providers, "upstreams": upstream_states(), "auth": {"open": caller.open_mode}}
    if caller.open_mode:
        body["auth"]["warning"] = OPEN_WARNING
    elif caller.key_id is None:
        del body["providers"], body["upstreams"]
    return jsonify(body), 200 if database["ok"] else 503


@bp.get("/admin/upstreams")
@bp.response(200, UpstreamsSchema, description="Every upstream's routing settings and shared health.")
@errors((401, "No key, or an unknown one."), (403, "Not an admin key."))
def upstreams():
    """Each upstream (a model on an endpoint): the model names it serves, weight, own limits, and its
    health as every worker (and, with Redis, every instance) sees it: state, consecutive failures, the
    end of a cooldown, the recent error rate and latency. Admin keys only (`/health` shows the same to
    any key, and to anyone on an open server)."""
    if not current_caller().admin:
        raise Forbidden("Upstream health needs an admin key (the first one is made from the command line: "
                        "flask --app app.wsgi keys create NAME --admin); /health shows it too.",
                        code="admin_required")
    return jsonify({"upstreams": upstream_states()})


def upstream_states() -> list[dict]:
    """Every configured upstream with its settings, and its health from the shared board."""
    routes = registry().upstreams()
    served: dict[str, list[str]] = {}
    for name, group in registry().groups.items():
        for route in group.routes:
            served.setdefault(route.upstream, []).append(name)
    settings = {route.upstream: {"provider": route.provider.name, "model": route.model,
                                 "served_as": served.get(route.upstream, [route.upstream]), "weight": route.weight,
                                 "rpm": route.rpm, "tpm": route.tpm} for route in routes}
    report = current_app.extensions["upstream_health"].report(list(settings))
    return [{"upstream": row["upstream"], **settings.get(row["upstream"], {}), **row} for row in report]


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
