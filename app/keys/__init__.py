"""Client API keys: who may call the server, what each key owns, its limits and budgets, and one
usage row per LLM call. `init_app` wires it into the factory."""
from __future__ import annotations

import functools
from typing import Any

from flask import Flask


def init_app(app: Flask, access: Any) -> None:
    """The authentication hook, then the limits (they read the caller it sets), then the CLI."""
    from app.keys.auth import init_auth
    from app.keys.cli import keys_cli
    from app.keys.secret import hash_secret

    app.extensions["key_hash_secret"] = functools.cache(lambda: hash_secret(app.config))
    init_auth(app, app.extensions["key_hash_secret"])
    access.init_app(app)
    app.cli.add_command(keys_cli)


def register_jobs(huey: Any, config: dict[str, Any]) -> dict[str, Any]:
    """The nightly prune of usage rows older than USAGE_RETENTION_DAYS (and of expired limit counters);
    returns {name: task}."""
    from huey import crontab

    from app.keys.counters import prune_counters
    from app.keys.usage import prune

    def prune_usage() -> int:
        prune_counters()
        return prune(config["USAGE_RETENTION_DAYS"])

    return {"prune_usage": huey.periodic_task(crontab(minute="41", hour="3"), name="prune_usage")(prune_usage)}
