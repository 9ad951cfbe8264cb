"""The soak of issue 14: aiserver on ONE gevent worker, loopback, every phase bounded.

    bench/.venv-bench/bin/python bench/soak.py                 # the full soak (about 3 minutes)
    bench/.venv-bench/bin/python bench/soak.py --quick         # a smaller run (about 1.5 minutes)
    bench/.venv-bench/bin/python bench/soak.py --markdown      # also print the figures as a Markdown table

Three phases, each against a freshly started aiserver (WEB_WORKERS=1, started as bench/streams.py
starts it) and the fake upstream of bench/fake_upstream.py:

1. held streams: a steady non-streaming load (--steady-rate requests a second, paced, not
   closed-loop) runs --baseline seconds alone, then again for --hold seconds while --streams
   streaming chat completions stay open (the fake sends a chunk every --gap-ms). Reported: the
   streams opened, completed and failed, the content chunks each stream got against the
   fake's count, the longest silence in any stream (chunk or heartbeat), the steady load's
   latency and errors with and without the streams, and the server's peak RSS and CPU.
2. memory: --requests requests, mixed (non-streaming and streaming chat completions, persisted
   POST /chat turns, and two kinds of bad request answered 400), --concurrency at a time, against
   a fast fake; the worker's RSS is sampled every --sample-every requests. Reported: the RSS at
   the end of the warm-up (--warmup-requests) and at the end, and the slope after the warm-up
   (least squares, KB per 1,000 requests).
3. disconnect storm: --storm clients open streams and reset their sockets (SO_LINGER 0): a third
   right after sending the request, a third after the first content chunk, a third after three.
   Then, from the fake upstream's own counts, the streams it still serves must fall to zero and
   its connections to what they were before the storm, within --drain-timeout seconds; and the
   server must still answer, from the same worker process.

Every response is validated by bench/loadgen.py (status, the fake's exact text, `[DONE]`); the
figures go to bench/results/soak-<timestamp>.json, with the machine's load average (/proc/loadavg)
before and after each phase: the figures are only as quiet as the machine was.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import socket
import statistics
import struct
import sys
import time
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import loadgen  # noqa: E402
import streams  # noqa: E402
import targets as T  # noqa: E402
from loadgen import Result, fmt  # noqa: E402

import bench  # noqa: E402

FAST_CHUNKS, FAST_GAP_MS = 10, 5.0   # the memory phase's fake: short streams
DROP_AFTER = (0, 1, 3)               # the storm's clients reset after this many content chunks, in turn
CONTENT_PIECE = re.compile(rb'"tok\d+ "')  # one content delta of the fake's text (fake_upstream.chunk_texts)
TURNS_PER_CHAT = 10                  # persisted turns on one chat id before the next: the history grows, then resets


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return ""


def worker_rss(pid: int) -> int:
    """Summed RSS of the Gunicorn master's children (with WEB_WORKERS=1: the one worker), bytes."""
    total = 0
    for proc in loadgen.tree_processes(pid)[1:]:
        try:
            total += proc.memory_info().rss
        except loadgen.psutil.Error:
            pass
    return total


def worker_pids(pid: int) -> list[int]:
    return sorted(p.pid for p in loadgen.tree_processes(pid)[1:])


def log_health(target: T.Target) -> dict:
    """Tracebacks and worker boots in the server's own log (Gunicorn's stdout and stderr)."""
    try:
        with open(target.proc.log_path, errors="replace") as f:
            text = f.read()
    except OSError:
        return {}
    return {"tracebacks": text.count("Traceback"), "workers_booted": text.count("Booting worker")}


def sqlite_bytes(target: T.Target) -> int | None:
    """The size of the server's SQLite database with its write-ahead log, or None on another database."""
    url = target.info.get("env", {}).get("DATABASE_URL", "")
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///"):]
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))


def mb(value: int | float | None) -> float | None:
    return None if value is None else value / 2**20


# --------------------------------------------------------------------------- requests

