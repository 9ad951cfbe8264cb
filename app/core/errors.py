"""Typed errors shared by services and views, and the handlers that turn any error into JSON.

Services raise these; views never write error JSON by hand. Three shapes exist: ours,
`{"error": {"message", "type", "code", ...}, "success": false}`, OpenAI's
`{"error": {"message", "type", "code", "param"}}` for the `/v1` API (see `openai_error_body`), and
Anthropic's `{"type": "error", "error": {"type", "message"}}` for its Messages API
(`anthropic_error_body`). All carry the same `message`, so one client parser fits them.
"""
from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("aiserver.errors")


class APIError(Exception):
    """An error with an HTTP status and a message safe to show a client."""

    status = 500
    type = "server_error"
    code = "internal_error"

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 details: dict[str, Any] | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.details = details or {}
        self.headers = headers or {}

    def to_dict(self) -> dict[str, Any]:
        body = {"message": self.message, "type": self.type, "code": self.code}
        body.update(self.details)
        return body


class BadRequest(APIError):
    status, type, code = 400, "invalid_request_error", "bad_request"


class ValidationFailed(BadRequest):
    """A body or query that does not match its schema; `fields` maps each field to its problems."""

    code = "validation_error"

    def __init__(self, fields: dict[str, Any], status: int = 400):
        path, first = next(iter(problems(fields)), ("", "invalid"))
        names = path or ", ".join(sorted(str(k) for k in fields)) or "body"
        super().__init__(f"Invalid request: {names}: {first}", status=status,
                         details={"fields": fields, "param": next(iter(fields), None)})


def problems(messages: Any, path: str = "") -> list[tuple[str, str]]:
    """Marshmallow's nested error messages flattened, in order, as (dotted path, message):
    `[("files.0.filename", "A filename must not contain '/'.")]`. Messages about a whole object
    (`_schema`, `_json`) take that object's path."""
    if isinstance(messages, dict):
        return [found for key, value in messages.items()
                for found in problems(value, path if key in ("_schema", "_json") else f"{path}.{key}".lstrip("."))]
    if isinstance(messages, list):
        return [found for item in messages for found in problems(item, path)]
    return [(path, str(messages))]


def describe_problems(messages: Any, limit: int | None = None) -> str:
    """The first `limit` problems (default: all) on one line: "files.0.filename: ...; action: ..."."""
    return "; ".join(f"{path}: {message}" if path else message for path, message in problems(messages)[:limit])


class Unauthorized(APIError):
    status, type, code = 401, "authentication_error", "unauthorized"


class Forbidden(APIError):
    status, type, code = 403, "permission_error", "forbidden"


class NotFound(APIError):
    status, type, code = 404, "not_found_error", "not_found"


class MethodNotAllowed(APIError):
    status, type, code = 405, "invalid_request_error", "method_not_allowed"


class Conflict(APIError):
    status, type, code = 409, "conflict_error", "conflict"


def size_in_words(size: int) -> str:
    """A byte count as people say it, for messages: "3.2 MB", "900 KB", "12 bytes"."""
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f}".rstrip("0").rstrip(".") + " MB"
    if size >= 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size} bytes"


class PayloadTooLarge(APIError):
    status, type, code = 413, "invalid_request_error", "payload_too_large"


class RequestTimeout(APIError):
    """The client did not finish sending its request in time (REQUEST_READ_TIMEOUT_S)."""

    status, type, code = 408, "invalid_request_error", "request_timeout"


class UnsupportedMediaType(APIError):
    status, type, code = 415, "invalid_request_error", "unsupported_media_type"


class RateLimited(APIError):
    status, type, code = 429, "rate_limit_error", "rate_limited"


class NotConfigured(APIError):
    """A feature whose settings are missing: the message names the variable to set."""

    status, type, code = 503, "service_unavailable", "not_configured"


class UpstreamError(APIError):
    """A remote service (an LLM provider, GitHub) failed in a way that is not the caller's fault."""

    status, type, code = 502, "upstream_error", "upstream_error"


class UpstreamTimeout(UpstreamError):
    status, code = 504, "upstream_timeout"


class UpstreamUnavailable(UpstreamError):
    status, code = 503, "upstream_unavailable"


OPENAI_SHAPED_PREFIXES = ("/v1/", "/api/v1/")


def openai_shaped(path: str) -> bool:
    """Whether errors on `path` take OpenAI's shape (the `/v1` API) rather than ours."""
    return path.startswith(OPENAI_SHAPED_PREFIXES) and not anthropic_shaped(path)


ANTHROPIC_SHAPED_PREFIXES = ("/anthropic/", "/v1/messages")
# Anthropic's error types by status (its API's documented set); others are `api_error`
ANTHROPIC_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                         403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                         429: "rate_limit_error", 500: "api_error", 504: "timeout_error", 529: "overloaded_error"}


def anthropic_shaped(path: str) -> bool:
    """Whether errors on `path` take Anthropic's shape (its Messages API, also under `/anthropic`)."""
    return path.startswith(ANTHROPIC_SHAPED_PREFIXES)


def anthropic_error_body(error: APIError) -> dict[str, Any]:
    """Anthropic's error shape, so the anthropic SDK raises its own typed exceptions. Its `type` is
    Anthropic's for the status (a 4xx other than those it names is an `invalid_request_error`); every
    route being overloaded is Anthropic's `overloaded_error`, which clients such as Claude Code retry."""
    if isinstance(error, UpstreamUnavailable):
        kind = "overloaded_error"
    else:
        kind = ANTHROPIC_ERROR_TYPES.get(error.status, "invalid_request_error" if error.status < 500 else "api_error")
    return {"type": "error", "error": {"type": kind, "message": error.message}}


def openai_error_body(error: APIError) -> dict[str, Any]:
    """OpenAI's error shape, used by the `/v1` API so the openai SDK raises its own exceptions."""
    return {"error": {"message": error.message, "type": error.type, "code": error.code,
                      "param": error.details.get("param")}}


