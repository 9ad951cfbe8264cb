"""`/admin/keys` (admin keys only), `GET /usage` and `GET /v1/key/info`."""
from __future__ import annotations

from datetime import timezone
from typing import Any

from flask import current_app, jsonify
from flask_smorest import Blueprint

from app.core.caller import EVERYONE, Caller, current_caller
from app.core.clock import isoformat, utcnow
from app.core.errors import Forbidden, NotFound
from app.core.http import parse_body, parse_query
from app.core.openapi import errors, json_body, query_args
from app.keys import service, usage
from app.keys.schemas import (
    CreateKeySchema,
    KeyInfoSchema,
    KeyListSchema,
    NewKeySchema,
    OneKeySchema,
    UpdateLimitsSchema,
    UsageQuerySchema,
    UsageSummarySchema,
)

bp = Blueprint("keys", __name__, description="Client keys (admin only), usage and the calling key's limits.")
ADMIN_ONLY = (401, "No key, or an unknown one."), (403, "Not an admin key, or a revoked or expired one.")


def secret() -> bytes:
    return current_app.extensions["key_hash_secret"]()


def require_admin() -> Caller:
    caller = current_caller()
    if not caller.admin:
        raise Forbidden("Managing keys needs an admin key (the first one is made from the command line: "
                        "flask --app app.wsgi keys create NAME --admin).", code="admin_required")
    return caller


@bp.get("/admin/keys")
@bp.response(200, KeyListSchema)
@errors(*ADMIN_ONLY)
def list_keys():
    """Every key (never its value): limits, scopes, status."""
    require_admin()
    return jsonify({"keys": [service.key_view(row) for row in service.list_keys()], "success": True})


@bp.post("/admin/keys")
@json_body(CreateKeySchema)
@bp.response(201, NewKeySchema)
@errors(*ADMIN_ONLY)
def create_key():
    """Create a key; the answer's `key` is shown this once and never again."""
    require_admin()
    body = parse_body(CreateKeySchema)
    if body["expires_at"] is not None:
        body["expires_at"] = body["expires_at"].astimezone(timezone.utc).replace(tzinfo=None)
    row, key = service.create_key(service.KeySpec(**body), secret())
    return jsonify({**service.key_view(row), "key": key, "success": True}), 201


@bp.get("/admin/keys/<key_id>")
@bp.response(200, OneKeySchema)
@errors(*ADMIN_ONLY, (404, "No such key."))
def get_key(key_id: str):
    """One key (never its value)."""
    require_admin()
    return jsonify({**service.key_view(service.get_key(key_id)), "success": True})


@bp.patch("/admin/keys/<key_id>")
@json_body(UpdateLimitsSchema)
@bp.response(200, OneKeySchema)
@errors(*ADMIN_ONLY, (404, "No such key."))
def update_key_limits(key_id: str):
    """Change a key's limits: a field left out keeps its value, null removes that limit. From its next request on."""
    require_admin()
    return jsonify({**service.key_view(service.update_limits(key_id, parse_body(UpdateLimitsSchema))),
                    "success": True})


@bp.post("/admin/keys/<key_id>/revoke")
@bp.delete("/admin/keys/<key_id>")
@bp.response(200, OneKeySchema)
@errors(*ADMIN_ONLY, (404, "No such key."))
def revoke_key(key_id: str):
    """Revoke a key: refused from its next request on."""
    require_admin()
    return jsonify({**service.key_view(service.revoke_key(key_id)), "success": True})


@bp.post("/admin/keys/<key_id>/rotate")
@bp.response(200, NewKeySchema)
@errors(*ADMIN_ONLY, (404, "No such key."))
def rotate_key(key_id: str):
    """A new value for the key (same id, settings and ownership); the old value stops working at once."""
    require_admin()
    row, key = service.rotate_key(key_id, secret())
    return jsonify({**service.key_view(row), "key": key, "success": True})


@bp.get("/usage")
@query_args(UsageQuerySchema)
@bp.response(200, UsageSummarySchema)
@errors((401, "No key, or an unknown one."), (403, "A revoked or expired key."), (404, "No such key."))
def usage_summary():
    """Calls, tokens and cost per key/provider/model/day (group_by) from since to until (UTC days).

    A key sees its own usage; an admin key any key's (key_id) or all."""
    query = parse_query(UsageQuerySchema)
    caller = current_caller()
    if query["key_id"] and caller.reader is not EVERYONE and query["key_id"] != caller.key_id:
        raise NotFound(f"No key {query['key_id']!r}.", code="key_not_found")
    rows = usage.summarize(caller.reader, query["key_id"], query["since"], query["until"], query["group_by"])
    return jsonify({"since": query["since"].isoformat(), "until": query["until"].isoformat(),
                    "group_by": query["group_by"], "rows": rows, "success": True})


@bp.get("/v1/key/info")
@bp.get("/api/v1/key/info")
@bp.response(200, KeyInfoSchema)
@errors((401, "No key, or an unknown one."), (403, "A revoked or expired key."))
def key_info():
    """The calling key: its models, scopes, limits and what it has left today and this month."""
    caller = current_caller()
    if caller.key is None:
        return jsonify({"key": None, "open": caller.open_mode, "limits": None})
    return jsonify({"key": service.key_view(caller.key), "usage": usage_left(caller.key)})


def usage_left(key: Any) -> dict[str, Any]:
    now = utcnow()
    today_tokens = usage.spent(key.id, usage.day_start(now)).tokens
    month = usage.spent(key.id, usage.month_start(now))
    month_tokens, month_cost = month.tokens, month.cost_usd
    return {"as_of": isoformat(now), "tokens_today": today_tokens, "tokens_this_month": month_tokens,
            "cached_read_tokens_this_month": month.cached_read_tokens,
            "cache_write_tokens_this_month": month.cache_write_tokens,
            "cost_this_month_usd": round(month_cost, 6),
            "daily_tokens_left": None if not key.daily_tokens else max(0, key.daily_tokens - today_tokens),
            "monthly_budget_left_usd": None if key.monthly_budget_usd is None
            else round(max(0.0, key.monthly_budget_usd - month_cost), 6)}
