"""Limits and budgets per key, held under concurrency.

- Requests per minute (`rpm`): a flask-limiter application limit keyed by the key's id, checked
  before every request the key makes.
- Tokens per minute (`tpm`), daily tokens and the monthly budget (USD): reserved before every LLM
  call (chat, stream, embeddings, token count: the gateway's `permit`), settled when it ends. The
  reservation is the call's `Demand` (its prompt at about four characters a token, plus its
  `max_tokens`, or RESERVE_MAX_TOKENS when it sets none) priced at its model's price; a call is
  refused while a counter (used plus reserved) is already at its limit, so however many calls run at
  once, a limit is passed by at most one call's reservation. When the call ends the counters are
  moved to what it used (the provider's usage, the price table's cost), or given back if nothing was
  answered. The day and month counters start from the key's usage rows when first made.
- `/task` and `/revise`: TASK_RATE_LIMIT per submitted email, counted only for requests whose
  secret matched (so wrong secrets cannot lock an email out); wrong secrets are counted per client
  address (`request.remote_addr`: the one Caddy saw, with TRUSTED_PROXIES), TASK_SECRET_FAILURE_LIMIT,
  after which that address is answered 429 until its window moves on.

Every counter is shared by all workers and instances (`app.keys.counters`): Redis when REDIS_URL is
set (flask-limiter's moving window), else the database (its sliding window counter), never one
process's memory, where each worker counted on its own. Redis is reached through a blocking pool of
WEB_WORKER_CONNECTIONS connections per process, one for each request a gevent worker may serve at
once: redis-py's default pool refuses its 101st connection ("Too many connections"), which counted
as a storage failure for a fifth of 250 concurrent requests. If the storage fails (down, or no free
connection within REDIS_POOL_TIMEOUT_S), RATE_LIMIT_FAIL_OPEN decides: serve unlimited or 503;
either way it is logged (`StorageOutageLog`: flask-limiter logs its own failures to its
`flask-limiter` logger, which had no handler). Over a limit: 429 with `Retry-After` and OpenAI's
`x-ratelimit-*` headers, which the openai SDK honours when it retries.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from datetime import datetime, timedelta
from typing import Any

from flask import Flask, Response, current_app, g, request
from flask_limiter import Limiter
from flask_limiter.errors import RateLimitExceeded
from limits.errors import StorageError
from redis import Redis, RedisError

from app.core.batches import BackgroundBatches
from app.core.caller import calling_key, current_caller
from app.core.clock import utcnow
from app.core.errors import Forbidden, RateLimited, RequestTimeout, UpstreamUnavailable
from app.keys import usage
from app.keys.counters import Claim, DatabaseCounters, RedisCounters
from app.keys.prices import PriceTable
from app.keys.service import model_allowed
from app.llm.registry import Route
from app.llm.usage import Demand, Permit, UsageEvent

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


def no_limit_applies() -> bool:
    """No request limit applies to this request: its key has no rpm and it is no deployment endpoint
    (whose per-email limits apply to everyone). flask-limiter then skips the request at once, where it
    otherwise resolved, parsed and exempted the application limit on every request (~60 µs)."""
    return no_requests_limit() and request.endpoint not in DEPLOY_ENDPOINTS


def submitted_email() -> str:
    try:
        body = request.get_json(silent=True)
    except RequestTimeout:  # the body did not arrive in time: the view reads it again and answers the 408
        return ""
    email = body.get("email") if isinstance(body, dict) else None
    return email.strip().lower() if isinstance(email, str) else ""


def secret_matched(response: Response) -> bool:
    """Whether a `/task` or `/revise` request passed its verification secret (the view marks it): only
    those count against their email, so nobody can spend another's limit with wrong secrets."""
    return bool(g.get("task_secret_matched"))


def secret_refused(response: Response) -> bool:
    """Whether a `/task` or `/revise` request was refused for its secret: counted per client address."""
    return response.status_code == 403 and not g.get("task_secret_matched")


def client_address() -> str:
    return request.remote_addr or ""


