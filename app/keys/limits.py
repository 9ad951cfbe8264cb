"""Limits and budgets per key, and the usage rows they are read from.

- Requests per minute (`rpm`): a flask-limiter application limit keyed by the key's id (moving
  window), checked before every request the key makes.
- Tokens per minute (`tpm`): a fixed-window counter in the same storage; a call is refused while
  the window is spent, and its tokens are added when it ends (so one call may overshoot, never two).
- Daily tokens and the monthly budget (USD): summed from the key's usage rows (written within
  USAGE_FLUSH_S of each call), checked before each LLM call.
- `/task` and `/revise`: TASK_RATE_LIMIT per submitted email.

The storage is memory by default (per process) and Redis when REDIS_URL is set (shared by every
worker and instance). Redis is reached through a blocking pool of WEB_WORKER_CONNECTIONS connections
per process, one for each request a gevent worker may serve at once: redis-py's default pool refuses
its 101st connection ("Too many connections"), which counted as a storage failure for a fifth of 250
concurrent requests. If the storage fails (down, or no free connection within REDIS_POOL_TIMEOUT_S),
RATE_LIMIT_FAIL_OPEN decides: serve unlimited or 503; either way it is logged (`StorageOutageLog`:
flask-limiter logs its own failures to its `flask-limiter` logger, which had no handler).
Over a limit: 429 with `Retry-After` and OpenAI's `x-ratelimit-*` headers, which the openai SDK
honours when it retries.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from datetime import timedelta
from typing import Any

from flask import Flask, Response, current_app, request
from flask_limiter import Limiter
from limits import RateLimitItemPerMinute
from limits.errors import StorageError
from limits.strategies import FixedWindowRateLimiter

from app.core.batches import BackgroundBatches
from app.core.caller import calling_key, current_caller
from app.core.clock import utcnow
from app.core.errors import Forbidden, RateLimited, RequestTimeout, UpstreamUnavailable
from app.keys import usage
from app.keys.prices import PriceTable
from app.keys.service import model_allowed
from app.llm.registry import Route
from app.llm.usage import UsageEvent

log = logging.getLogger("aiserver.keys.limits")
DEPLOY_ENDPOINTS = ("deploy.create_task", "deploy.revise_task")


def limit_owner() -> str:
    return current_caller().key_id or ""


def requests_limit() -> str:
    key = current_caller().key
    return f"{key.rpm}/minute" if key is not None and key.rpm else "1000000/minute"


def no_requests_limit() -> bool:
    key = current_caller().key
    return key is None or not key.rpm


def submitted_email() -> str:
    try:
        body = request.get_json(silent=True)
    except RequestTimeout:  # the body did not arrive in time: the view reads it again and answers the 408
        return ""
    email = body.get("email") if isinstance(body, dict) else None
    return email.strip().lower() if isinstance(email, str) else ""


class Access:
    """The per-key limits of one app: built in the factory, its `permit` and `record` handed to the
    gateway, `init_app` wiring flask-limiter and the headers."""

    def __init__(self, config: dict[str, Any], prices: PriceTable):
        self.prices = prices
        self.fail_open = config["RATE_LIMIT_FAIL_OPEN"]
        self.rows = BackgroundBatches(usage.write_rows, config["USAGE_FLUSH_S"], name="usage rows")
        self.limiter = Limiter(
            limit_owner, application_limits=[requests_limit], application_limits_exempt_when=no_requests_limit,
            strategy="moving-window", storage_uri=config["REDIS_URL"] or "memory://",
            storage_options=storage_options(config), swallow_errors=self.fail_open,
            key_prefix=config["QUEUE_NAME"] or "aiserver", headers_enabled=False)
        self._tokens: FixedWindowRateLimiter | None = None
        self.outages = StorageOutageLog(self.fail_open)

    @property
    def tokens(self) -> FixedWindowRateLimiter:
        if self._tokens is None:
            self._tokens = FixedWindowRateLimiter(self.limiter.storage)
        return self._tokens

    def init_app(self, app: Flask) -> None:
        """Register the limiter (after the authentication hook, which it reads) and the per-email
        limit on the deployment endpoints."""
        self.limiter.init_app(app)
        per_email = self.limiter.shared_limit(app.config["TASK_RATE_LIMIT"], scope="task-email",
                                              key_func=submitted_email)
        for endpoint in DEPLOY_ENDPOINTS:
            if endpoint in app.view_functions:
                app.view_functions[endpoint] = per_email(app.view_functions[endpoint])  # type: ignore[assignment]
        app.after_request(self.add_headers)
        app.register_error_handler(StorageError, self.storage_failed)
        self.outages.attach(logging.getLogger("flask-limiter"))

    # -- before an LLM call -------------------------------------------------------------------------

    def permit(self, routes: list[Route]) -> list[Route]:
        """The routes the calling key may use, after its token limits and budget are checked:
        403 when the first (the model asked for) is not among its models, 429 over a limit. Calls
        outside a request pass."""
        caller = calling_key()
        if caller is None or caller.key is None:
            return routes
        key = caller.key
        allowed = [route for route in routes if model_allowed(key.models, route.provider.name, route.model)]
        if routes and routes[0] not in allowed:  # what was asked for, never answered by another model instead
            first = routes[0]
            raise Forbidden(f"This key may not use the model {first.provider.name}/{first.model}; its models: "
                            f"{', '.join(key.models)}.", code="model_not_allowed", details={"param": "model"})
        self.check_tokens_per_minute(key)
        self.check_usage_limits(key)
        return allowed

    def check_tokens_per_minute(self, key: Any) -> None:
        if not key.tpm:
            return
        item = RateLimitItemPerMinute(key.tpm)
        try:
            if self.tokens.test(item, key.id, "tpm"):
                return
            reset, _ = self.tokens.get_window_stats(item, key.id, "tpm")
        except StorageError as error:
            self.storage_down(error)
            return
        wait = max(1, math.ceil(reset - time.time()))
        raise RateLimited(f"Rate limit reached: {key.tpm} tokens per minute for this key; retry in {wait}s.",
                          code="tokens_per_minute_exceeded",
                          headers={"Retry-After": str(wait), "x-ratelimit-limit-tokens": str(key.tpm),
                                   "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": f"{wait}s"})

    def check_usage_limits(self, key: Any) -> None:
        now = utcnow()
        if key.daily_tokens:
            tokens, _ = usage.spent(key.id, usage.day_start(now))
            if tokens >= key.daily_tokens:
                wait = seconds_until(usage.day_start(now) + timedelta(days=1), now)
                raise RateLimited(f"Daily token limit reached: {tokens} of {key.daily_tokens} tokens used today "
                                  "(UTC).", code="daily_tokens_exceeded", headers={"Retry-After": str(wait)})
        if key.monthly_budget_usd is not None:
            _, cost = usage.spent(key.id, usage.month_start(now))
            if cost >= key.monthly_budget_usd:
                next_month = (usage.month_start(now) + timedelta(days=32)).replace(day=1)
                raise RateLimited(f"Monthly budget reached: ${cost:.4f} of ${key.monthly_budget_usd:.2f} spent this "
                                  "month (UTC).", code="monthly_budget_exceeded",
                                  headers={"Retry-After": str(seconds_until(next_month, now))})

    # -- after an LLM call ----------------------------------------------------------------------------

    def record(self, event: UsageEvent) -> None:
        """Queue the call's usage row and add its tokens to the key's minute."""
        self.rows.add(usage.usage_row(event, self.prices))
        caller = calling_key()
        key = caller.key if caller else None
        spent = event.prompt_tokens + event.completion_tokens
        if key is None or not key.tpm or not spent:
            return
        try:
            self.tokens.hit(RateLimitItemPerMinute(key.tpm), key.id, "tpm", cost=spent)
        except StorageError as error:
            log.warning("could not count %s tokens for key %s: %s", spent, key.id, error.storage_error)

    # -- answers ------------------------------------------------------------------------------------

    def add_headers(self, response: Response) -> Response:
        """Retry-After on a 429 from flask-limiter, and OpenAI's request-limit headers for a key with
        an rpm limit."""
        try:
            current = self.limiter.current_limit
            if current is None:
                return response
            wait = max(0, math.ceil(current.reset_at - time.time()))
            if response.status_code == 429 and current.breached:
                response.headers["Retry-After"] = str(max(1, wait))
            if not no_requests_limit():
                response.headers["x-ratelimit-limit-requests"] = str(current.limit.amount)
                response.headers["x-ratelimit-remaining-requests"] = str(current.remaining)
                response.headers["x-ratelimit-reset-requests"] = f"{wait}s"
        except StorageError as error:
            self.outages.failed(error.storage_error)
        return response

    def storage_down(self, error: StorageError) -> None:
        self.outages.failed(error.storage_error)
        if self.fail_open:
            return
        raise UpstreamUnavailable("The rate-limit storage is unavailable; try again shortly.",
                                  code="rate_limit_storage_unavailable")

    def storage_failed(self, error: StorageError):
        """flask-limiter's own check failed and RATE_LIMIT_FAIL_OPEN is false: 503, in the API's shape."""
        self.outages.failed(error.storage_error)
        return current_app.handle_user_exception(
            UpstreamUnavailable("The rate-limit storage is unavailable; try again shortly.",
                                code="rate_limit_storage_unavailable"))


def storage_options(config: dict[str, Any]) -> dict[str, Any]:
    """The limits library's storage options: on Redis, a blocking pool sized for every connection a
    worker serves at once, whose wait for a free connection is bounded by REDIS_POOL_TIMEOUT_S."""
    options: dict[str, Any] = {"wrap_exceptions": True}
    url = config["REDIS_URL"]
    if url.startswith(("redis://", "rediss://", "unix://")):
        import redis

        options["connection_pool"] = redis.BlockingConnectionPool.from_url(
            url, max_connections=config["WEB_WORKER_CONNECTIONS"], timeout=config["REDIS_POOL_TIMEOUT_S"])
    return options


class StorageOutageLog(logging.Handler):
    """One line when the rate-limit storage fails, then at most one every INTERVAL_S with the count of
    failures since, whichever way it fails (open or closed): a Redis outage under load would otherwise
    write a traceback per request. Also the handler of flask-limiter's own logger, whose failures
    ("Failed to rate limit. Swallowing error") went nowhere."""

    INTERVAL_S = 10.0

    def __init__(self, fail_open: bool):
        super().__init__(logging.WARNING)
        self.outcome = "serving unlimited (RATE_LIMIT_FAIL_OPEN=true)" if fail_open else \
            "refusing with 503 (RATE_LIMIT_FAIL_OPEN=false)"
        self.guard = threading.Lock()  # not `lock`: logging.Handler holds that one around emit()
        self.last_logged = -math.inf
        self.unlogged = 0

    def attach(self, logger: logging.Logger) -> None:
        """Become `logger`'s outage handler (the last app built in a process owns it)."""
        for handler in [h for h in logger.handlers if isinstance(h, StorageOutageLog)]:
            logger.removeHandler(handler)
        logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, StorageError):
            self.failed(error.storage_error)
        elif record.levelno >= logging.WARNING:  # another failure (a limit's key function): one line, no traceback
            log.warning("flask-limiter: %s: %s", record.getMessage(), error)

    def failed(self, cause: object) -> None:
        with self.guard:
            now = time.monotonic()
            if now - self.last_logged < self.INTERVAL_S:
                self.unlogged += 1
                return
            since, self.unlogged, self.last_logged = self.unlogged, 0, now
        more = f" ({since} more failures since the last line)" if since else ""
        log.error("rate-limit storage unavailable, %s: %s: %s%s", self.outcome, type(cause).__name__, cause, more)


def seconds_until(moment, now) -> int:
    return max(1, math.ceil((moment - now).total_seconds()))
