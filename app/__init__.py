"""aiserver: one HTTP API over several LLM providers, with conversations, gists and deployments."""
from __future__ import annotations

import functools
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from app.core.version import __version__

if TYPE_CHECKING:  # imported in create_app: `python -m app.llm.modelsfile` (the master's check) needs neither
    from flask import Flask

__all__ = ["__version__", "create_app"]


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the application. `config` overrides settings read from the environment and `.env`.

    Every client (database, providers, GitHub session, job queue) is made here, once per process,
    and kept in `app.extensions`; importing the package does nothing else. The OpenAI and Anthropic
    providers make their SDK client at their first call (and keep it): importing an SDK costs more
    than the rest of the start-up (docs/performance.md, "Third cut").
    """
    from app.calls import init_app as init_calls
    from app.calls import register_jobs as register_call_jobs
    from app.calls.service import CallLog
    from app.conversations.system_prompt import SystemPrompt
    from app.core import db
    from app.core.config import load_settings, secret_values
    from app.core.http import client_connected
    from app.core.jobqueue import QuietQueueOutages, count_job_outcomes, make_huey
    from app.core.logs import EscapeArguments, RedactSecrets, configure_logging
    from app.core.metrics import observe_call
    from app.core.tracing import tracing_from_environ
    from app.deployments.jobs import register_jobs
    from app.integrations.github import client_from_config
    from app.integrations.netguard import fetch_image
    from app.keys import init_app as init_keys
    from app.keys import register_jobs as register_key_jobs
    from app.keys.limits import Access
    from app.keys.prices import PriceTable
    from app.llm.cli import models_cli
    from app.llm.gateway import Gateway, RetryPolicy
    from app.llm.genai_spans import AttemptSpans
    from app.llm.health import Health, HealthPolicy, make_board
    from app.llm.images import ImageFetcher
    from app.llm.modelsfile import ModelsFileError
    from app.llm.registry import build_registry
    from app.llm.response_cache import make_response_cache
    from app.ops import housekeeping
    from app.ops.health import ProviderHealth
    from app.web import register_blueprints
    from app.web.application import AiServerFlask
    from app.web.errors import register_error_handlers
    from app.web.request_log import RequestIdFilter, init_request_logging
    from app.web.slow_clients import SlowClientGuard

    app = AiServerFlask(__name__)
    app.config.update(load_settings())
    app.config.update(config or {})
    app.config["MAX_CONTENT_LENGTH"] = app.config["MAX_BODY_BYTES"]
    app.config["TRUSTED_HOSTS"] = app.config["TRUSTED_HOSTS"] or None  # Flask's None: any host
    app.config["STARTED_AT"] = time.time()
    app.json.sort_keys = False  # type: ignore[attr-defined]  # Flask's default provider has it

    tracing = app.extensions["tracing"] = tracing_from_environ(version=__version__)  # OTEL_*: standard variables
    redactor = RedactSecrets(secret_values(app.config) + tracing.secrets())
    app.extensions["redactor"] = redactor
    configure_logging(app.config, [RequestIdFilter(), QuietQueueOutages(), EscapeArguments(), redactor])
    db.init_app(app)
    images = ImageFetcher(functools.partial(fetch_image, allow_hosts=app.config["IMAGE_FETCH_ALLOW_HOSTS"],
                                            timeout=app.config["IMAGE_FETCH_TIMEOUT_S"]),
                          app.config["IMAGE_FETCH_MAX_BYTES"], app.config["IMAGE_FETCH_TOTAL_BYTES"])
    try:
        registry = build_registry(app.config, images)
    except ModelsFileError as error:
        if os.environ.get("FLASK_RUN_FROM_CLI") != "true":
            raise
        # a command (keys, db-upgrade, models check) still runs; the server refuses the file at start
        logging.getLogger("aiserver").error("%s", error)
        registry = build_registry({**app.config, "MODELS_FILE": ""}, images)
    app.extensions["providers"] = registry
    prices = PriceTable.from_config(app.config, registry.prices)
    access = app.extensions["access"] = Access(app.config, prices)
    app.extensions["price"] = prices.cost_of_usage  # (model, Usage) -> USD: /chat prices its answers with it

    calls = app.extensions["calls"] = CallLog(app.config, prices.cost_of, redactor.redact)

    def record(event):
        access.record(event)
        calls.observe(event)
        observe_call(event.provider, event.label or event.model, event.outcome, event.latency_ms / 1000,
                     event.prompt_tokens, event.completion_tokens, prices.cost_of(event),
                     None if event.first_item_ms is None else event.first_item_ms / 1000)

    health = app.extensions["upstream_health"] = Health(make_board(app.config), HealthPolicy.from_config(app.config))
    app.extensions["gateway"] = Gateway(registry, RetryPolicy.from_config(app.config), redact=redactor.redact,
                                        record=record, permit=access.permit, wanted=client_connected, health=health,
                                        strategy=app.config["UPSTREAM_STRATEGY"],
                                        whole_as_stream=app.config["WHOLE_ANSWERS_AS_STREAMS"],
                                        max_images=app.config["IMAGE_MAX_PARTS"],
                                        spans=AttemptSpans(tracing, redactor.redact))
    app.extensions["response_cache"] = make_response_cache(app.config)  # None: off (RESPONSE_CACHE_TTL_S=0)
    app.extensions["provider_health"] = ProviderHealth(registry, app.config["HEALTH_CACHE_S"], redactor.redact)
    app.extensions["huey"] = make_huey(app.config)
    count_job_outcomes(app.extensions["huey"])
    app.extensions["github"] = client_from_config(app.config)  # None without GITHUB_TOKEN
    app.extensions["system_prompt"] = SystemPrompt(app.config["SYSTEM_PROMPT_FILE"])
    register_jobs(app.extensions["huey"], app)
    app.extensions["housekeeping_jobs"] = housekeeping.register(app.extensions["huey"], app.config)
    app.extensions["housekeeping_jobs"].update(register_key_jobs(app.extensions["huey"], app.config))
    app.extensions["housekeeping_jobs"].update(register_call_jobs(app.extensions["huey"], app.config))
    register_error_handlers(app)
    init_request_logging(app)
    register_blueprints(app)
    init_keys(app, access)  # after the request id and the blueprints: it limits their views
    init_calls(app, calls)  # after the keys: a request they refuse never reached a front door
    app.wsgi_app = SlowClientGuard(app.wsgi_app, app.config["REQUEST_READ_TIMEOUT_S"],  # type: ignore[method-assign]
                                   app.config["REQUEST_READ_MAX_PER_CLIENT"], app.config["MAX_BODY_BYTES"])
    app.wsgi_app = tracing.wrap_wsgi(app.wsgi_app)  # type: ignore[method-assign]  # a server span per request
    trust_proxies(app, app.config["TRUSTED_PROXIES"])  # outside the guard: it counts the client Caddy saw
    app.cli.add_command(models_cli)
    return app


def trust_proxies(app: Flask, hops: int) -> None:
    """Believe the `X-Forwarded-For`/`-Proto`/`-Host` values that the `hops` proxies in front appended
    (the last `hops` of each), so `request.remote_addr` is the client the outermost proxy saw; what a
    client wrote into those headers itself stays unbelieved."""
    from werkzeug.middleware.proxy_fix import ProxyFix

    if hops > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