class Access:
    """The per-key limits of one app: built in the factory, its `permit` and `record` handed to the
    gateway, `init_app` wiring flask-limiter and the headers."""

    def __init__(self, config: dict[str, Any], prices: PriceTable):
        self.prices = prices
        self.fail_open = config["RATE_LIMIT_FAIL_OPEN"]
        self.completion_cap = config["RESERVE_MAX_TOKENS"]
        self.rows = BackgroundBatches(usage.write_rows, config["USAGE_FLUSH_S"], name="usage rows")
        options = storage_options(config)
        prefix = config["QUEUE_NAME"] or "aiserver"
        self.limiter = Limiter(
            limit_owner, application_limits=[requests_limit], application_limits_exempt_when=no_requests_limit,
            strategy="moving-window" if config["REDIS_URL"] else "sliding-window-counter",
            storage_uri=config["REDIS_URL"] or "aiserver-database://", storage_options=options,
            swallow_errors=self.fail_open, key_prefix=prefix, headers_enabled=False)
        self.counters: RedisCounters | DatabaseCounters = DatabaseCounters()
        if "connection_pool" in options:
            self.counters = RedisCounters(Redis(connection_pool=options["connection_pool"]), prefix)
        self.outages = StorageOutageLog(self.fail_open)

    def init_app(self, app: Flask) -> None:
        """Register the limiter (after the authentication hook, which it reads) and the per-email
        limit on the deployment endpoints."""
        self.limiter.init_app(app)
        self.limiter.request_filter(no_limit_applies)
        per_email = self.limiter.shared_limit(app.config["TASK_RATE_LIMIT"], scope="task-email",
                                              key_func=submitted_email, deduct_when=secret_matched)
        wrong_secrets = self.limiter.shared_limit(app.config["TASK_SECRET_FAILURE_LIMIT"], scope="task-secret",
                                                  key_func=client_address, deduct_when=secret_refused)
        for endpoint in DEPLOY_ENDPOINTS:
            if endpoint in app.view_functions:
                app.view_functions[endpoint] = wrong_secrets(per_email(app.view_functions[endpoint]))  # type: ignore
        app.after_request(self.add_headers)
        app.register_error_handler(StorageError, self.storage_failed)
        app.register_error_handler(RateLimitExceeded, self.limit_reached)
        self.outages.attach(logging.getLogger("flask-limiter"))

    # -- before an LLM call ------------------------------------------------------------------------

    def permit(self, routes: list[Route], demand: Demand) -> Permit:
        """The routes the calling key may use, with `demand` reserved against its token limits and
        budget: 403 when the first route (the model asked for) is not among its models, 429 while a
        limit is reached. Calls outside a request, and keys without token limits, reserve nothing."""
        caller = calling_key()
        if caller is None or caller.key is None:
            return Permit(routes)
        key = caller.key
        allowed = [route for route in routes if model_allowed(key.models, route.provider.name, route.model)]
        if routes and routes[0] not in allowed:  # what was asked for, never answered by another model instead
            first = routes[0]
            raise Forbidden(f"This key may not use the model {first.provider.name}/{first.model}; its models: "
                            f"{', '.join(key.models)}.", code="model_not_allowed", details={"param": "model"})
        if not (key.tpm or key.daily_tokens or key.monthly_budget_usd is not None):
            return Permit(allowed)
        reservation = Reservation(self, key, self.tokens_of(demand), self.cost_of(routes, demand))
        return Permit(allowed, reservation.settle)

    def tokens_of(self, demand: Demand) -> int:
        completion = self.completion_cap if demand.completion_tokens is None else demand.completion_tokens
        return demand.prompt_tokens + completion

    def cost_of(self, routes: list[Route], demand: Demand) -> float:
        """The demand at the price of the model asked for (a fallback's own price is settled later)."""
        completion = self.completion_cap if demand.completion_tokens is None else demand.completion_tokens
        return self.prices.cost(routes[0].model, demand.prompt_tokens, completion) if routes else 0.0

    def claims(self, key: Any, tokens: int, cost: float, now: datetime) -> list[Claim]:
        """The counters a call of `key` reserves `tokens` and `cost` in, for the limits it has."""
        claims = []
        if key.tpm:
            claims.append(Claim(f"tpm:{key.id}:{int(time.time() // 60)}", tokens, key.tpm, 120))
        if key.daily_tokens:
            claims.append(Claim(f"day:{key.id}:{now:%Y-%m-%d}", tokens, key.daily_tokens, 2 * 86400,
                                lambda: usage.spent(key.id, usage.day_start(now))[0]))
        if key.monthly_budget_usd is not None:
            claims.append(Claim(f"month:{key.id}:{now:%Y-%m}", cost, key.monthly_budget_usd, 32 * 86400,
                                lambda: usage.spent(key.id, usage.month_start(now))[1]))
        return claims

    def take(self, claims: list[Claim]) -> bool:
        """Reserve every claim or raise the 429 of the first limit reached; False when the storage is
        down and RATE_LIMIT_FAIL_OPEN lets the call through unreserved."""
        try:
            refused = self.counters.take(claims)
        except RedisError as error:  # the storage, which may fail open
            self.storage_down(StorageError(error))
            return False
        if refused is not None:
            raise over_limit(refused, utcnow())
        return True

    def give(self, name: str, amount: float) -> None:
        try:
            self.counters.add(name, amount)
        except RedisError as error:
            log.warning("could not settle %s of %s: %s", amount, name, error)

    # -- after an LLM call ----------------------------------------------------------------------------

    def record(self, event: UsageEvent) -> None:
        """Queue the call's usage row (its reservation is settled by its `Permit`)."""
        self.rows.add(usage.usage_row(event, self.prices))

    # -- answers ------------------------------------------------------------------------------------

    def limit_reached(self, error: RateLimitExceeded) -> Any:
        """flask-limiter's 429 in words, with the wait in seconds (`Retry-After`, and `retry_after` in
        the body)."""
        current = self.limiter.current_limit
        wait = max(1, math.ceil(current.reset_at - time.time())) if current else 60
        return current_app.handle_user_exception(RateLimited(
            f"Too many requests: this key may make {error.description}; try again in {wait} seconds.",
            headers={"Retry-After": str(wait)}))

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


