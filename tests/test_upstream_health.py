"""Upstream health (`app.llm.health`) and the routing that reads it (`app.llm.gateway.Walk`).

The transitions with an injected clock (cooling after K sick failures, caller faults and rate limits
never counted, one probe at a time, doubled and capped cooldowns, a success resetting), on each board
(this process, a memory-mapped file two processes share, Redis with concurrent writers); then through
a real Gunicorn with two workers and an alias over a failing (503) or hung Anthropic fake and a
healthy OpenAI one: at most K failed calls in all, then none while it cools (both workers agree),
one probe per cooldown, and Anthropic answering again once it recovers; two instances on one Redis
sharing it; and weighted spreading, per-upstream rpm and a 429 answered by another upstream."""
from __future__ import annotations

import concurrent.futures
import json
import random
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
import redis
import requests
from prometheus_client.mmap_dict import MmapedDict

from app.llm.gateway import Gateway, RetryPolicy
from app.llm.health import FileBoard, Health, HealthPolicy, MemoryBoard, RedisBoard
from app.llm.providers.base import CompletionRequest, ProviderFailure, UpstreamTimedOut, classify_status
from app.llm.providers.openai_compatible import OpenAICompatibleProvider
from app.llm.registry import ModelGroup, Registry, Route
from tests.conftest import REDIS_URL, ROOT, provider_config
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.server import Reply

UPSTREAM = "anthropic/claude-sonnet-5-5"
POLICY = HealthPolicy(failures=3, cooldown=10.0, cooldown_max=40.0, probe_lease=30.0)


def sick(status: int | None = 503) -> ProviderFailure:
    return classify_status(status, "upstream failed") if status else UpstreamTimedOut("no first byte")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"health-test-{uuid.uuid4().hex[:10]}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=f"{prefix}:*", count=200):
        client.delete(key)
    client.close()


@pytest.fixture(params=["memory", "file", "redis"])
def board(request, tmp_path, redis_prefix):
    if request.param == "memory":
        return MemoryBoard()
    if request.param == "file":
        return FileBoard(str(tmp_path / "health"))
    return RedisBoard(redis.Redis.from_url(REDIS_URL), redis_prefix, ttl=60)


def status_of(health: Health, name: str = UPSTREAM) -> str:
    return health.states([name])[name].status(health.clock())


# -- transitions, with an injected clock, on every board ---------------------------------------------

def test_k_sick_failures_cool_an_upstream_and_a_success_makes_it_healthy_again(board):
    clock = Clock()
    health = Health(board, POLICY, clock)
    for failure in (sick(500), sick(None)):  # a 5xx and a timeout both count
        health.failed(UPSTREAM, failure)
        assert status_of(health) == "healthy"
    health.failed(UPSTREAM, sick(529))
    assert status_of(health) == "cooling"
    assert health.states([UPSTREAM])[UPSTREAM].cooling_until == clock.now + 10
    clock.now += 9.9
    assert status_of(health) == "cooling"
    clock.now += 0.2
    assert status_of(health) == "probing"
    health.succeeded(UPSTREAM, 120.0)
    state = health.states([UPSTREAM])[UPSTREAM]
    assert (state.status(clock.now), state.consecutive_failures, state.cooldowns) == ("healthy", 0, 0)
    health.failed(UPSTREAM, sick())
    health.failed(UPSTREAM, sick())
    assert status_of(health) == "healthy"  # the count restarted: two failures are not three


@pytest.mark.parametrize("status", [429, 400, 401, 403, 404, 413, 422])
def test_rate_limits_and_caller_faults_never_count(board, status):
    health = Health(board, POLICY, Clock())
    for _ in range(10):
        health.failed(UPSTREAM, classify_status(status, "not the upstream's illness", retry_after=1.0))
    state = health.states([UPSTREAM])[UPSTREAM]
    assert (state.status(health.clock()), state.consecutive_failures) == ("healthy", 0)
    assert UPSTREAM not in board.names()  # nothing written: any model name a client sends would take a place


