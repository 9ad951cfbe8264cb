"""Authentication: one `before_request` hook that finds the request's key and sets the caller.

A key is read from `Authorization: Bearer` (the openai SDK, curl, agents), `x-api-key` (the
anthropic SDK) or `x-goog-api-key` (the google-genai SDK). When any key exists, or AUTH_REQUIRED is
true, every endpoint needs one except those in `EXEMPT`: 401 for a missing or unknown key, 403 for
a revoked or expired one, in the shape of the API the request came through (`app.web.errors`).
With no key and AUTH_REQUIRED false the server is open, and says so in the log and on /health.

Keys are looked up through `service.find_key`: a key row is kept by each process while the database's key
generation (bumped by any change to a key) stays the same, so a revoked key stops working everywhere at once.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from flask import Flask, g, request

from app.core.caller import Caller, client_label, set_caller
from app.core.errors import Forbidden, Unauthorized
from app.keys import service

log = logging.getLogger("aiserver.keys")

# Open without a key: liveness, the deployment endpoints (they carry their own verification
# secret), and the static pages and documents (the /ui pages ask for a key and keep it).
EXEMPT_PATHS = frozenset({"/ping", "/health", "/v1/health", "/api/v1/health", "/ui", "/ui/", "/ui/admin",
                          "/docs", "/openapi.json", "/task", "/revise"})
EXEMPT_PREFIXES = ("/static/", "/docs/assets/")
OPEN_WARNING = ("No client API key exists and AUTH_REQUIRED is false: anyone who can reach this server may use "
                "every provider, conversation, gist and task. Create a key: flask --app app.wsgi keys create NAME "
                "--admin")


def presented_key() -> str | None:
    """The key the request carries, from the first of the three headers that has one."""
    authorization = request.headers.get("Authorization", "")
    if authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    for header in ("x-api-key", "x-goog-api-key"):
        value = request.headers.get(header, "").strip()
        if value:
            return value
    return None


def is_exempt(path: str) -> bool:
    return path in EXEMPT_PATHS or path.startswith(EXEMPT_PREFIXES)


def client_ids() -> dict[str, str | None]:
    """`X-Client-Id` and `X-User-Id` for usage rows (`client_label`: a key sent there is redacted)."""
    return {name: client_label(request.headers.get(header)) for name, header in
            (("client_id", "X-Client-Id"), ("user_id", "X-User-Id"))}


def init_auth(app: Flask, secret: Callable[[], bytes]) -> None:
    """Register the hook; `secret()` gives the key-hash secret (read once, on first use)."""
    warned: dict[str, bool] = {}

    @app.before_request
    def authenticate() -> None:
        caller = identify(presented_key(), is_exempt(request.path), app.config["AUTH_REQUIRED"], secret)
        caller.request_id = g.get("request_id")
        caller.client_id, caller.user_id = client_ids().values()
        set_caller(caller)
        g.request_log["key_id"] = caller.key_id
        if caller.open_mode and not warned:
            warned["open"] = True
            log.warning(OPEN_WARNING)


def identify(key: str | None, exempt: bool, required: bool, secret: Callable[[], bytes]) -> Caller:
    """The caller for a request carrying `key` (or none): raises 401/403 unless the path is exempt.
    An open server ignores whatever key is sent (SDKs always send one)."""
    row = service.find_key(key, secret()) if key else None
    if row is None:
        if not required and not service.any_key_exists():
            return Caller(open_mode=True, cache_namespace=OPEN_NAMESPACE)
        if exempt:
            return Caller()
        if key is None:
            raise Unauthorized("Send a client API key (it starts with ais-): 'Authorization: Bearer <key>' or "
                               "'x-api-key: <key>'.",
                               code="missing_api_key")
        raise Unauthorized("The API key is not known.", code="invalid_api_key")
    why = service.refusal(row)
    if why is not None:
        if exempt:
            return Caller()
        raise Forbidden(f"The API key {row.hint} is {why}.", code=f"{why}_api_key")
    return caller_of(row)


def caller_of(row: Any) -> Caller:
    return Caller(key_id=row.id, admin=row.admin, scopes=frozenset(row.scopes or ()), key=row,
                  cache_namespace=cache_namespace(row))


OPEN_NAMESPACE = "open"  # a server without keys: every caller is the same one


def cache_namespace(row: Any) -> str | None:
    """Where a key's answers are cached: the namespace an admin gave it (shared with the keys given the
    same), else its own; None for a key made with the response cache off."""
    if not row.response_cache:
        return None
    return f"shared:{row.response_cache_namespace}" if row.response_cache_namespace else f"key:{row.id}"