class Reservation:
    """What one call holds in its key's counters, until `settle` moves it to what the call used."""

    def __init__(self, access: Access, key: Any, tokens: int, cost: float):
        self.access = access
        self.tokens, self.cost = tokens, cost
        self.claims = access.claims(key, tokens, cost, utcnow())
        self.held = access.take(self.claims)

    def settle(self, event: UsageEvent | None) -> None:
        """Move each counter from the reservation to `event`'s tokens and cost (None: nothing used)."""
        if not self.held:
            return
        self.held = False
        used = event.prompt_tokens + event.completion_tokens if event else 0
        cost = self.access.prices.cost_of(event) if event else 0.0
        for claim in self.claims:
            spent, reserved = (cost, self.cost) if claim.name.startswith("month:") else (used, self.tokens)
            self.access.give(claim.name, spent - reserved)


def over_limit(claim: Claim, now: datetime) -> RateLimited:
    """The 429 for a limit reached, with its Retry-After (and OpenAI's token headers for tpm)."""
    kind = claim.name.split(":", 1)[0]
    if kind == "tpm":
        wait = max(1, 60 - int(time.time() % 60))
        limit = int(claim.limit)
        return RateLimited(f"Rate limit reached: {limit} tokens per minute for this key; retry in {wait}s.",
                           code="tokens_per_minute_exceeded",
                           headers={"Retry-After": str(wait), "x-ratelimit-limit-tokens": str(limit),
                                    "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": f"{wait}s"})
    if kind == "day":
        return RateLimited(f"Daily token limit reached: {int(claim.limit)} tokens used or reserved today (UTC).",
                           code="daily_tokens_exceeded",
                           headers={"Retry-After": str(seconds_until(usage.day_start(now) + timedelta(days=1), now))})
    next_month = (usage.month_start(now) + timedelta(days=32)).replace(day=1)
    return RateLimited(f"Monthly budget reached: ${claim.limit:.2f} spent or reserved this month (UTC).",
                       code="monthly_budget_exceeded", headers={"Retry-After": str(seconds_until(next_month, now))})


def seconds_until(moment, now) -> int:
    return max(1, math.ceil((moment - now).total_seconds()))