def test_a_probe_is_granted_to_one_caller_at_a_time(board):
    clock = Clock()
    first, second = Health(board, POLICY, clock), Health(board, POLICY, clock)  # two workers on one board
    for _ in range(3):
        first.failed(UPSTREAM, sick())
    assert not first.take_probe(UPSTREAM) and not second.take_probe(UPSTREAM)  # cooling: nobody probes
    clock.now += 10
    granted = [first.take_probe(UPSTREAM), second.take_probe(UPSTREAM), first.take_probe(UPSTREAM)]
    assert granted == [True, False, False]
    clock.now += POLICY.probe_lease  # the probe never reported back: another may probe
    assert second.take_probe(UPSTREAM) and not first.take_probe(UPSTREAM)


def test_a_failed_probe_doubles_the_cooldown_up_to_the_cap(board):
    clock = Clock()
    health = Health(board, POLICY, clock)
    for _ in range(3):
        health.failed(UPSTREAM, sick())
    cooldowns = []
    for _ in range(4):  # 10 s, then each failed probe: 20, 40, 40 (the cap)
        state = health.states([UPSTREAM])[UPSTREAM]
        cooldowns.append(state.cooling_until - clock.now)
        clock.now = state.cooling_until
        assert health.take_probe(UPSTREAM)
        health.failed(UPSTREAM, sick())
    assert cooldowns == [10, 20, 40, 40]
    clock.now = health.states([UPSTREAM])[UPSTREAM].cooling_until
    assert health.take_probe(UPSTREAM)
    health.succeeded(UPSTREAM, 50.0)
    for _ in range(3):
        health.failed(UPSTREAM, sick())
    assert health.states([UPSTREAM])[UPSTREAM].cooling_until - clock.now == 10  # a success reset the doubling


# -- the boards shared: two processes on one file, many threads on Redis -------------------------------

FAIL_IN_CHILD = """
import sys
from app.llm.health import FileBoard, Health, HealthPolicy
from app.llm.providers.base import TransientFailure
health = Health(FileBoard(sys.argv[1]), HealthPolicy(failures=10**9))
sys.stdout.write("ready\\n"); sys.stdout.flush(); sys.stdin.readline()
for _ in range(int(sys.argv[2])):
    health.failed(sys.argv[3], TransientFailure("down", status=503))
print(health.states([sys.argv[3]])[sys.argv[3]].consecutive_failures)
"""


def run_children(path: Path, count: int, failures: int, name: str) -> list[str]:
    """`count` processes that each record `failures` sick failures of `name` on the file at once."""
    children = [subprocess.Popen([sys.executable, "-c", FAIL_IN_CHILD, str(path), str(failures), name], cwd=ROOT,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(count)]
    try:
        for child in children:  # every child has opened the file before any writes: they run together
            assert child.stdout.readline() == "ready\n"
        for child in children:
            child.stdin.write("go\n")
            child.stdin.flush()
        return [child.communicate(timeout=20)[0] for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()


def test_the_file_board_is_shared_by_processes_and_counts_their_concurrent_failures(tmp_path):
    path = tmp_path / "health"
    clock = Clock()
    here = Health(FileBoard(str(path)), POLICY, clock)  # opened before the others write
    here.failed("openai/gpt-4o", sick())
    run_children(path, count=3, failures=300, name=UPSTREAM)
    states = here.states([UPSTREAM, "openai/gpt-4o"])
    assert states[UPSTREAM].consecutive_failures == 900 and states[UPSTREAM].window_failed == 900
    assert states["openai/gpt-4o"].consecutive_failures == 1  # the slot it had kept its state
    outputs = run_children(path, count=1, failures=1, name="openai/gpt-4o")
    assert outputs == ["2\n"]  # the child read what this process wrote
    assert sorted(here.board.names()) == sorted([UPSTREAM, "openai/gpt-4o"])


def test_the_file_board_counts_concurrent_failures_from_threads_of_one_process(tmp_path):
    """The job worker runs tasks in threads over one board: a `flock` does not exclude the threads of
    the process holding it, so the board needs a lock of its own (this lost about a quarter of the
    updates without one)."""
    health = Health(FileBoard(str(tmp_path / "health")), HealthPolicy(failures=10**9))

    def fail(_: int) -> None:
        for _ in range(300):
            health.failed(UPSTREAM, sick())
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, to meet the race in a few runs
    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(fail, range(8)))
    finally:
        sys.setswitchinterval(interval)
    assert health.states([UPSTREAM])[UPSTREAM].consecutive_failures == 2400


def test_the_redis_board_counts_concurrent_failures_from_many_threads(redis_prefix):
    boards = [RedisBoard(redis.Redis.from_url(REDIS_URL), redis_prefix, ttl=60) for _ in range(2)]  # two instances
    healths = [Health(board, HealthPolicy(failures=10**9)) for board in boards]

    def fail(n: int) -> None:
        for _ in range(25):
            healths[n % 2].failed(UPSTREAM, sick())
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(fail, range(16)))
    state = healths[0].states([UPSTREAM])[UPSTREAM]
    assert (state.consecutive_failures, state.window_failed) == (400, 400)