def with_json_header(spec: loadgen.Spec) -> loadgen.Spec:
    spec.headers["Content-Type"] = "application/json"
    return spec


async def timed(session, spec: loadgen.Spec, body: bytes) -> tuple[float, Result]:
    """The request's start (monotonic) and its result: when a stream was open follows from both."""
    start = time.monotonic()
    return start, await loadgen.one_request(session, spec, body)


async def paced(session, spec: loadgen.Spec, rate: float, duration: float) -> list[Result]:
    """`rate` requests a second for `duration` seconds, each sent on time whatever the others do
    (open loop: a slow server shows as latency, not as fewer requests)."""
    body = json.dumps(spec.body()).encode()
    start = time.monotonic()
    tasks = []
    for i in range(int(rate * duration)):  # bounded: rate x duration requests
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(loadgen.one_request(session, spec, body)))
    return list(await asyncio.gather(*tasks))


def latency_figures(results: list[Result]) -> dict:
    errors = Counter(r.error for r in results if not r.ok)
    return {"requests": len(results), "errors": sum(errors.values()), "error_kinds": dict(errors),
            "latency_ms": loadgen.summarize_ms([r.total for r in results if r.ok])}


async def upstream_stats(fake: T.Target) -> dict:
    return await asyncio.to_thread(bench.fake_stats, fake.url)


async def wait_upstream(fake: T.Target, done, timeout: float) -> tuple[float, dict]:
    """Poll the fake's /fake/stats every 0.2 s until `done(stats)` or `timeout`: (seconds, last stats)."""
    start = time.monotonic()
    stats: dict = {}
    for _ in range(int(timeout / 0.2) + 1):  # bounded: count and deadline
        stats = await upstream_stats(fake)
        if (stats and done(stats)) or time.monotonic() - start >= timeout:
            break
        await asyncio.sleep(0.2)
    return time.monotonic() - start, stats


# --------------------------------------------------------------------------- 1. held streams

async def held_streams(target: T.Target, fake: T.Target, args, chunks: int) -> dict:
    n = args.streams
    stream_spec = with_json_header(target.spec(True, chunks, timeout=chunks * args.gap_ms / 1000 + 60))
    steady_spec = with_json_header(target.spec(False, chunks, timeout=30))
    stream_body = json.dumps(stream_spec.body()).encode()
    pid = target.pid
    async with loadgen.make_session(n + 50) as session:
        baseline = await paced(session, steady_spec, args.steady_rate, args.baseline)
        idle_rss, idle_worker = loadgen.tree_memory(pid)[0], worker_rss(pid)
        monitor = loadgen.TreeMonitor(pid, 0.5)
        monitor.start()
        ramp_start = time.monotonic()
        tasks = []
        for _ in range(n):  # bounded: n
            tasks.append(asyncio.create_task(timed(session, stream_spec, stream_body)))
            await asyncio.sleep(1.0 / args.ramp_rate)
        settle_s, stats = await wait_upstream(fake, lambda s: s.get("open_streams", 0) >= n, args.settle_timeout)
        await asyncio.sleep(args.latency_ms / 1000 + 0.5)  # the last streams' first chunk, after the fake's latency
        hold_start = time.monotonic()
        during = await paced(session, steady_spec, args.steady_rate, args.hold)
        hold_end = time.monotonic()
        usage = await monitor.stop()
        peak_worker = worker_rss(pid)
        done = await asyncio.wait_for(asyncio.gather(*tasks), stream_spec.timeout + 30)
    results = [r for _, r in done]
    opened = [(start + r.ttft, start + r.total) for start, r in done if r.ttft is not None]
    gaps = [r.max_gap for r in results if r.max_gap is not None]
    per_stream = [r.chunks for r in results]
    return {
        "streams": n, "chunks_expected": chunks, "gap_ms": args.gap_ms,
        "upstream_open_when_hold_began": stats.get("open_streams"),
        "all_open_after_s": hold_start - ramp_start, "settle_s": settle_s, "hold_s": hold_end - hold_start,
        "opened": len(opened), "completed": sum(r.ok for r in results), "failed": sum(not r.ok for r in results),
        "failure_kinds": dict(Counter(r.error for r in results if not r.ok)),
        "open_through_hold": sum(1 for a, b in opened if a <= hold_start and b >= hold_end),
        "chunks_per_stream": {"min": min(per_stream, default=0), "median": statistics.median(per_stream or [0]),
                              "max": max(per_stream, default=0)},
        "max_gap_s": {"p50": loadgen.percentile(gaps, 50), "p99": loadgen.percentile(gaps, 99),
                      "max": max(gaps, default=None)},
        "steady_without_streams": latency_figures(baseline),
        "steady_during_hold": latency_figures(during),
        "idle_rss_mb": mb(idle_rss), "peak_rss_mb": mb(usage["peak_rss_bytes"]),
        "idle_worker_rss_mb": mb(idle_worker), "worker_rss_after_hold_mb": mb(peak_worker),
        "cpu_percent_during_hold": (usage["cpu_seconds"] or 0) / max(hold_end - ramp_start, 1e-9) * 100,
    }


