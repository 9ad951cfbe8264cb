"""Upstream health, remembered between requests and shared by every worker (and, with Redis, instance).

An upstream is one model on one endpoint (`openai/gpt-5.4`, `azure-eu/gpt54-prod`). Its state comes
from its recent outcomes:

- **healthy**: tried in turn with the others of its model.
- **cooling**: after `failures` consecutive failures of the kind that say the upstream itself is sick
  (connection refused or reset, 5xx, 529, a first-byte or request timeout: `is_sick`) it is skipped
  while another route exists, for `cooldown` seconds, doubled for each cooldown in a row up to
  `cooldown_max`. Caller faults (400, 401, 404, context length) and rate limits never count.
- **probing**: once the cooldown is over, one request at a time (a probe lease) may try it; its
  success makes it healthy, its failure cools it again for twice as long.

The transitions are plain functions over `UpstreamState`; the two boards only store the states:
`FileBoard` in a memory-mapped file that the workers of one instance share (no Redis needed), and
`RedisBoard` in Redis hashes that every instance shares. Reads are lock-free memory reads (file) or
one round trip for all of a request's upstreams (Redis); writes happen on failures, on state changes
and on the first success after a failure, never per chunk.
"""
from __future__ import annotations

import fcntl
import itertools
import logging
import mmap
import os
import random
import struct
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Iterable, Iterator, Protocol

from app.llm.providers.base import CallerFault, ModelUnavailable, ProviderFailure, ProviderRejected

log = logging.getLogger("aiserver.upstreams")

WINDOW_S = 60.0  # the window of the recent error rate and of an upstream's rpm/tpm counters
UPDATE_WITHIN_S = 2.0  # how long a Redis update is tried again while other processes keep changing the state


@dataclass(frozen=True)
class HealthPolicy:
    failures: int = 3  # consecutive sick failures before an upstream cools down
    cooldown: float = 10.0  # first cooldown, in seconds; doubles for each cooldown in a row
    cooldown_max: float = 300.0
    probe_lease: float = 30.0  # seconds one probe has the upstream to itself before another may probe

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "HealthPolicy":
        lease = config["FIRST_BYTE_TIMEOUT_S"] + config["CONNECT_TIMEOUT_S"] + 5
        return cls(config["UPSTREAM_FAILURES_TO_COOL"], config["UPSTREAM_COOLDOWN_S"],
                   config["UPSTREAM_COOLDOWN_MAX_S"], lease)

    def cooldown_for(self, cooldowns: int) -> float:
        return min(self.cooldown * 2 ** max(cooldowns - 1, 0), self.cooldown_max)


@dataclass(frozen=True)
class UpstreamState:
    consecutive_failures: int = 0
    cooldowns: int = 0  # cooldowns in a row without a success
    cooling_until: float = 0.0
    probe_until: float = 0.0
    window_start: float = 0.0
    window_ok: int = 0
    window_failed: int = 0
    window_requests: int = 0
    window_tokens: int = 0
    latency_ms: float = 0.0  # moving average of successful calls

    def status(self, now: float) -> str:
        if now < self.cooling_until:
            return "cooling"
        return "probing" if self.cooldowns else "healthy"

    def windowed(self, now: float) -> "UpstreamState":
        """The state with its per-minute counters restarted if their window is over."""
        if now - self.window_start < WINDOW_S:
            return self
        return replace(self, window_start=now, window_ok=0, window_failed=0, window_requests=0, window_tokens=0)

    def error_rate(self, now: float) -> float:
        current = self.windowed(now)
        calls = current.window_ok + current.window_failed
        return current.window_failed / calls if calls else 0.0

    def describe(self, now: float) -> dict[str, Any]:
        current = self.windowed(now)
        return {"state": self.status(now), "consecutive_failures": self.consecutive_failures,
                "cooldown_ends_at": self.cooling_until if self.cooling_until > now else None,
                "recent_calls": current.window_ok + current.window_failed,
                "recent_error_rate": round(self.error_rate(now), 4), "latency_ms": round(self.latency_ms, 1),
                "requests_this_minute": current.window_requests, "tokens_this_minute": current.window_tokens}


def is_sick(failure: ProviderFailure) -> bool:
    """Whether a failure says the upstream itself is unwell: a connection error or timeout (no status),
    a 5xx or Anthropic's 529; never the caller's fault, a missing model, a bad key or a rate limit."""
    if isinstance(failure, (CallerFault, ModelUnavailable, ProviderRejected)):
        return False
    return failure.status is None or failure.status >= 500


