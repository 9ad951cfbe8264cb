"""Scale-out: one aiserver instance vs two behind Caddy, on one PostgreSQL and one Redis.

    bench/.venv-bench/bin/python bench/scale_out.py --markdown           # the full run (about 4 minutes)
    bench/.venv-bench/bin/python bench/scale_out.py --quick --markdown   # a smoke run (about 2 minutes)

It makes a fresh PostgreSQL database (`bench_scale_<random>` next to --postgres-url, dropped at the
end), migrates it once, creates one client key, and starts a fake OpenAI upstream
(bench/fake_upstream.py). Then for each configuration (--instances, default 1 and 2) it starts that
many aiserver instances (Gunicorn + gevent, WEB_WORKERS each; instance i pinned to CPU i of
--server-cpus) on that database, Redis (--redis-url, a queue name of its own) and the key's secret,
puts Caddy with deploy/Caddyfile.scaled in front, and loads Caddy with bench/loadgen.py:

  * chat         persisted chats, `POST /chat` with a `chat_id`: each of --levels clients continues
                 its own chat turn after turn (a new chat every --turns-per-chat turns);
  * chat-stream  the same, `"stream": true` (this server's `delta`... `done` events);
  * mixed        --per-instance clients per instance (so twice as many for two instances), a quarter
                 each on persisted chats, streamed persisted chats, stored `/v1/responses` and
                 deployment tasks (`POST /task`: each request a new task, round 1, each client
                 from its own email).

The instances get what the deployment intake needs: a random VERIFICATION_SECRET, a dummy
GITHUB_TOKEN whose GITHUB_API_URL is the fake's `/github` (intake only checks that a token is set;
the fake counts any request there, and the run fails unless there was none), NOTIFY_ALLOW_HOSTS
127.0.0.1 (the evaluation_url is the fake's loopback address: no DNS) and TASK_RATE_LIMIT raised to
1000000/hour (a client sends more than the default 10 per hour from its email). No queue worker runs,
so the tasks stay queued.

Every request carries the key, so each LLM call also writes a usage row. Each response is checked
(HTTP 200 and the fake's exact text; a task: accepted as new, round 1, queued, with its nonce).
Afterwards the database is checked: every successful chat turn must have its answer stored in its
own chat (`conversation_message`, role assistant, status complete), every successful Response its row
(`stored_response`), every successful LLM call its usage row (`usage_record` of the key), every
accepted task its round (`deploy_round` of its `deploy_task`) and that round on the queue (the
`deploy.run_round` jobs in Redis, read with aiserver's own huey by bench/queue_state.py); the counts
are waited for (bounded) since streams and usage rows are written as they end and once a second. At
the end the bench's queue and rate-limiter keys (its QUEUE_NAME's only) are deleted from Redis. It
prints one line per level, and with --markdown two ready-to-paste tables: the figures and where the
CPU went (each instance, Caddy, the load generator with the fake, and the rest of the machine:
PostgreSQL, Redis and anything else running), with /proc/loadavg before and after.

The load generator (this process), the fake upstream and Caddy share --client-cpus (default CPU 1)
with the second instance: on a 2-core machine nothing is left idle for them. PostgreSQL and Redis are
shared services and are not pinned. Every loop is bounded: the configurations, workloads and levels
are finite lists, each level by --duration, --max-requests and --timeout, each wait for the database
by --settle.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterator

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import loadgen  # noqa: E402
import targets as T  # noqa: E402
from fake_upstream import expected_text  # noqa: E402
from streams import raise_nofile  # noqa: E402
from targets import SkipTarget, log  # noqa: E402

import bench  # noqa: E402

try:
    import psutil
except ImportError:  # CPU of PostgreSQL and Redis is then left in "other"
    psutil = None

SERVICE_PROCESSES = ("postgres", "redis-server")
# The deployment intake's settings: each mixed task client submits many tasks from its own email, more
# than the default TASK_RATE_LIMIT (10/hour per email) allows; the limit is still checked on each one.
TASK_RATE_LIMIT = "1000000/hour"


# --------------------------------------------------------------------------- the database

def admin_execute(admin_url: str, sql: str, attempts: int = 5) -> None:
    """One statement on a connection of its own, tried again (bounded) if the server was restarting."""
    import psycopg2

    for attempt in range(attempts):  # bounded: attempts
        try:
            with contextlib.closing(psycopg2.connect(admin_url)) as admin:
                admin.autocommit = True
                admin.cursor().execute(sql)
            return
        except psycopg2.OperationalError:
            if attempt == attempts - 1:
                raise
            time.sleep(2)


@contextlib.contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database next to `admin_url`'s, dropped (forcibly) on exit."""
    name = f"bench_scale_{secrets.token_hex(4)}"
    admin_execute(admin_url, f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Store:
    """Counts of what the instances stored, read straight from PostgreSQL (the connection is made
    again if the shared server was restarted meanwhile)."""

    def __init__(self, url: str, key_id: str):
        self.url = url
        self.key_id = key_id
        self.connection = None

    def rows(self, sql: str, *params, attempts: int = 5) -> list[tuple]:
        import psycopg2

        for attempt in range(attempts):  # bounded: attempts
            try:
                if self.connection is None or self.connection.closed:
                    self.connection = psycopg2.connect(self.url)
                    self.connection.autocommit = True
                with self.connection.cursor() as cursor:
                    cursor.execute(sql, params)
                    return cursor.fetchall()
            except psycopg2.OperationalError:
                self.close()
                if attempt == attempts - 1:
                    raise
                time.sleep(2)
        return []

    def count(self, sql: str, *params) -> int:
        return self.rows(sql, *params)[0][0]

    def started_at(self) -> str:
        """When the PostgreSQL server last started: a change during a workload means it was restarted."""
        return str(self.rows("SELECT pg_postmaster_start_time()")[0][0])

    def answers_by_chat(self, prefix: str) -> Counter:
        """Completed assistant messages per chat whose id starts with `prefix-`."""
        return Counter(dict(self.rows(
            "SELECT conversation_id, count(*) FROM conversation_message WHERE conversation_id LIKE %s "
            "AND role = 'assistant' AND status = 'complete' GROUP BY conversation_id", prefix + "-%")))

    def responses(self) -> int:
        return self.count("SELECT count(*) FROM stored_response WHERE owner = %s", self.key_id)

    def usage_rows(self) -> int:
        return self.count("SELECT count(*) FROM usage_record WHERE key_id = %s", self.key_id)

    def task_rounds(self, prefix: str) -> dict[str, int]:
        """Round id of each task whose name starts with `prefix-` (every bench task has one round)."""
        return dict(self.rows(
            "SELECT t.name, r.id FROM deploy_task t JOIN deploy_round r ON r.task_id = t.id WHERE t.name LIKE %s",
            prefix + "-%"))

    def settled_usage_rows(self, seconds: float = 10.0) -> int:
        """The key's usage rows once the instances' once-a-second flush has added no more for 1.5 s
        (earlier requests' rows, the start-up checks', are then not counted as this workload's)."""
        deadline = time.monotonic() + seconds
        before = self.usage_rows()
        while time.monotonic() < deadline:  # bounded: the deadline
            time.sleep(1.5)
            now = self.usage_rows()
            if now == before:
                break
            before = now
        return before

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
        self.connection = None


def create_key(env: dict, log_dir: str) -> tuple[str, str]:
    """(key id, key) of a new client key without limits, made with `flask keys create`."""
    out = T.flask_command(["keys", "create", "scale-bench"], env, os.path.join(log_dir, "keys-create.log"))
    key_id, key = re.search(r"^created (\S+)", out, re.M), re.search(r"^key: (\S+)$", out, re.M)
    if not key_id or not key:
        raise SkipTarget(f"`flask keys create` printed no key:\n{out[-2000:]}")
    return key_id.group(1), key.group(1)


def queue_state(command: str, env: dict, log_dir: str) -> object:
    """bench/queue_state.py `command` (rounds, delete) on the bench's queue, in aiserver's venv: its JSON."""
    python = os.path.join(T.ROOT, ".venv", "bin", "python")
    queue_env = T.base_env(QUEUE_NAME=env["QUEUE_NAME"], REDIS_URL=env["REDIS_URL"])
    done = subprocess.run([python, os.path.join(HERE, "queue_state.py"), command], cwd=T.ROOT, env=queue_env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    with open(os.path.join(log_dir, f"queue-{command}.log"), "a") as f:
        f.write(done.stdout + done.stderr)
    if done.returncode != 0:
        raise SkipTarget(f"bench/queue_state.py {command} failed (rc {done.returncode}):\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)


# --------------------------------------------------------------------------- CPU accounting

def service_cpu_seconds() -> float:
    """utime+stime of every PostgreSQL and Redis process on the machine (other users' included)."""
    if psutil is None:
        return 0.0
    total = 0.0
    for process in psutil.process_iter(["name", "cpu_times"]):
        if process.info["name"] in SERVICE_PROCESSES and process.info["cpu_times"]:
            total += process.info["cpu_times"].user + process.info["cpu_times"].system
    return total


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


@dataclass
class CpuMeter:
    """CPU seconds of each named process tree, the services, this process and the machine over a span."""
    trees: dict[str, int]
    start: dict[str, float] = field(default_factory=dict)

    def sample(self) -> dict[str, float]:
        now = {name: loadgen.tree_cpu_seconds(pid) for name, pid in self.trees.items()}
        now["load generator"] = time.process_time()
        now["PostgreSQL + Redis"] = service_cpu_seconds()
        now["machine"] = loadgen.machine_cpu()[0]
        now["wall"] = time.monotonic()
        return now

    def begin(self) -> None:
        self.start = self.sample()

    def cores(self) -> dict[str, float]:
        """Each part's CPU over the span in cores (CPU seconds per second); `other`: everything else."""
        end = self.sample()
        wall = end.pop("wall") - self.start["wall"]
        used = {name: (end[name] - self.start[name]) / wall for name in end}
        machine = used.pop("machine")
        used["other"] = max(0.0, machine - sum(used.values()))
        used["machine"] = machine
        return used


# --------------------------------------------------------------------------- one workload

@dataclass
class Part:
    """Some of a workload's clients: what they send and how many of them there are."""
    name: str
    spec: loadgen.Spec
    clients: int


def workloads(config: str, url: str, headers: dict, chunks: int, timeout: float, levels: list[int],
              mixed_clients: int, turns_per_chat: int, task: dict) -> list[tuple[str, list[Part]]]:
    """(workload name, its parts) for one configuration; chat ids and task names start with
    `config-workload-part`. `task`: the task part's `secret` and `evaluation_url`."""
    def spec(endpoint: str, stream: bool, prefix: str) -> loadgen.Spec:
        return loadgen.Spec(url=url, endpoint=endpoint, stream=stream, headers=dict(headers),
                            expect=expected_text(chunks), timeout=timeout, chat_prefix=prefix,
                            turns_per_chat=turns_per_chat, **(task if endpoint == "task" else {}))

    out = []
    for level in levels:
        out.append((f"chat c={level}", [Part("chat", spec("persisted", False, f"{config}-c{level}-chat"), level)]))
        out.append((f"chat-stream c={level}",
                    [Part("chat-stream", spec("persisted", True, f"{config}-c{level}-stream"), level)]))
    if mixed_clients:
        quarter = max(1, mixed_clients // 4)
        out.append((f"mixed c={mixed_clients}", [
            Part("chat", spec("persisted", False, f"{config}-mixed-chat"), max(1, mixed_clients - 3 * quarter)),
            Part("chat-stream", spec("persisted", True, f"{config}-mixed-stream"), quarter),
            Part("responses", spec("responses", False, f"{config}-mixed-responses"), quarter),
            Part("tasks", spec("task", False, f"{config}-mixed-tasks"), quarter),
        ]))
    return out


def settle(check, seconds: float) -> dict:
    """`check()` again every half second until it reports nothing missing, for at most `seconds`."""
    deadline = time.monotonic() + seconds
    result = check()
    while result["missing"] and time.monotonic() < deadline:  # bounded: the deadline
        time.sleep(0.5)
        result = check()
    return result


def verify(store: Store, parts: list[Part], outcomes: dict[str, list], responses0: int, usage0: int,
           seconds: float, queued_rounds) -> dict:
    """What the successful requests should have stored against what PostgreSQL holds, per part (chat
    turns: each chat's completed answers; responses: the key's new rows; tasks: each accepted task's
    round row, and then that round on the queue: `queued_rounds()`, read once the rows are complete)
    and for the usage rows (of LLM calls: a task's intake makes none)."""
    def kept(expected: int, stored: int, missing: int) -> dict:
        return {"expected": expected, "stored": stored, "missing": missing}

    def check(queued: set[int] | None = None) -> dict:
        checks, calls_ok = {}, 0
        for part in parts:
            ok = [r for r in outcomes[part.name] if r.ok]
            if part.spec.endpoint == "task":
                rounds = store.task_rounds(part.spec.chat_prefix)
                accepted = {part.spec.task_name(r.client, r.turn) for r in ok}
                found = [name for name in accepted if name in rounds and (queued is None or rounds[name] in queued)]
                checks[part.name] = kept(len(ok), len(found), len(ok) - len(found))
                continue
            calls_ok += len(ok)
            if part.spec.endpoint == "responses":
                stored = store.responses() - responses0
                checks[part.name] = kept(len(ok), stored, max(0, len(ok) - stored))
                continue
            expected = Counter(part.spec.chat_id(r.client, r.turn) for r in ok)
            answers = store.answers_by_chat(part.spec.chat_prefix)
            checks[part.name] = kept(len(ok), sum(answers.values()),
                                     sum(max(0, n - answers[chat]) for chat, n in expected.items()))
        usage = store.usage_rows() - usage0
        checks["usage rows"] = kept(calls_ok, usage, max(0, calls_ok - usage))
        return {"checks": checks, "missing": sum(c["missing"] for c in checks.values())}

    result = settle(check, seconds)
    if any(part.spec.endpoint == "task" for part in parts):
        result = check(set(queued_rounds()))
    return result


async def load(parts: list[Part], duration: float, warmup: float, max_requests: int,
               outcomes: dict[str, list], helper_pids: tuple) -> list[dict]:
    """Every part at once, each with its own clients and connections (loadgen.run_level). The
    `helper_pids` (instances, Caddy, the fake) are not background in loadgen's figures."""
    return list(await asyncio.gather(*(
        loadgen.run_level(part.spec, part.clients, duration, warmup, max_requests, helper_pids=helper_pids,
                          outcomes=outcomes[part.name])
        for part in parts)))


def run_workload(name: str, parts: list[Part], meter: CpuMeter, store: Store, queued_rounds, args) -> dict:
    outcomes: dict[str, list] = {part.name: [] for part in parts}
    responses0, usage0 = store.responses(), store.settled_usage_rows()
    postgres_started = store.started_at()
    load_before = loadavg()
    meter.begin()
    levels = asyncio.run(load(parts, args.duration, args.warmup, args.max_requests, outcomes,
                              tuple(meter.trees.values())))
    cores = meter.cores()
    load_after = loadavg()
    stored = verify(store, parts, outcomes, responses0, usage0, args.settle, queued_rounds)
    restarted = store.started_at() != postgres_started
    if restarted:
        log(f"{name}: PostgreSQL was restarted during this workload (by someone else): its errors are that")
    for part, level in zip(parts, levels):
        loadgen.print_level(f"{name} {part.name}", part.spec.stream, level)
    log(f"{name}: stored (expected, stored, missing) "
        + ", ".join(f"{k} {tuple(v.values())}" for k, v in stored["checks"].items()) + "; CPU cores "
        + ", ".join(f"{k} {v:.2f}" for k, v in cores.items()) + f"; loadavg {load_before} -> {load_after}")
    return {"workload": name, "parts": [{"name": p.name, "endpoint": p.spec.endpoint, "stream": p.spec.stream,
                                         "clients": p.clients, **level} for p, level in zip(parts, levels)],
            "stored": stored, "postgres_restarted": restarted, "cpu_cores": cores, "loadavg_before": load_before,
            "loadavg_after": load_after}


# --------------------------------------------------------------------------- one configuration

def run_config(count: int, env: dict, fake: T.Target, headers: dict, store: Store, work: str, log_dir: str,
               args) -> dict:
    """`count` instances behind Caddy, every workload in turn, then everything stopped. The tasks'
    rounds stay queued (no queue worker runs); `env` names the queue."""
    config = f"n{count}"
    cpus = args.server_cpus.split(",")
    instances: list[T.Target] = []
    caddy = None
    try:
        for i in range(count):
            instances.append(T.start_aiserver(
                log_dir, os.path.join(work, f"{config}-{i}"), fake.url, cpus[i % len(cpus)], args.chunks,
                extra_env=env, name=f"aiserver-{config}-{i}", migrate=False, headers=headers))
        caddy = T.start_caddy(log_dir, os.path.join(work, f"{config}-caddy"),
                              [t.url.removeprefix("http://") for t in instances], args.client_cpus, args.caddyfile)
        T.smoke(T.Target("caddy", "Caddy", caddy.url, headers=headers, proc=caddy.proc), args.chunks)
        log(f"{count} instance(s) {[t.url for t in instances]} on CPUs {[t.info['cpus'] for t in instances]}, "
            f"Caddy {caddy.url} on CPUs {args.client_cpus}")
        trees = {f"aiserver {i}": t.pid for i, t in enumerate(instances)}
        trees.update({"Caddy": caddy.pid, "fake upstream": fake.pid})
        meter = CpuMeter(trees)
        task = {"secret": env["VERIFICATION_SECRET"], "evaluation_url": f"{fake.url}/evaluation"}
        rows = [run_workload(f"{config} {name}", parts, meter, store, lambda: queue_state("rounds", env, log_dir), args)
                for name, parts in workloads(config, caddy.url, headers, args.chunks, args.timeout, args.levels,
                                             args.per_instance * count, args.turns_per_chat, task)]
    finally:
        T.stop(caddy.proc if caddy else None)
        for target in instances:
            T.stop(target.proc)
    return {"instances": count, "cpus": [t.info["cpus"] for t in instances], "workloads": rows}


# --------------------------------------------------------------------------- the report

def errors_text(part: dict) -> str:
    """`3 (http_503 3)`: the part's errors, the warm-up's included, by kind."""
    kinds = Counter(part["warmup_errors"]) + Counter(part["error_kinds"])
    total = sum(kinds.values())
    return f"{total} (" + ", ".join(f"{kind} {n}" for kind, n in kinds.items()) + ")" if total else "0"


def markdown(results: list[dict]) -> str:
    """Two tables: the figures per part, and where the CPU went per workload."""
    fmt = loadgen.fmt
    lines = ["| instances | workload | clients | req/s | p50 ms | p95 ms | p99 ms | errors | stored / lost |",
             "|---|---|---|---|---|---|---|---|---|"]
    for config in results:
        for row in config["workloads"]:
            restarted = " (PostgreSQL restarted meanwhile)" if row["postgres_restarted"] else ""
            for part in row["parts"]:
                lat, kept = part["latency_ms"], row["stored"]["checks"][part["name"]]
                what = {"responses": "responses", "task": "tasks"}.get(part["endpoint"], "turns")
                latency = " | ".join(fmt(lat[q], 0) for q in ("p50", "p95", "p99"))
                lines.append(f"| {config['instances']} | {part['name']}{restarted} | {part['clients']} | "
                             f"{part['rps']:.0f} | {latency} | {errors_text(part)} | "
                             f"{kept['stored']} / {kept['missing']} {what} |")
    lines += ["", "| instances | workload | usage rows stored / lost | CPU cores: aiserver | Caddy | load generator "
              "+ fake | PostgreSQL + Redis | other | machine | loadavg before → after |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for config in results:
        for row in config["workloads"]:
            cores, usage = row["cpu_cores"], row["stored"]["checks"]["usage rows"]
            per_instance = " + ".join(f"{v:.2f}" for k, v in cores.items() if k.startswith("aiserver"))
            client = cores["load generator"] + cores["fake upstream"]
            lines.append(f"| {config['instances']} | {row['workload'].split(' ', 1)[1]} | {usage['stored']} / "
                         f"{usage['missing']} | {per_instance} | {cores['Caddy']:.2f} | {client:.2f} | "
                         f"{cores['PostgreSQL + Redis']:.2f} | {cores['other']:.2f} | {cores['machine']:.2f} | "
                         f"{row['loadavg_before']} → {row['loadavg_after']} |")
    return "\n".join(lines)


def deployment_env(fake_url: str) -> dict:
    """What `POST /task` needs: a random secret; a dummy GitHub token (intake only checks that one is
    set) whose API root is the fake's `/github`, which counts any request (there must be none); the
    fake's loopback address allowed as evaluation_url (an IP: no DNS); the per-email limit raised."""
    return {"VERIFICATION_SECRET": secrets.token_urlsafe(24), "GITHUB_TOKEN": "bench-dummy-token",
            "GITHUB_API_URL": f"{fake_url}/github", "NOTIFY_ALLOW_HOSTS": "127.0.0.1",
            "TASK_RATE_LIMIT": TASK_RATE_LIMIT}


def delete_queue(env: dict, log_dir: str) -> None:
    """Remove the bench's queue and limiter keys from Redis (its QUEUE_NAME's only)."""
    try:
        log(f"Redis: the keys of {env['QUEUE_NAME']} deleted: {queue_state('delete', env, log_dir)}")
    except (SkipTarget, subprocess.TimeoutExpired, ValueError) as problem:
        log(f"Redis: the keys of {env['QUEUE_NAME']} could not be deleted: {problem}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="short levels (5 s) and smaller mixed level: a smoke run")
    p.add_argument("--instances", type=loadgen.parse_levels, default=[1, 2], help="configurations, e.g. 1,2")
    p.add_argument("--levels", type=loadgen.parse_levels, default=[200],
                   help="clients of the chat and chat-stream workloads (total, whatever the instances)")
    p.add_argument("--per-instance", type=int, default=500, help="clients per instance of the mixed workload "
                   "(0: none)")
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds per workload")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each workload")
    p.add_argument("--max-requests", type=int, default=200000, help="cap on requests per part")
    p.add_argument("--timeout", type=float, default=60.0, help="per-request timeout, seconds")
    p.add_argument("--settle", type=float, default=30.0, help="longest wait for the stored rows, seconds")
    p.add_argument("--turns-per-chat", type=int, default=10)
    p.add_argument("--web-workers", type=int, default=2, help="WEB_WORKERS of each instance (its default: 2)")
    p.add_argument("--pool-size", type=int, default=15,
                   help="DATABASE_POOL_SIZE of each process (docs/scaling.md: 15 for two instances)")
    p.add_argument("--server-cpus", default="0,1", help="CPU of instance i: the i-th of these (taskset)")
    p.add_argument("--client-cpus", default="1", help="CPUs of the load generator, fake upstream and Caddy")
    p.add_argument("--caddyfile", default=os.path.join(T.ROOT, "deploy", "Caddyfile.scaled"))
    p.add_argument("--latency-ms", type=float, default=50.0, help="the fake upstream's wait before answering")
    p.add_argument("--chunks", type=int, default=10, help="content chunks of the fake's answer")
    p.add_argument("--gap-ms", type=float, default=5.0, help="wait between the fake's chunks")
    p.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test",
                   help="a database on the server to create the bench database from")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    p.add_argument("--markdown", action="store_true", help="print the figures as Markdown tables at the end")
    p.add_argument("--json-out", default="", help="write every figure here as JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.warmup = min(args.duration, 5.0), min(args.warmup, 1.0)
    if not (0 < args.duration <= 600 and 0 <= args.warmup <= 60 and 0 < args.timeout <= 600
            and 0 <= args.settle <= 600 and 0 <= args.per_instance <= 2500 and args.turns_per_chat >= 1):
        p.error("--duration in (0, 600], --warmup in [0, 60], --timeout in (0, 600], --settle in [0, 600], "
                "--per-instance in [0, 2500], --turns-per-chat at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    most_clients = max(max(args.levels), args.per_instance * max(args.instances))
    raise_nofile(4 * most_clients + 1000)
    machine = T.machine()  # before the pinning below, which `nproc` would report
    with contextlib.suppress(OSError, ValueError):
        os.sched_setaffinity(0, {int(c) for c in args.client_cpus.split(",")})
    work = tempfile.mkdtemp(prefix="aiserver-scale-")
    log_dir = os.path.join(work, "logs")
    os.makedirs(log_dir)
    log(f"machine: {machine}; aiserver: {T.source_state()}; scratch and logs: {work}")
    fake = T.start_fake("scale-fake-upstream", log_dir, args.client_cpus, args.latency_ms, args.chunks, args.gap_ms,
                        3600)
    results: list[dict] = []
    try:
        with fresh_database(args.postgres_url) as database_url:
            env = {"DATABASE_URL": database_url, "REDIS_URL": args.redis_url,
                   "QUEUE_NAME": f"scale-bench-{secrets.token_hex(4)}", "KEY_HASH_SECRET": secrets.token_hex(16),
                   "DATABASE_POOL_SIZE": str(args.pool_size), "WEB_WORKERS": str(args.web_workers),
                   "SYSTEM_PROMPT_FILE": os.path.join(work, "system_prompt.txt"), **deployment_env(fake.url)}
            setup_env = T.aiserver_env(fake.url, 0, work, **env)
            T.flask_command(["db-upgrade"], setup_env, os.path.join(log_dir, "db-upgrade.log"))
            key_id, key = create_key(setup_env, log_dir)
            store = Store(database_url, key_id)
            try:
                for count in args.instances:  # bounded: the list
                    results.append(run_config(count, env, fake, {"Authorization": f"Bearer {key}"}, store, work,
                                              log_dir, args))
            finally:
                store.close()
                delete_queue(env, log_dir)
        github_requests = bench.fake_stats(fake.url).get("served", {}).get("github")
    except SkipTarget as problem:
        log(f"stopped: {problem}")
        return 2
    finally:
        T.stop(fake.proc)
    report = {"machine": machine, "aiserver_source": T.source_state(), "versions": T.versions(),
              "settings": {k: v for k, v in vars(args).items()}, "configs": results}
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(report, f, indent=1)
    if args.markdown:
        print(markdown(results))
    lost = sum(row["stored"]["missing"] for config in results for row in config["workloads"])
    errors = sum(part["errors"] + sum(part["warmup_errors"].values())
                 for config in results for row in config["workloads"] for part in row["parts"])
    log(f"done: {errors} errors, {lost} stored rows missing, {github_requests} requests to GitHub (must be 0)")
    return 0 if errors == 0 and lost == 0 and github_requests == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