# --------------------------------------------------------------------------- 2. memory over many requests

def mixed_requests(url: str, chunks: int) -> list[tuple[str, loadgen.Spec, bytes | None]]:
    """The memory phase's mix, one round of ten: (kind, spec, body: None where
    the spec `varies`, a persisted chat's turn being built per client and turn)."""
    expect = loadgen.expected_text(chunks)
    chat = with_json_header(loadgen.Spec(url, "chat", expect=expect))
    stream = with_json_header(loadgen.Spec(url, "chat", stream=True, expect=expect))
    turn = with_json_header(loadgen.Spec(url, "persisted", expect=expect, chat_prefix="soak",
                                         turns_per_chat=TURNS_PER_CHAT))
    refused = with_json_header(loadgen.Spec(url, "chat", expect_status=400))
    bad_model = json.dumps({**chat.body(), "model": "no such model!"}).encode()
    cut_json = json.dumps(chat.body()).encode()[:-7]
    kinds = [("chat", chat, json.dumps(chat.body()).encode()), ("stream", stream, json.dumps(stream.body()).encode()),
             ("persisted", turn, None), ("bad_model_400", refused, bad_model), ("cut_json_400", refused, cut_json)]
    return [kinds[i] for i in (0, 1, 2, 0, 3, 0, 1, 2, 0, 4)]


def slope_kb_per_1000(samples: list[tuple[int, int]]) -> float | None:
    """Least-squares slope of (requests done, RSS bytes), in KB per 1,000 requests."""
    if len(samples) < 2:
        return None
    mean_x = sum(x for x, _ in samples) / len(samples)
    mean_y = sum(y for _, y in samples) / len(samples)
    var = sum((x - mean_x) ** 2 for x, _ in samples)
    if not var:
        return None
    cov = sum((x - mean_x) * (y - mean_y) for x, y in samples)
    return cov / var * 1000 / 1024


