"""`GET /admin/calls` (admin keys) and `GET /v1/key/calls` (the calling key's own), each with one call by id."""
from __future__ import annotations

import re

from flask import jsonify
from flask_smorest import Blueprint

from app.calls import service
from app.calls.schemas import CallDetailSchema, CallPageSchema, CallQuerySchema
from app.core.caller import EVERYONE, current_caller
from app.core.errors import Forbidden, NotFound
from app.core.http import parse_query
from app.core.openapi import errors, query_args

bp = Blueprint("calls", __name__, description="The call log: every request to an LLM front door.")
ADMIN_ONLY = (401, "No key, or an unknown one."), (403, "Not an admin key, or a revoked or expired one.")
OWN_KEY = (401, "No key, or an unknown one."), (403, "A revoked or expired key.")
CALL_ID = re.compile(r"[1-9][0-9]{0,17}")


def admin_reader() -> object:
    if not current_caller().admin:
        raise Forbidden("The call log of every key needs an admin key; a key reads its own at /v1/key/calls.",
                        code="admin_required")
    return EVERYONE


def call_id_of(text: str) -> int:
    if not CALL_ID.fullmatch(text):
        raise NotFound(f"No call {text[:40]!r}.", code="call_not_found")
    return int(text)


@bp.get("/admin/calls")
@query_args(CallQuerySchema)
@bp.response(200, CallPageSchema)
@errors(*ADMIN_ONLY)
def list_calls():
    """Every key's calls, newest first, filtered by key, model, provider, status, time and request id."""
    reader = admin_reader()
    query = parse_query(CallQuerySchema)
    return jsonify(service.list_calls(reader, query, query["limit"], query["cursor"]))


@bp.get("/admin/calls/<call_id>")
@bp.response(200, CallDetailSchema)
@errors(*ADMIN_ONLY, (404, "No such call."))
def get_call(call_id: str):
    """One call, with its attempts and (when LOG_PAYLOADS kept them) its bodies."""
    reader = admin_reader()
    return jsonify(service.get_call(reader, call_id_of(call_id)))


@bp.get("/v1/key/calls")
@query_args(CallQuerySchema)
@bp.response(200, CallPageSchema)
@errors(*OWN_KEY, (404, "key_id names another key."))
def key_calls():
    """The calling key's calls (without a key: the calls made without one), newest first, with the same filters."""
    caller = current_caller()
    query = parse_query(CallQuerySchema)
    if query["key_id"] and query["key_id"] != caller.key_id:
        raise NotFound(f"No key {query['key_id']!r}.", code="key_not_found")
    return jsonify(service.list_calls(caller.key_id, query, query["limit"], query["cursor"]))


@bp.get("/v1/key/calls/<call_id>")
@bp.response(200, CallDetailSchema)
@errors(*OWN_KEY, (404, "No such call among this key's."))
def key_call(call_id: str):
    """One of the calling key's calls, with its attempts and bodies when kept; another key's is a 404."""
    return jsonify(service.get_call(current_caller().key_id, call_id_of(call_id)))
