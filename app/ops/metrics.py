"""`GET /metrics`: usage counters in Prometheus' text format, the same from every worker and instance."""
from __future__ import annotations

import time

from flask import Response, current_app
from flask_smorest import Blueprint

from app.core.openapi import errors, text_answer
from app.core.version import __version__
from app.llm.usage import prometheus_text, totals

bp = Blueprint("metrics", __name__, description="Usage counters for Prometheus.")


@bp.get("/metrics")
@text_answer("text/plain", "Prometheus' text exposition format.")
@errors((503, "The database is unavailable."))
def metrics():
    """LLM calls, tokens and latency per provider, model and outcome (Prometheus text format)."""
    rows = totals()
    body = prometheus_text(rows, __version__, time.time() - current_app.config["STARTED_AT"])
    return Response(body, mimetype="text/plain", headers={"Cache-Control": "no-cache"})