def succeeded(state: UpstreamState, now: float, latency_ms: float) -> UpstreamState:
    state = state.windowed(now)
    average = latency_ms if not state.latency_ms else 0.8 * state.latency_ms + 0.2 * latency_ms
    return replace(state, consecutive_failures=0, cooldowns=0, cooling_until=0.0, probe_until=0.0,
                   window_ok=state.window_ok + 1, latency_ms=average)


def failed(state: UpstreamState, now: float, policy: HealthPolicy, sick: bool) -> UpstreamState:
    state = state.windowed(now)
    state = replace(state, window_failed=state.window_failed + 1)
    if not sick:
        return state
    failures = state.consecutive_failures + 1
    status = state.status(now)
    if status == "probing" or (status == "healthy" and failures >= policy.failures):
        cooldowns = state.cooldowns + 1
        return replace(state, consecutive_failures=failures, cooldowns=cooldowns, probe_until=0.0,
                       cooling_until=now + policy.cooldown_for(cooldowns))
    return replace(state, consecutive_failures=failures)


def counted(state: UpstreamState, now: float, requests: int = 0, tokens: int = 0) -> UpstreamState:
    state = state.windowed(now)
    return replace(state, window_requests=state.window_requests + requests, window_tokens=state.window_tokens + tokens)


class Board(Protocol):
    """Where upstream states live: `read` many at once, `update` one atomically."""

    def read(self, names: list[str]) -> dict[str, UpstreamState]: ...

    def update(self, name: str, change: Callable[[UpstreamState], UpstreamState | None]) -> UpstreamState: ...

    def names(self) -> list[str]: ...


class Health:
    """The gateway's view of upstream health: what to skip, who may probe, and what happened.

    A board that fails (Redis down) never fails a request: every upstream then looks healthy, and the
    outage is logged once until the board answers again."""

    def __init__(self, board: Board, policy: HealthPolicy, clock: Callable[[], float] = time.time):
        self.board = board
        self.policy = policy
        self.clock = clock
        self.in_flight: dict[str, int] = {}  # this process's calls under way per upstream (least-busy)
        self.awaiting: dict[str, dict[int, float]] = {}  # whole answers being waited for: call -> start
        self.calls = itertools.count()
        self.troubled: set[str] = set()  # upstreams this process last saw with failures: a success must write
        self.board_down = False

    def states(self, names: Iterable[str]) -> dict[str, UpstreamState]:
        wanted = list(dict.fromkeys(names))
        states = self._safely(lambda: self.board.read(wanted)) or {}
        for name, state in states.items():
            if state.consecutive_failures or state.cooldowns:
                self.troubled.add(name)
        return {name: states.get(name, UpstreamState()) for name in wanted}

    def begin(self, name: str) -> None:
        self.in_flight[name] = self.in_flight.get(name, 0) + 1

    def end(self, name: str) -> None:
        self.in_flight[name] = self.in_flight.get(name, 1) - 1

    @contextmanager
    def awaiting_whole(self, name: str) -> Iterator[None]:
        """Around a call for a whole answer, whose first byte is the whole answer: while one waits longer
        than a first byte may take, the upstream is `suspect`."""
        call = next(self.calls)
        self.awaiting.setdefault(name, {})[call] = time.monotonic()
        try:
            yield
        finally:
            del self.awaiting[name][call]

    def suspect(self, name: str, first_byte: float) -> bool:
        """Whether `name` may be hung or unwell: this process saw it fail since its last success, or one
        of its whole answers has been awaited longer than `first_byte` seconds."""
        if name in self.troubled:
            return True
        waiting = self.awaiting.get(name) or {}
        return bool(waiting) and min(waiting.values()) < time.monotonic() - first_byte

    def take_probe(self, name: str) -> bool:
        """Whether this request may probe `name` (its cooldown is over and nobody else is probing it)."""
        now = self.clock()
        granted = [False]

        def claim(state: UpstreamState) -> UpstreamState | None:  # may run again (Redis retries on a race)
            granted[0] = state.status(now) == "probing" and state.probe_until <= now
            return replace(state, probe_until=now + self.policy.probe_lease) if granted[0] else None
        return self._safely(lambda: self.board.update(name, claim)) is not None and granted[0]

    def reserve(self, name: str, rpm: int, tpm: int) -> bool:
        """Count one request against `name`'s own rpm (and check its tpm); False when either is spent."""
        now = self.clock()
        allowed = [True]

        def count(state: UpstreamState) -> UpstreamState | None:  # may run again (Redis retries on a race)
            state = state.windowed(now)
            allowed[0] = not ((rpm and state.window_requests >= rpm) or (tpm and state.window_tokens >= tpm))
            return counted(state, now, requests=1) if allowed[0] else None
        self._safely(lambda: self.board.update(name, count))
        return allowed[0]

    def add_tokens(self, name: str, tokens: int) -> None:
        now = self.clock()
        self._safely(lambda: self.board.update(name, lambda state: counted(state, now, tokens=tokens)))

    def succeeded(self, name: str, latency_ms: float) -> None:
        if name not in self.troubled:
            return
        now = self.clock()
        before: list[UpstreamState] = []

        def change(state: UpstreamState) -> UpstreamState:
            before.append(state)
            return succeeded(state, now, latency_ms)
        if self._safely(lambda: self.board.update(name, change)) is None:
            return
        self.troubled.discard(name)
        if before and before[-1].status(now) != "healthy":
            log.warning("upstream %s: %s -> healthy (a call succeeded)", name, before[-1].status(now))

    def failed(self, name: str, failure: ProviderFailure) -> None:
        now = self.clock()
        sick = is_sick(failure)
        if not sick:
            return  # the caller's fault or a rate limit says nothing of the upstream's health (and any
            # model name a client sends would otherwise take a place on the board)
        before: list[UpstreamState] = []

        def change(state: UpstreamState) -> UpstreamState:
            before.append(state)
            return failed(state, now, self.policy, sick)
        after = self._safely(lambda: self.board.update(name, change))
        self.troubled.add(name)
        if after is not None and before and after.cooling_until > before[-1].cooling_until:
            log.warning("upstream %s: %s -> cooling for %.0fs after %d consecutive failures (last: %s)", name,
                        before[-1].status(now), after.cooling_until - now, after.consecutive_failures,
                        failure.status or type(failure).__name__)

    def report(self, configured: list[str]) -> list[dict[str, Any]]:
        """The state of each configured upstream, then of any other the board knows, for
        /admin/upstreams, /health and /metrics."""
        now = self.clock()
        names = list(dict.fromkeys([*configured, *sorted(self._safely(self.board.names) or [])]))
        return [{"upstream": name, **state.describe(now)} for name, state in self.states(names).items()]

    def _safely(self, operation: Callable[[], Any]) -> Any:
        """The board's answer, or None (logged once per outage) when the board fails."""
        try:
            result = operation()
        except Exception as error:  # a health board outage must never fail a request
            if not self.board_down:
                log.error("upstream health board unavailable, treating every upstream as healthy: %s", error)
            self.board_down = True
            return None
        if self.board_down:
            log.warning("upstream health board available again")
            self.board_down = False
        return result


