"""`GET /metrics`: usage counters in Prometheus' text format, the same from every worker and instance."""
from __future__ import annotations

import time

from flask import Blueprint, Response, current_app

from app.core.version import __version__
from app.llm.usage import prometheus_text, totals

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics():
    """LLM calls, tokens and latency per provider, model and outcome (Prometheus text format)."""
    rows = totals()
    body = prometheus_text(rows, __version__, time.time() - current_app.config["STARTED_AT"])
    return Response(body, mimetype="text/plain", headers={"Cache-Control": "no-cache"})
