"""The handlers that turn any error into JSON, in the shape of the API the request came through.

Three shapes exist: ours, `{"error": {"message", "type", "code", ...}, "success": false}`, OpenAI's
`{"error": {"message", "type", "code", "param"}}` for the `/v1` API (see `openai_error_body`), and
Anthropic's `{"type": "error", "error": {"type", "message"}}` for `/v1/messages` and `/anthropic/...`.
"""
from __future__ import annotations

import json
import logging
from typing import Any

import peewee
from flask import Flask, current_app, jsonify, request
from playhouse.pool import MaxConnectionsExceeded
from werkzeug.exceptions import HTTPException

from app.core.errors import (
    APIError,
    BadRequest,
    Conflict,
    Forbidden,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
    UnsupportedMediaType,
    UpstreamUnavailable,
    anthropic_error_body,
    anthropic_shaped,
    openai_error_body,
    openai_shaped,
    size_in_words,
)
from app.core.metrics import RATE_LIMIT_REJECTIONS

log = logging.getLogger("aiserver.errors")
MAX_URL_BYTES = 4096  # gunicorn.conf.py's limit_request_line is above it (8190)
MAX_HEADER_BYTES = 8192  # and its limit_request_field_size (16384)


def error_body(error: APIError, path: str | None = None) -> dict[str, Any]:
    """`error` in the shape of the API of `path` (by default the current request's)."""
    path = path if path is not None else (request.path if request else "")
    if anthropic_shaped(path):
        return anthropic_error_body(error)
    if openai_shaped(path):
        return openai_error_body(error)
    return {"error": error.to_dict(), "success": False}


_HTTP_ERRORS = {400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict,
                413: PayloadTooLarge, 415: UnsupportedMediaType, 429: RateLimited}


def from_http_exception(exc: HTTPException) -> APIError:
    status = exc.code or 500
    cls = _HTTP_ERRORS.get(status, BadRequest if status < 500 else APIError)
    if status == 413:
        limit = current_app.config["MAX_BODY_BYTES"]
        return PayloadTooLarge(f"The request is larger than this server accepts: at most {size_in_words(limit)}.",
                               details={"max_bytes": limit})
    if status == 404:
        return NotFound(f"No endpoint at {request.method} {request.path}; GET / lists them.")
    if status == 429:
        return RateLimited(f"Rate limit reached: {exc.description}; retry after Retry-After seconds.")
    if status == 405:
        allowed = dict(exc.get_headers()).get("Allow", "")
        return MethodNotAllowed(f"{request.method} is not allowed on {request.path}; allowed: {allowed}.",
                                headers={"Allow": allowed})
    return cls(exc.description or exc.name, status=status)


def register_error_handlers(app: Flask) -> None:
    """Every error leaves as JSON: our own, Werkzeug's (404, 405, 413...) and unexpected ones."""

    @app.errorhandler(APIError)
    def handle_api_error(error: APIError):
        if isinstance(error, RateLimited):
            RATE_LIMIT_REJECTIONS.labels(error.code).inc()
        if error.status == 429 and "Retry-After" in error.headers and error.headers["Retry-After"].isdigit():
            error.details.setdefault("retry_after", int(error.headers["Retry-After"]))
        if error.status >= 500:
            log.warning("%s %s -> %s %s", request.method, request.path, error.status, error.message)
        body = json.loads(app.extensions["redactor"].redact(json.dumps(error_body(error))))
        response = jsonify(body)
        response.status_code = error.status
        response.headers.update(error.headers)
        return response

    @app.errorhandler(HTTPException)
    def handle_http_exception(exc: HTTPException):
        return handle_api_error(from_http_exception(exc))

    @app.before_request
    def refuse_oversized_request_head():
        """The URL and header limits, answered in JSON. Gunicorn's own limits (gunicorn.conf.py) are
        set above these, so its HTML error pages only answer what is larger still."""
        if len(request.environ.get("RAW_URI") or request.full_path) > MAX_URL_BYTES:
            raise BadRequest(f"The URL is longer than {MAX_URL_BYTES} bytes.", status=414, code="uri_too_long")
        if any(len(name) + len(value) + 2 > MAX_HEADER_BYTES for name, value in request.headers.items()):
            raise BadRequest(f"A header is longer than {MAX_HEADER_BYTES} bytes.", status=431,
                             code="header_too_large")

    @app.before_request
    def refuse_nul_characters():
        """No database stores U+0000 (PostgreSQL refuses it outright): refuse it at the door."""
        if "\x00" in request.path or "%00" in request.query_string.decode("latin-1"):
            raise BadRequest("The URL contains a NUL character (%00).", code="nul_character")

    @app.errorhandler(peewee.OperationalError)
    @app.errorhandler(peewee.InterfaceError)
    @app.errorhandler(MaxConnectionsExceeded)  # no free pooled connection within DATABASE_POOL_TIMEOUT_S
    def handle_database_unavailable(exc: Exception):
        log.error("database unavailable on %s %s: %s", request.method, request.path, exc)
        return handle_api_error(UpstreamUnavailable("The database is unavailable or busy; try again shortly.",
                                                    code="database_unavailable"))

    @app.errorhandler(Exception)
    def handle_unexpected(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return handle_api_error(APIError("Internal server error; the request id is in X-Request-ID."))