def test_the_redis_board_grants_one_probe_among_concurrent_callers(redis_prefix):
    clock = Clock()
    board = RedisBoard(redis.Redis.from_url(REDIS_URL), redis_prefix, ttl=60)
    health = Health(board, POLICY, clock)
    for _ in range(3):
        health.failed(UPSTREAM, sick())
    callers = [Health(RedisBoard(redis.Redis.from_url(REDIS_URL), redis_prefix, ttl=60), POLICY, clock)
               for _ in range(12)]
    granted = []
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        for _ in range(5):  # each round: the cooldown ends, twelve race for the probe, which fails
            clock.now = health.states([UPSTREAM])[UPSTREAM].cooling_until
            granted.append(list(pool.map(lambda caller: caller.take_probe(UPSTREAM), callers)).count(True))
            health.failed(UPSTREAM, sick())
    assert granted == [1] * 5  # before the fix, a claim retried after a race still said "granted": often 2


def test_the_redis_board_holds_an_upstreams_rpm_under_concurrent_requests(redis_prefix):
    healths = [Health(RedisBoard(redis.Redis.from_url(REDIS_URL), redis_prefix, ttl=60), POLICY) for _ in range(16)]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        allowed = sum(pool.map(lambda h: sum(h.reserve(UPSTREAM, rpm=50, tpm=0) for _ in range(10)), healths))
    assert allowed == 50
    assert healths[0].states([UPSTREAM])[UPSTREAM].window_requests == 50


# -- through a real Gunicorn: two workers, and two instances on one Redis --------------------------------

SMART = "smart=anthropic/claude-sonnet-5-5|openai/gpt-4o-mini"
FAILURES_TO_COOL = 3
COOLDOWN_S = 4.0
FIRST_BYTE_S = 1.5


def health_settings(tmp_path: Path, name: str, **more: Any) -> dict[str, Any]:
    """Settings for one instance of these tests: its own database, logs and metrics directory."""
    folder = tmp_path / name
    folder.mkdir()
    return dict(DATABASE_URL=f"sqlite:///{folder / 'aiserver.db'}", LOG_DIR=str(folder / "logs"),
                QUEUE_SQLITE_PATH=str(folder / "queue.db"), PROMETHEUS_MULTIPROC_DIR=str(folder / "metrics"),
                UPSTREAM_HEALTH_FILE=str(folder / "upstream_health"),
                MODEL_ALIASES=[SMART], UPSTREAM_FAILURES_TO_COOL=FAILURES_TO_COOL, UPSTREAM_COOLDOWN_S=COOLDOWN_S,
                UPSTREAM_COOLDOWN_MAX_S=COOLDOWN_S, FIRST_BYTE_TIMEOUT_S=FIRST_BYTE_S, RETRY_ATTEMPTS=0, **more)


class Ask:
    """One answer from `POST /v1/chat/completions` with `model: smart`."""

    def __init__(self, url: str, stream: bool, model: str = "smart"):
        started = time.perf_counter()
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
        response = requests.post(f"{url}/v1/chat/completions", json=body, timeout=20, stream=stream)
        self.status = response.status_code
        self.provider = response.headers.get("X-Provider")
        self.fallbacks = response.headers.get("X-Fallbacks")
        self.text = streamed_text(response) if stream else response.json()["choices"][0]["message"]["content"]
        self.seconds = time.perf_counter() - started


