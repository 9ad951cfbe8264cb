"""This instance's Prometheus metrics (prometheus-client), summed over its processes.

Each instance exposes its own counters at `/metrics` and Prometheus adds instances up (`sum by`),
so nothing is counted twice. Gunicorn's workers (and the queue worker under the same Supervisor)
are separate processes: with `PROMETHEUS_MULTIPROC_DIR` set (gunicorn.conf.py sets it up before
any worker imports this module) every process writes its values to memory-mapped files there and a
scrape adds them up (`MultiProcessCollector`); without it (tests, a plain `flask run`) the values
live in this process's default registry. Recording is an in-memory add under a lock: no I/O on the
request path.

Label values are bounded: routes are URL rule templates ("unmatched" for a 404), models are the
configured ones or "other" (`Gateway.model_label`), codes are the server's own error codes.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import REGISTRY, Collector

if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # the queue worker may start before Gunicorn made it
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # what Prometheus asks for first; legacy names keep the text 0.0.4-valid
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
FIRST_TOKEN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30)

HTTP_REQUESTS = Counter("aiserver_http_requests", "HTTP requests answered, by route template, method and status.",
                        ["route", "method", "status"])
HTTP_DURATION = Histogram("aiserver_http_request_duration_seconds",
                          "Seconds from a request's arrival to its response's last byte (a stream's end).",
                          ["route"], buckets=LATENCY_BUCKETS)
LLM_CALLS = Counter("aiserver_llm_calls", "Upstream LLM calls by provider, model and outcome (ok, "
                    "attempt_failed, interrupted, cancelled; cache_hit: answered from the response cache, no call).",
                    ["provider", "model", "outcome"])
LLM_DURATION = Histogram("aiserver_llm_call_duration_seconds", "Seconds an upstream call took, to its last byte.",
                         ["provider", "model"], buckets=LATENCY_BUCKETS)
LLM_FIRST_TOKEN = Histogram("aiserver_llm_time_to_first_token_seconds",
                            "Seconds from an upstream streaming call to its first item.", ["provider", "model"],
                            buckets=FIRST_TOKEN_BUCKETS)
LLM_TOKENS = Counter("aiserver_llm_tokens", "Tokens of upstream calls by kind (prompt, completion).",
                     ["provider", "model", "kind"])
LLM_COST = Counter("aiserver_llm_cost_usd", "Estimated cost of upstream calls in US dollars (the price table's "
                   "models; others count 0).", ["provider", "model"])
STREAMS_IN_FLIGHT = Gauge("aiserver_streams_in_flight", "Upstream streams being relayed right now.",
                          multiprocess_mode="livesum")
RATE_LIMIT_REJECTIONS = Counter("aiserver_rate_limit_rejections", "429 answers by error code (rate_limited, "
                                "tokens_per_minute_exceeded, ...).", ["code"])
JOBS = Counter("aiserver_jobs", "Background jobs finished, by job name and outcome (complete, error, ...).",
               ["job", "outcome"])


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(route, method, str(status)).inc()
    HTTP_DURATION.labels(route).observe(seconds)


def observe_call(provider: str, model: str, outcome: str, seconds: float, prompt_tokens: int,
                 completion_tokens: int, cost_usd: float, first_item_s: float | None) -> None:
    """One upstream call: `model` is already the bounded label. A cache hit is counted, but it made no
    call, so it has no duration to observe."""
    LLM_CALLS.labels(provider, model, outcome).inc()
    if outcome == "cache_hit":
        return
    LLM_DURATION.labels(provider, model).observe(seconds)
    if first_item_s is not None:
        LLM_FIRST_TOKEN.labels(provider, model).observe(first_item_s)
    if prompt_tokens:
        LLM_TOKENS.labels(provider, model, "prompt").inc(prompt_tokens)
    if completion_tokens:
        LLM_TOKENS.labels(provider, model, "completion").inc(completion_tokens)
    if cost_usd:
        LLM_COST.labels(provider, model).inc(cost_usd)


UPSTREAM_STATES = {"healthy": 0, "probing": 1, "cooling": 2}


class ScrapeTimeGauges(Collector):
    """Values read when Prometheus scrapes, not counted: build info, uptime and the queue's depth."""

    def __init__(self, version: str, started_at: float, queue_depth: Callable[[], int | None],
                 upstreams: Callable[[], list[dict]] = list):
        self.version, self.started_at, self.queue_depth = version, started_at, queue_depth
        self.upstreams = upstreams

    def collect(self) -> Iterator[GaugeMetricFamily]:
        info = GaugeMetricFamily("aiserver_info", "Build information.", labels=["version"])
        info.add_metric([self.version], 1)
        yield info
        yield GaugeMetricFamily("aiserver_uptime_seconds", "Seconds since this process started.",
                                value=time.time() - self.started_at)
        depth = self.queue_depth()
        if depth is not None:  # the queue is unreachable: no sample rather than a wrong one
            yield GaugeMetricFamily("aiserver_queue_depth", "Jobs waiting in the background queue (shared by "
                                    "every instance on one Redis).", value=depth)
        state = GaugeMetricFamily("aiserver_upstream_state", "Each configured upstream's shared health: 0 healthy, "
                                  "1 probing, 2 cooling.", labels=["upstream"])
        failures = GaugeMetricFamily("aiserver_upstream_consecutive_failures", "Failures in a row that say the "
                                     "upstream is unwell.", labels=["upstream"])
        for row in self.upstreams():
            state.add_metric([row["upstream"]], UPSTREAM_STATES[row["state"]])
            failures.add_metric([row["upstream"]], row["consecutive_failures"])
        yield state
        yield failures


def exposition(scrape_time: Collector) -> bytes:
    """The text exposition of every process's metrics (or this process's alone) plus `scrape_time`'s."""
    registry = CollectorRegistry()
    registry.register(scrape_time)
    directory = multiprocess_dir()
    if directory:
        MultiProcessCollector(registry, path=directory)
        return generate_latest(registry)
    return generate_latest(REGISTRY) + generate_latest(registry)
