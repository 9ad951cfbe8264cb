"""Request ids and the one access line per request, written when its response is closed (for a
stream, after the last byte), so the line carries provider, model and tokens."""
from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from flask import Flask, current_app, g, request

from app.core.credentials import redact_tokens
from app.core.metrics import observe_request
from app.core.tracing import name_request

REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
access_log = logging.getLogger("aiserver.access")


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            try:
                record.request_id = g.get("request_id", "-")
            except RuntimeError:
                record.request_id = "-"
        return True


def init_request_logging(app: Flask) -> None:
    @app.before_request
    def assign_request_id():
        g.request_id = request_id_of(request.headers.get("X-Request-ID", ""))
        g.started = time.perf_counter()
        g.request_log = {}

    @app.after_request
    def log_when_closed(response):
        response.headers["X-Request-ID"] = g.get("request_id", "-")
        fields = g.get("request_log", {})
        fields.update(method=request.method, path=request.path, status=response.status_code,
                      client=request.remote_addr)
        request_id, started = g.get("request_id", "-"), g.get("started", time.perf_counter())
        rule = request.url_rule.rule if request.url_rule else None
        route = rule or "unmatched"  # templates: a bounded label
        name_request(current_app.extensions["tracing"].current(), request.method, rule, request_id)
        response.call_on_close(lambda: log_access(fields, request_id, started, route))
        return response


def request_id_of(incoming: str) -> str:
    """The client's X-Request-ID when it is a plain id, else a new one: one that is too long, holds other
    characters, or is shaped like a credential (a client key sent in the wrong header, `ais-...`),
    which would otherwise be logged on every line of the request and echoed back."""
    if REQUEST_ID_RE.fullmatch(incoming) and redact_tokens(incoming) == incoming:
        return incoming
    return uuid.uuid4().hex


def log_access(fields: dict[str, Any], request_id: str, started: float, route: str) -> None:
    seconds = time.perf_counter() - started
    observe_request(route, fields["method"], fields["status"], seconds)
    fields["latency_ms"] = round(seconds * 1000, 1)
    text = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
    access_log.info("%s", text, extra={"request_id": request_id, "fields": fields})  # escaped by EscapeArguments