def streamed_text(response: requests.Response) -> str:
    events = [line[6:] for line in response.iter_lines(decode_unicode=True) if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return "".join((choice.get("delta") or {}).get("content") or "" for event in events[:-1]
                   for choice in json.loads(event)["choices"])


def ask_many(url: str, count: int) -> list[Ask]:
    """`count` requests at once, streamed and not by turns, each on its own connection (so both
    workers take some)."""
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda n: Ask(url, stream=bool(n % 2)), range(count)))


def generation_calls(fake) -> int:
    return sum(1 for r in fake.requests if r.method == "POST")


def served_per_worker(metrics_dir: str) -> dict[int, float]:
    """Chat completions each worker process answered so far, from its prometheus-client file."""
    served = {}
    for path in Path(metrics_dir).glob("counter_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        served[pid] = sum(entry[1] for entry in MmapedDict.read_all_values_from_file(str(path))
                          if json.loads(entry[0])[1] == "aiserver_http_requests_total"
                          and json.loads(entry[0])[2].get("route") == "/v1/chat/completions")
    return served


def from_openai_directly(answers: list[Ask]) -> bool:
    return all((a.status, a.provider, a.fallbacks, a.text) == (200, "openai", None, "From OpenAI.") for a in answers)


@pytest.mark.parametrize("outage", ["503", "hang"])
def test_two_workers_stop_calling_a_sick_upstream_probe_it_once_per_cooldown_and_take_it_back(
        live_server, fake_openai, fake_anthropic, tmp_path, outage):
    fake_openai.default_reply = Reply(text="From OpenAI.")
    fake_anthropic.default_reply = Reply(status=503, error_message="overloaded") if outage == "503" else Reply(hang=15)
    settings = health_settings(tmp_path, "one", **provider_config(openai=fake_openai, anthropic=fake_anthropic))
    server = live_server(workers=2, **settings)
    healthy = [Ask(server.url, stream=bool(n % 2), model="openai/gpt-4o-mini") for n in range(4)]
    healthy_latency = statistics.median(a.seconds for a in healthy)
    fake_openai.reset()

    failed = [Ask(server.url, stream=bool(n % 2)) for n in range(FAILURES_TO_COOL)]  # K failures: now cooling
    cooled_at = time.monotonic()
    assert all((a.status, a.provider, a.fallbacks) == (200, "openai", UPSTREAM) for a in failed)
    assert generation_calls(fake_anthropic) == FAILURES_TO_COOL
    if outage == "hang":
        assert min(a.seconds for a in failed) >= FIRST_BYTE_S

    time.sleep(0.3)  # the last answer's request counted in its worker's metrics
    before = served_per_worker(settings["PROMETHEUS_MULTIPROC_DIR"])
    skipping: list[Ask] = []
    while time.monotonic() - cooled_at < COOLDOWN_S - 1.5:  # bounded by the cooldown
        skipping += ask_many(server.url, 6)
        time.sleep(0.1)
        after = served_per_worker(settings["PROMETHEUS_MULTIPROC_DIR"])
        if len(after) == 2 and all(after[pid] > before.get(pid, 0) for pid in after) and len(skipping) >= 12:
            break
    assert len(after) == 2 and all(after[pid] > before.get(pid, 0) for pid in after), (before, after)
    assert generation_calls(fake_anthropic) == FAILURES_TO_COOL  # neither worker called it while cooling
    assert from_openai_directly(skipping)
    assert statistics.median(a.seconds for a in skipping) < healthy_latency + 0.25
    assert max(a.seconds for a in skipping) < FIRST_BYTE_S

    time.sleep(max(0.0, cooled_at + COOLDOWN_S + 0.2 - time.monotonic()))
    probing = ask_many(server.url, 8)  # the cooldown is over: one of these probes, the others skip it
    probed_at = time.monotonic()
    assert generation_calls(fake_anthropic) == FAILURES_TO_COOL + 1
    assert all((a.status, a.provider) == (200, "openai") for a in probing)
    assert [a.fallbacks for a in probing].count(UPSTREAM) == 1

    fake_anthropic.default_reply = Reply(text="From Claude.")  # the vendor recovers
    assert from_openai_directly(ask_many(server.url, 4))  # the failed probe cooled it again
    assert generation_calls(fake_anthropic) == FAILURES_TO_COOL + 1
    time.sleep(max(0.0, probed_at + COOLDOWN_S + 0.2 - time.monotonic()))
    recovering = ask_many(server.url, 8)
    assert all(a.status == 200 for a in recovering)
    assert [a.provider for a in recovering].count("anthropic") >= 1
    # the probe succeeded; requests of the batch that arrived after it (a loaded machine spreads them) may
    # already be answered by Anthropic, and none of them failed
    answered_by_claude = [a.provider for a in recovering].count("anthropic")
    assert generation_calls(fake_anthropic) == FAILURES_TO_COOL + 1 + answered_by_claude
    time.sleep(0.3)
    before = served_per_worker(settings["PROMETHEUS_MULTIPROC_DIR"])
    recovered = ask_many(server.url, 10) + ask_many(server.url, 10)
    after = served_per_worker(settings["PROMETHEUS_MULTIPROC_DIR"])
    assert all((a.status, a.provider, a.fallbacks, a.text) == (200, "anthropic", None, "From Claude.")
               for a in recovered)
    assert all(after[pid] > before.get(pid, 0) for pid in after)  # both workers send it requests again