# -- the boards -------------------------------------------------------------------------------------

class MemoryBoard:
    """Upstream states in this process only: for a gateway made outside the app (scripts, tests)."""

    def __init__(self) -> None:
        self.states: dict[str, UpstreamState] = {}

    def names(self) -> list[str]:
        return list(self.states)

    def read(self, names: list[str]) -> dict[str, UpstreamState]:
        return {name: self.states.get(name, UpstreamState()) for name in names}

    def update(self, name: str, change: Callable[[UpstreamState], UpstreamState | None]) -> UpstreamState:
        state = self.states.get(name, UpstreamState())
        changed = change(state)
        if changed is not None:
            self.states[name] = state = changed
        return state


_FIELDS = [f for f in UpstreamState.__dataclass_fields__]
_FORMAT = struct.Struct("<iidddiiiqd")  # the fields of UpstreamState, in order
_NAME_BYTES = 120
_SLOT = _NAME_BYTES + _FORMAT.size
_SLOTS = 512


class FileBoard:
    """Upstream states in a memory-mapped file under `path`, shared by the processes that open it (the
    workers of one instance). Updates hold an exclusive `flock` for a few microseconds, and a lock of
    this process's, since a `flock` does not exclude the threads of its holder (the job worker's);
    reads take none (a torn read of a float costs one wrong decision, never a crash)."""

    def __init__(self, path: str):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        if os.fstat(self.fd).st_size < _SLOT * _SLOTS:
            os.ftruncate(self.fd, _SLOT * _SLOTS)
        self.map = mmap.mmap(self.fd, _SLOT * _SLOTS)
        self.slots: dict[str, int] = {}
        self.lock = threading.Lock()

    def names(self) -> list[str]:
        self._index()
        return list(self.slots)

    def read(self, names: list[str]) -> dict[str, UpstreamState]:
        result = {}
        for name in names:
            slot = self.slots.get(name)
            if slot is None:
                self._index()
                slot = self.slots.get(name)
            result[name] = UpstreamState() if slot is None else self._load(slot)
        return result

    def update(self, name: str, change: Callable[[UpstreamState], UpstreamState | None]) -> UpstreamState:
        with self.lock:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            try:
                slot = self._slot(name)
                state = self._load(slot)
                changed = change(state)
                if changed is not None and changed != state:
                    _FORMAT.pack_into(self.map, slot * _SLOT + _NAME_BYTES, *astuple(changed))
                    return changed
                return state
            finally:
                fcntl.flock(self.fd, fcntl.LOCK_UN)

    def _load(self, slot: int) -> UpstreamState:
        return UpstreamState(*_FORMAT.unpack_from(self.map, slot * _SLOT + _NAME_BYTES))

    def _index(self) -> None:
        for slot in range(_SLOTS):
            raw = self.map[slot * _SLOT:slot * _SLOT + _NAME_BYTES].rstrip(b"\0")
            if not raw:
                return
            self.slots[raw.decode()] = slot

    def _slot(self, name: str) -> int:
        """The slot of `name`, claimed if new (the caller holds the lock); the last slot is shared by
        every upstream past the 511th."""
        self._index()
        if name in self.slots:
            return self.slots[name]
        encoded = name.encode()[:_NAME_BYTES]
        slot = min(len(self.slots), _SLOTS - 1)
        self.map[slot * _SLOT:slot * _SLOT + _NAME_BYTES] = encoded.ljust(_NAME_BYTES, b"\0")
        _FORMAT.pack_into(self.map, slot * _SLOT + _NAME_BYTES, *astuple(UpstreamState()))
        self.slots[name] = slot
        return slot