async def many_requests(target: T.Target, args) -> dict:
    mix = mixed_requests(target.url, FAST_CHUNKS)
    pid = target.pid
    results: dict[str, list[Result]] = {kind: [] for kind, _, _ in mix}
    samples: list[tuple[int, int]] = [(0, worker_rss(pid))]
    issued = [0]

    async def client(session, number: int) -> None:
        turns = 0
        while issued[0] < args.requests:  # bounded: --requests in all
            i = issued[0]
            issued[0] += 1
            kind, spec, body = mix[i % len(mix)]
            if spec.varies:  # this client's next turn of its persisted chat
                body = json.dumps(spec.body(number, turns)).encode()
                turns += 1
            results[kind].append(await loadgen.one_request(session, spec, body))
            done = sum(map(len, results.values()))
            if done % args.sample_every == 0:
                samples.append((done, worker_rss(pid)))

    db_start = sqlite_bytes(target)
    start = time.monotonic()
    async with loadgen.make_session(args.concurrency) as session:
        await asyncio.wait_for(asyncio.gather(*(client(session, k) for k in range(args.concurrency))),
                               args.memory_timeout)
    elapsed = time.monotonic() - start
    after_warmup = [(x, y) for x, y in samples if x >= args.warmup_requests]
    warm = after_warmup[0] if after_warmup else samples[-1]
    everything = [r for rs in results.values() for r in rs]
    return {
        "requests": len(everything), "elapsed_s": elapsed, "rps": len(everything) / elapsed,
        "invalid": sum(not r.ok for r in everything),
        "by_kind": {kind: latency_figures(rs) for kind, rs in results.items()},
        "warmup_requests": warm[0], "sample_every": args.sample_every,
        "rss_start_mb": mb(samples[0][1]), "rss_after_warmup_mb": mb(warm[1]), "rss_end_mb": mb(samples[-1][1]),
        "rss_max_after_warmup_mb": mb(max(y for _, y in after_warmup)) if after_warmup else None,
        "slope_kb_per_1000_after_warmup": slope_kb_per_1000(after_warmup),
        "samples": [(x, round(y / 1024)) for x, y in samples],
        "sqlite_start_mb": mb(db_start), "sqlite_end_mb": mb(sqlite_bytes(target)),
    }


# --------------------------------------------------------------------------- 3. disconnect storm

def raw_request(spec: loadgen.Spec, body: bytes) -> bytes:
    host = spec.url.split("//", 1)[1]
    path = spec.target_url[len(spec.url.rstrip("/")):]
    return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Accept: text/event-stream\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


