"""`GET /metrics`: this instance's Prometheus metrics (see `app.core.metrics`), summed over its processes."""
from __future__ import annotations

from flask import Response, current_app
from flask_smorest import Blueprint

from app.core.jobqueue import queue_depth
from app.core.metrics import CONTENT_TYPE, ScrapeTimeGauges, exposition
from app.core.openapi import text_answer
from app.core.version import __version__
from app.ops.views import upstream_states


def configured_upstream_states() -> list[dict]:
    """The configured upstreams' rows only: labels stay bounded whatever models clients name."""
    return [row for row in upstream_states() if "provider" in row]

bp = Blueprint("metrics", __name__, description="This instance's metrics, for Prometheus.")


@bp.get("/metrics")
@text_answer("text/plain", "Prometheus' text exposition format (version 0.0.4).")
def metrics():
    """HTTP requests, latency and time-to-first-token histograms, upstream calls, tokens, cost, streams in
    flight, rate-limit rejections, each upstream's health, queue depth and job outcomes of this instance
    (Prometheus text format)."""
    huey = current_app.extensions["huey"]
    scrape_time = ScrapeTimeGauges(__version__, current_app.config["STARTED_AT"], lambda: queue_depth(huey),
                                   configured_upstream_states)
    return Response(exposition(scrape_time), content_type=CONTENT_TYPE, headers={"Cache-Control": "no-cache"})