def test_two_instances_on_one_redis_share_what_each_learned(live_server, fake_openai, fake_anthropic, tmp_path):
    fake_openai.default_reply = Reply(text="From OpenAI.")
    fake_anthropic.default_reply = Reply(status=503, error_message="overloaded")
    shared = dict(REDIS_URL=REDIS_URL, QUEUE_NAME=f"health-{uuid.uuid4().hex[:8]}",
                  **provider_config(openai=fake_openai, anthropic=fake_anthropic))
    try:
        first = live_server(**health_settings(tmp_path, "first", **shared))
        second = live_server(**health_settings(tmp_path, "second", **shared))
        for server in (first, second, second):  # warm: the first answers of an instance are the slowest
            assert Ask(server.url, stream=False, model="openai/gpt-4o-mini").status == 200
        failed = [Ask(first.url, stream=bool(n % 2)) for n in range(FAILURES_TO_COOL)]
        cooled_at = time.monotonic()
        assert all(a.fallbacks == UPSTREAM for a in failed)
        skipping = ask_many(second.url, 6) + ask_many(first.url, 4)
        assert time.monotonic() - cooled_at < COOLDOWN_S  # (else a probe would be allowed by now)
        assert from_openai_directly(skipping)
        assert generation_calls(fake_anthropic) == FAILURES_TO_COOL  # the second instance skipped it too

        time.sleep(max(0.0, cooled_at + COOLDOWN_S + 0.2 - time.monotonic()))
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            probing = sum(pool.map(lambda server: ask_many(server.url, 5), (first, second)), [])
        assert [a.fallbacks for a in probing].count(UPSTREAM) == 1  # one probe across both instances
        assert generation_calls(fake_anthropic) == FAILURES_TO_COOL + 1
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(match=f"{shared['QUEUE_NAME']}:*", count=200):
            client.delete(key)
        client.close()


# -- spreading over the upstreams of one model group (in process, three fakes) -------------------------

QUESTION = CompletionRequest([{"role": "user", "content": "Hi"}])


@pytest.fixture
def three_fakes() -> Iterator[list[FakeOpenAI]]:
    with FakeOpenAI() as a, FakeOpenAI() as b, FakeOpenAI() as c:
        yield [a, b, c]


