"""The call log: one row per request to an LLM front door, read at `/admin/calls` and `/v1/key/calls`.
`init_app` wires its request hooks into the factory; `register_jobs` adds its nightly prune."""
from __future__ import annotations

from typing import Any

from flask import Flask


def init_app(app: Flask, calls: Any) -> None:
    from app.calls.capture import init_capture

    init_capture(app, calls)


def register_jobs(huey: Any, config: dict[str, Any]) -> dict[str, Any]:
    """The nightly prune of payloads older than LOG_PAYLOADS_RETENTION_DAYS and calls older than
    CALL_LOG_RETENTION_DAYS; returns {name: task}."""
    from huey import crontab

    from app.calls.service import prune

    def prune_calls() -> tuple[int, int]:
        return prune(config["CALL_LOG_RETENTION_DAYS"], config["LOG_PAYLOADS_RETENTION_DAYS"])

    return {"prune_calls": huey.periodic_task(crontab(minute="47", hour="3"), name="prune_calls")(prune_calls)}