async def drop_after(port: int, request: bytes, pieces: int, timeout: float) -> int:
    """Send a streaming request, read until `pieces` content deltas arrived (0: read nothing), then
    reset the connection (SO_LINGER 0: an RST, no FIN). Returns the content deltas seen."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    seen, received = 0, b""
    try:
        writer.write(request)
        await writer.drain()
        deadline = time.monotonic() + timeout
        while seen < pieces and time.monotonic() < deadline:  # bounded: the deadline
            data = await asyncio.wait_for(reader.read(65536), max(deadline - time.monotonic(), 0.01))
            if not data:
                break
            received += data
            seen = len(CONTENT_PIECE.findall(received))
    except asyncio.TimeoutError:
        pass
    finally:
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
    return seen


async def storm(target: T.Target, fake: T.Target, args, chunks: int) -> dict:
    spec = with_json_header(target.spec(True, chunks))
    request = raw_request(spec, json.dumps(spec.body()).encode())
    port = int(target.url.rsplit(":", 1)[1])
    pids_before = worker_pids(target.pid)
    before = await upstream_stats(fake)
    seen = await asyncio.gather(*(drop_after(port, request, DROP_AFTER[i % len(DROP_AFTER)], args.settle_timeout)
                                  for i in range(args.storm)))
    dropped = time.monotonic()
    at_drop = await upstream_stats(fake)
    baseline_connections = before.get("open_connections") or 0
    _, after = await wait_upstream(
        fake, lambda s: s.get("open_streams") == 0 and (s.get("open_connections") or 0) <= baseline_connections,
        args.drain_timeout)
    drain_s = time.monotonic() - dropped  # from the last reset to the poll that saw the condition (or gave up)
    async with loadgen.make_session(2) as session:
        check_spec = with_json_header(target.spec(False, chunks))
        check = await loadgen.one_request(session, check_spec, json.dumps(check_spec.body()).encode())
    reached = ((after.get("served") or {}).get("chat_stream", 0) - (before.get("served") or {}).get("chat_stream", 0))
    return {
        "clients": args.storm,
        "reset_after": {f"{k} content chunks": sum(1 for i in range(args.storm) if DROP_AFTER[i % len(DROP_AFTER)] == k)
                        for k in DROP_AFTER},
        "got_their_chunks": sum(s >= DROP_AFTER[i % len(DROP_AFTER)] for i, s in enumerate(seen)),
        "upstream_streams_opened": reached,
        "upstream_open_at_last_reset": at_drop.get("open_streams"),
        "upstream_open_after": after.get("open_streams"),
        "upstream_connections_before": before.get("open_connections"),
        "upstream_connections_after": after.get("open_connections"),
        "drained": after.get("open_streams") == 0 and (after.get("open_connections") or 0) <= baseline_connections,
        "drain_s": drain_s,
        "answers_after": check.ok, "answer_error": check.error,
        "same_worker": worker_pids(target.pid) == pids_before,
    }


# --------------------------------------------------------------------------- running the phases

def run_phase(name: str, fake: T.Target, chunks: int, args, work: str, server_cpus, measure) -> dict:
    """Start a fresh aiserver for one phase, run `measure(target)` under asyncio, stop it; the
    server's log health and the machine's load before and after go with the figures."""
    T.log(f"soak phase {name} ...")
    phase_dir = os.path.join(work, name)
    log_dir = os.path.join(phase_dir, "logs")
    os.makedirs(log_dir, exist_ok=True)
    load_before = loadavg()
    env = {"DATABASE_URL": args.database_url} if args.database_url else {}
    target = streams.start("aiserver", args.streams, argparse.Namespace(chunks=chunks), log_dir, phase_dir,
                           fake.url, server_cpus, aiserver_env=env)
    try:
        figures = asyncio.run(measure(target))
    finally:
        T.stop(target.proc)
    figures.update(log_health(target), loadavg_before=load_before, loadavg_after=loadavg(),
                   env_extra=target.info.get("env_extra", {}))
    T.log(f"  {name}: {json.dumps({k: v for k, v in figures.items() if k not in ('samples', 'by_kind')})}")
    return figures


def run(args) -> dict:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    work = os.path.join(HERE, "results", f"soak-{stamp}.work")
    os.makedirs(work, exist_ok=True)
    streams.raise_nofile(args.streams * 3 + args.storm * 2 + 1000)
    server_cpus, client_cpus = bench.cpu_plan(args.pin)
    own_cpus = os.sched_getaffinity(0)
    slow_chunks = math.ceil(args.streams / args.ramp_rate + args.settle_timeout + args.hold + 10)
    out: dict = {"settings": {k: v for k, v in vars(args).items() if k not in ("markdown", "out")}
                 | {"slow_chunks": slow_chunks, "fast_chunks": FAST_CHUNKS, "fast_gap_ms": FAST_GAP_MS,
                    "server_cpus": server_cpus, "client_cpus": client_cpus},
                 "machine": T.machine(), "source": T.source_state(), "loadavg_at_start": loadavg()}
    start = time.monotonic()
    slow = T.start_fake("soak-slow-upstream", work, client_cpus, args.latency_ms, slow_chunks, args.gap_ms, 3600)
    fast = T.start_fake("soak-fast-upstream", work, client_cpus, args.latency_ms, FAST_CHUNKS, FAST_GAP_MS, 3600)
    try:
        if client_cpus:
            os.sched_setaffinity(0, {int(c) for c in client_cpus.split(",")})
        if "hold" in args.phases:
            out["held_streams"] = run_phase("hold", slow, slow_chunks, args, work, server_cpus,
                                            lambda t: held_streams(t, slow, args, slow_chunks))
        if "memory" in args.phases:
            out["memory"] = run_phase("memory", fast, FAST_CHUNKS, args, work, server_cpus,
                                      lambda t: many_requests(t, args))
        if "storm" in args.phases:
            out["storm"] = run_phase("storm", slow, slow_chunks, args, work, server_cpus,
                                     lambda t: storm(t, slow, args, slow_chunks))
    finally:
        os.sched_setaffinity(0, own_cpus)
        T.stop(slow.proc)
        T.stop(fast.proc)
    out["elapsed_s"] = round(time.monotonic() - start, 1)
    out["loadavg_at_end"] = loadavg()
    return out


# --------------------------------------------------------------------------- the figures

def latency_cell(figures: dict) -> str:
    lat = figures["latency_ms"]
    return (f"p50 {fmt(lat['p50'])} / p95 {fmt(lat['p95'])} / p99 {fmt(lat['p99'])} ms, "
            f"{figures['errors']} errors of {figures['requests']}")


def rows(out: dict) -> list[tuple[str, str]]:
    """(figure, value) pairs of every phase that ran, in the order the docs show them."""
    table = []
    if h := out.get("held_streams"):
        cps, gap = h["chunks_per_stream"], h["max_gap_s"]
        table += [
            ("Held streams: opened / completed / failed", f"{h['opened']} / {h['completed']} / {h['failed']} of "
             f"{h['streams']}" + (f" ({h['failure_kinds']})" if h["failed"] else "")),
            ("Streams open through the whole hold", f"{h['open_through_hold']} ({fmt(h['hold_s'], 0)} s hold, "
             f"all open {fmt(h['all_open_after_s'])} s after the first)"),
            ("Content chunks per stream (min / median / max)",
             f"{cps['min']} / {fmt(cps['median'], 0)} / {cps['max']}, expected {h['chunks_expected']}"),
            ("Longest silence in a stream (p50 / p99 / max)",
             f"{fmt(gap['p50'], 2)} / {fmt(gap['p99'], 2)} / {fmt(gap['max'], 2)} s, "
             f"chunks every {fmt(h['gap_ms'] / 1000, 1)} s"),
            (f"Steady non-streaming load without streams ({h['steady_without_streams']['requests']} requests)",
             latency_cell(h["steady_without_streams"])),
            (f"Steady load during the hold ({h['steady_during_hold']['requests']} requests)",
             latency_cell(h["steady_during_hold"])),
            ("Server RSS idle / peak (master + worker)", f"{fmt(h['idle_rss_mb'])} / {fmt(h['peak_rss_mb'])} MB"),
            ("Server CPU while the streams were open", f"{fmt(h['cpu_percent_during_hold'], 0)}% of a core"),
        ]
    if m := out.get("memory"):
        table += [
            ("Mixed requests: total / invalid / rate",
             f"{m['requests']} / {m['invalid']} / {fmt(m['rps'], 0)} per s"),
            (f"Worker RSS at start / after {m['warmup_requests']} requests / at the end",
             f"{fmt(m['rss_start_mb'])} / {fmt(m['rss_after_warmup_mb'])} / {fmt(m['rss_end_mb'])} MB"),
            ("Worker RSS slope after the warm-up", f"{fmt(m['slope_kb_per_1000_after_warmup'])} KB per 1,000 requests"),
            ("SQLite database at start / end (with its WAL)",
             "not SQLite" if m["sqlite_start_mb"] is None else
             f"{fmt(m['sqlite_start_mb'])} / {fmt(m['sqlite_end_mb'])} MB"),
        ]
    if s := out.get("storm"):
        table += [
            ("Disconnect storm: clients reset",
             f"{s['clients']} ({', '.join(f'{v} after {k}' for k, v in s['reset_after'].items())})"),
            ("Upstream streams open at the last reset / after",
             f"{s['upstream_open_at_last_reset']} / {s['upstream_open_after']} "
             f"({'drained' if s['drained'] else 'NOT drained'} in {fmt(s['drain_s'])} s)"),
            ("Upstream connections before the storm / after",
             f"{s['upstream_connections_before']} / {s['upstream_connections_after']}"),
            ("Server answers after the storm, same worker", f"{s['answers_after']}, {s['same_worker']}"),
        ]
    for name, key in (("hold", "held_streams"), ("memory", "memory"), ("storm", "storm")):
        if phase := out.get(key):
            table.append((f"Load average before / after ({name})",
                          f"{phase['loadavg_before']} / {phase['loadavg_after']}; server log: "
                          f"{phase.get('tracebacks')} tracebacks, {phase.get('workers_booted')} worker boots"))
    return table


def markdown(out: dict) -> str:
    lines = ["| Figure | Value |", "|---|---|"]
    lines += [f"| {figure} | {value} |" for figure, value in rows(out)]
    src, mach = out["source"], out["machine"]
    lines.append(f"\nMeasured at {src.get('measured_at')} on commit {src.get('commit')} "
                 f"({mach.get('nproc')} CPUs, {mach.get('cpu_model', 'unknown CPU')}), in {out['elapsed_s']:.0f} s.")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--phases", default="hold,memory,storm", help="which phases to run, comma-separated")
    p.add_argument("--streams", type=int, default=500, help="streams held open in phase 1")
    p.add_argument("--hold", type=float, default=60.0, help="seconds the streams are held")
    p.add_argument("--baseline", type=float, default=20.0, help="seconds of steady load before the streams")
    p.add_argument("--steady-rate", type=float, default=20.0, help="non-streaming requests a second")
    p.add_argument("--gap-ms", type=float, default=1000.0, help="the slow fake's gap between chunks")
    p.add_argument("--latency-ms", type=float, default=50.0, help="the fakes' wait before an answer")
    p.add_argument("--ramp-rate", type=float, default=100.0, help="streams opened a second")
    p.add_argument("--settle-timeout", type=float, default=20.0, help="most seconds to wait for every stream")
    p.add_argument("--requests", type=int, default=10_000, help="requests in phase 2")
    p.add_argument("--warmup-requests", type=int, default=1_000)
    p.add_argument("--sample-every", type=int, default=250, help="requests between two RSS samples")
    p.add_argument("--concurrency", type=int, default=16, help="requests in flight in phase 2")
    p.add_argument("--memory-timeout", type=float, default=1800.0, help="most seconds phase 2 may take")
    p.add_argument("--storm", type=int, default=300, help="clients that reset their streams in phase 3")
    p.add_argument("--drain-timeout", type=float, default=10.0,
                   help="most seconds for the upstream streams to close after the storm")
    p.add_argument("--database-url", default="",
                   help="aiserver's DATABASE_URL, an empty database (default: a new SQLite file per phase)")
    p.add_argument("--pin", choices=["auto", "off"], default="auto")
    p.add_argument("--quick", action="store_true", help="100 streams for 15 s, 2,000 requests, 60 clients in the storm")
    p.add_argument("--markdown", action="store_true", help="print the figures as a Markdown table too")
    p.add_argument("--out", default="", help="the results JSON (default bench/results/soak-<timestamp>.json)")
    args = p.parse_args(argv)
    if args.quick:
        args.streams, args.hold, args.baseline = 100, 15.0, 5.0
        args.requests, args.warmup_requests, args.sample_every, args.storm = 2_000, 400, 100, 60
    if min(args.streams, args.requests, args.sample_every, args.concurrency, args.storm) < 1:
        p.error("--streams, --requests, --sample-every, --concurrency and --storm must be at least 1")
    if not (0 < args.hold <= 3600 and 0 < args.baseline <= 600 and 0 < args.steady_rate <= 1000):
        p.error("--hold must be in (0, 3600], --baseline in (0, 600], --steady-rate in (0, 1000]")
    args.phases = [name.strip() for name in args.phases.split(",") if name.strip()]
    if not args.phases or set(args.phases) - {"hold", "memory", "storm"}:
        p.error("--phases takes hold, memory and storm")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    out = run(args)
    path = args.out or os.path.join(HERE, "results", f"soak-{time.strftime('%Y%m%d-%H%M%S')}.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    table = rows(out)
    width = max((len(figure) for figure, _ in table), default=0)
    for figure, value in table:
        print(f"{figure:<{width}}  {value}")
    if args.markdown:
        print("\n" + markdown(out))
    T.log(f"figures written to {os.path.relpath(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