def pool_gateway(fakes: list[FakeOpenAI], sleeps: list[float], **route_options: dict[str, Any]) -> \
        tuple[Gateway, list[Route]]:
    """A gateway over a model group `pool` whose upstreams are the fakes, as endpoints `east`,
    `west` and `north`; `route_options` sets each one's weight, rpm..."""
    names = ["east", "west", "north"]
    providers = {name: OpenAICompatibleProvider(name, api_key="sk-pool", base_url=fake.base_url, default_model="m",
                                                fallback_models=[], connect_timeout=2, read_timeout=5)
                 for name, fake in zip(names, fakes)}
    routes = tuple(Route(providers[name], "m", **route_options.get(name, {})) for name in names)
    registry = Registry(providers, {}, groups={"pool": ModelGroup(routes)})
    gateway = Gateway(registry, RetryPolicy(retries=2, backoff=0.01), sleep=sleeps.append,
                      health=Health(MemoryBoard(), HealthPolicy()))
    return gateway, registry.routes_for_model("pool")


def calls(fakes: list[FakeOpenAI]) -> list[int]:
    return [generation_calls(fake) for fake in fakes]


def test_requests_spread_over_three_upstreams_by_weight(three_fakes):
    random.seed(20261207)
    sleeps: list[float] = []
    gateway, routes = pool_gateway(three_fakes, sleeps, east={"weight": 2.0})
    answered = [gateway.complete(QUESTION, routes).provider for _ in range(1000)]
    shares = [count / 10 for count in calls(three_fakes)]
    assert [answered.count(name) for name in ("east", "west", "north")] == calls(three_fakes)
    assert shares == pytest.approx([50, 25, 25], abs=4), shares
    assert sleeps == []


def test_an_upstreams_rpm_is_respected_and_the_rest_go_elsewhere(three_fakes):
    sleeps: list[float] = []
    gateway, routes = pool_gateway(three_fakes, sleeps, east={"weight": 100.0, "rpm": 5})
    answers = [gateway.complete(QUESTION, routes) for _ in range(40)]
    assert all(a.text == "Hello from the fake." and not a.attempts for a in answers)
    east, west, north = calls(three_fakes)
    assert east == 5 and west + north == 35 and west and north


def test_a_429_from_one_upstream_is_answered_by_another_without_waiting(three_fakes):
    sleeps: list[float] = []
    three_fakes[0].default_reply = Reply(status=429, retry_after=20, error_message="Rate limit reached")
    gateway, routes = pool_gateway(three_fakes, sleeps, east={"weight": 100.0})
    answers = [gateway.complete(QUESTION, routes) for _ in range(20)]
    streamed = [list(gateway.stream(QUESTION, routes)) for _ in range(5)]
    assert all(a.provider in ("west", "north") and a.text == "Hello from the fake." for a in answers)
    assert all(any(getattr(e, "provider", None) in ("west", "north") for e in events) for events in streamed)
    assert sleeps == []
    assert calls(three_fakes)[0] >= 20  # asked first each time (its weight), and never cooled for a 429
    assert gateway.health.states(["east/m"])["east/m"].status(time.time()) == "healthy"


def test_a_cooling_upstream_of_the_group_gets_nothing_while_the_others_share_its_load(three_fakes):
    sleeps: list[float] = []
    three_fakes[0].default_reply = Reply(status=500)
    gateway, routes = pool_gateway(three_fakes, sleeps, east={"weight": 100.0})
    answers = [gateway.complete(QUESTION, routes) for _ in range(30)]
    assert all(a.provider in ("west", "north") for a in answers)
    assert calls(three_fakes)[0] == HealthPolicy().failures and sleeps == []


def test_a_probe_claimed_for_an_upstream_of_the_group_is_made(three_fakes):
    """A request that takes an upstream's probe lease must call it: while the lease lasts nobody else
    may probe it, so a lease taken and not used delays the upstream's return by the whole lease."""
    sleeps: list[float] = []
    gateway, routes = pool_gateway(three_fakes, sleeps, east={"weight": 0.001})  # rarely chosen by weight
    gateway.health = Health(MemoryBoard(), HealthPolicy(failures=3, cooldown=0.3))
    for _ in range(3):
        gateway.health.failed("east/m", sick())
    time.sleep(0.4)  # the cooldown is over: the next request probes east
    answer = gateway.complete(QUESTION, routes)
    assert (answer.provider, calls(three_fakes)[0]) == ("east", 1)
    assert gateway.health.states(["east/m"])["east/m"].status(time.time()) == "healthy"