class RedisBoard:
    """Upstream states in Redis hashes (`{prefix}:upstream:{name}`) shared by every instance; an update
    is an optimistic transaction (WATCH), so concurrent failures on several instances all count."""

    def __init__(self, client: Any, prefix: str, ttl: float):
        self.client = client
        self.prefix = f"{prefix}:upstream:"
        self.ttl = int(max(ttl, WINDOW_S)) * 2  # a state nobody touched for this long is forgotten

    def names(self) -> list[str]:
        return [key.decode()[len(self.prefix):] for key in self.client.scan_iter(match=self.prefix + "*", count=200)]

    def read(self, names: list[str]) -> dict[str, UpstreamState]:
        with self.client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hgetall(self.prefix + name)
            rows = pipe.execute()
        return {name: from_hash(row) for name, row in zip(names, rows)}

    def update(self, name: str, change: Callable[[UpstreamState], UpstreamState | None]) -> UpstreamState:
        import redis

        key = self.prefix + name
        give_up = time.monotonic() + UPDATE_WITHIN_S
        with self.client.pipeline() as pipe:
            for attempt in itertools.count():
                if attempt and time.monotonic() > give_up:
                    break
                try:
                    pipe.watch(key)
                    state = from_hash(pipe.hgetall(key))
                    changed = change(state)
                    if changed is None or changed == state:
                        pipe.unwatch()
                        return state
                    pipe.multi()
                    pipe.hset(key, mapping={k: repr(v) for k, v in asdict(changed).items()})
                    pipe.expire(key, self.ttl)
                    pipe.execute()
                    return changed
                except redis.WatchError:  # another process changed it first: read it again, soon
                    time.sleep(random.uniform(0, 0.002 * min(attempt, 10)))
        raise RuntimeError(f"upstream state of {name} kept changing for {UPDATE_WITHIN_S:g}s")


def astuple(state: UpstreamState) -> tuple[Any, ...]:
    return tuple(getattr(state, name) for name in _FIELDS)


def from_hash(row: dict[bytes, bytes]) -> UpstreamState:
    if not row:
        return UpstreamState()
    kinds = {name: type(getattr(UpstreamState(), name)) for name in _FIELDS}
    return UpstreamState(**{key.decode(): kinds[key.decode()](float(value))
                            for key, value in row.items() if key.decode() in kinds})


def make_board(config: dict[str, Any]) -> Board:
    """Redis when REDIS_URL is set (every instance shares it), else the instance's memory-mapped file."""
    if config.get("REDIS_URL"):
        import redis

        client = redis.Redis.from_url(config["REDIS_URL"], socket_timeout=2, socket_connect_timeout=2,
                                      max_connections=config["WEB_WORKER_CONNECTIONS"])
        return RedisBoard(client, config["QUEUE_NAME"] or "aiserver", config["UPSTREAM_COOLDOWN_MAX_S"])
    from app.core.config import project_root

    return FileBoard(os.path.join(project_root(), config["UPSTREAM_HEALTH_FILE"]))
