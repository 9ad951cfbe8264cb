"""Stream capacity: memory and CPU per open slow stream, through ONE gevent worker.

    bench/.venv-bench/bin/python bench/streams.py                       # direct and aiserver
    bench/.venv-bench/bin/python bench/streams.py --targets direct,aiserver,litellm,portkey

For each target and each level N (default 100, 500, 1000) it starts the target afresh
against a slow fake upstream (default: 60 chunks 1 s apart, so a stream lasts a minute),
measures the target's idle memory and CPU, opens N concurrent streaming chat completions
(--ramp-rate a second), waits until every stream has sent its first content chunk, then
for --hold seconds samples the target's process tree: peak RSS (and PSS) and the CPU it
spends. It reports RSS over idle divided by the open streams, and CPU per open stream;
it also counts the chunks that arrived, to show whether the target kept up with one chunk
per stream per gap. Then it closes the streams and stops the target.

aiserver runs with WEB_WORKERS=1; WEB_WORKER_CONNECTIONS is raised to N + 100 when N + 100
is over its default of 1000 (one worker could not hold 1,000 streams and the probe
otherwise). LiteLLM runs with 1 worker, Portkey as one node process.
Every loop is bounded: by N, by the stream length, by --settle-timeout and by --hold.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import aiohttp  # noqa: E402
import loadgen  # noqa: E402
import targets as T  # noqa: E402
from targets import SkipTarget, log  # noqa: E402

STREAM_TARGETS = ["direct", "aiserver", "litellm", "portkey"]


def raise_nofile(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, n))
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


class Streams:
    """N streaming requests held open by one client; counters only, no per-chunk lists."""

    def __init__(self, spec: loadgen.Spec):
        self.spec = spec
        self.body = json.dumps(spec.body()).encode()
        self.opened = 0          # streams that delivered their first content chunk
        self.finished = 0        # streams that reached [DONE]
        self.failed = 0
        self.chunks = 0          # content chunks received, all streams
        self.active = 0          # streams open now: first chunk seen, not ended
        self.errors: dict[str, int] = {}
        self.sample_error = ""

    def _fail(self, kind: str, detail: str = "") -> None:
        self.failed += 1
        self.errors[kind] = self.errors.get(kind, 0) + 1
        self.sample_error = self.sample_error or f"{kind}: {detail}"[:300]

    async def one(self, session: aiohttp.ClientSession) -> None:
        first = False
        try:
            async with session.post(self.spec.target_url, data=self.body, headers=self.spec.headers,
                                    timeout=aiohttp.ClientTimeout(total=self.spec.timeout)) as resp:
                if resp.status != 200:
                    self._fail(f"http_{resp.status}", (await resp.read())[:200].decode("utf-8", "replace"))
                    return
                buf = b""
                async for data in resp.content.iter_any():  # bounded by the fake's chunk count and the timeout
                    buf += data
                    *lines, buf = buf.split(b"\n")
                    for line in lines:
                        if not line.startswith(b"data:"):
                            continue
                        payload = line[5:].strip()
                        if payload == b"[DONE]":
                            self.finished += 1
                            return
                        if b'"content"' not in payload:
                            continue
                        try:
                            obj = json.loads(payload)
                        except ValueError:
                            self._fail("bad_chunk", payload[:200].decode("utf-8", "replace"))
                            return
                        if any((c.get("delta") or {}).get("content") for c in obj.get("choices") or ()):
                            self.chunks += 1
                            if not first:
                                first = True
                                self.opened += 1
                                self.active += 1
                if buf.strip() == b"data: [DONE]":
                    self.finished += 1
                    return
                self._fail("no_done")
        except asyncio.CancelledError:
            raise
        except asyncio.TimeoutError:
            self._fail("timeout")
        except (aiohttp.ClientError, OSError) as exc:
            self._fail(type(exc).__name__, str(exc))
        finally:
            if first:
                self.active -= 1

    @property
    def open_now(self) -> int:
        return self.active


async def measure_level(target: T.Target, n: int, args) -> dict:
    spec = target.spec(True, args.chunks, timeout=args.chunks * args.gap_ms / 1000 + 60)
    spec.headers["Content-Type"] = "application/json"
    pid = target.pid
    # Warm-up: a few streams first, so lazy imports and first-use caches are not counted per stream.
    warm = Streams(spec)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=50)) as session:
        tasks = [asyncio.create_task(warm.one(session)) for _ in range(min(10, n))]
        deadline = time.monotonic() + 20
        for _ in range(200):  # bounded: 200 polls and the deadline
            if warm.opened + warm.failed >= len(tasks) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)
        for task in tasks:
            task.cancel()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
    # Idle: memory, and CPU over a short window.
    await asyncio.sleep(args.idle)
    idle_rss, idle_pss, nprocs = loadgen.tree_memory(pid, with_pss=True)
    c0, t0 = loadgen.tree_cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(args.idle)
    idle_cpu = (loadgen.tree_cpu_seconds(pid) - c0) / (time.monotonic() - t0)

    streams = Streams(spec)
    connector = aiohttp.TCPConnector(limit=n + 10, limit_per_host=0, enable_cleanup_closed=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = []
        ramp_start = time.monotonic()
        for _ in range(n):  # bounded: n
            tasks.append(asyncio.create_task(streams.one(session)))
            await asyncio.sleep(1.0 / args.ramp_rate)
        ramp_s = time.monotonic() - ramp_start
        deadline = time.monotonic() + args.settle_timeout
        for _ in range(int(args.settle_timeout / 0.2) + 1):  # bounded: count and deadline
            if streams.opened + streams.failed >= n or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        settle_s = time.monotonic() - ramp_start
        # Hold: sample the tree while the streams stay open.
        peak_rss = peak_pss = 0
        cpu0, chunks0, h0 = loadgen.tree_cpu_seconds(pid), streams.chunks, time.monotonic()
        open_min = streams.open_now
        k = 0
        for k in range(1, int(args.hold / 0.5) + 3):  # bounded: --hold, in half-second samples
            if time.monotonic() - h0 >= args.hold:
                break
            rss, pss, _ = loadgen.tree_memory(pid, with_pss=(k % 2 == 1))
            peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
            open_min = min(open_min, streams.open_now)
            await asyncio.sleep(0.5)
        hold_s = time.monotonic() - h0
        cpu_s = loadgen.tree_cpu_seconds(pid) - cpu0
        chunks = streams.chunks - chunks0
        rss, pss, _ = loadgen.tree_memory(pid, with_pss=True)
        peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        open_end = streams.open_now
        for task in tasks:
            task.cancel()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
    open_streams = max(open_end, 0)
    expected_chunks = open_streams * hold_s / (args.gap_ms / 1000.0)
    per = max(open_streams, 1)
    return {
        "streams": n,
        "open": open_streams,
        "open_min_during_hold": open_min,
        "failed": streams.failed,
        "error_kinds": streams.errors,
        "error_sample": streams.sample_error,
        "ramp_s": ramp_s,
        "all_open_after_s": settle_s,
        "hold_s": hold_s,
        "processes": nprocs,
        "idle_rss_mb": idle_rss / 2**20,
        "idle_pss_mb": idle_pss / 2**20,
        "idle_cpu_percent": idle_cpu * 100,
        "peak_rss_mb": peak_rss / 2**20,
        "peak_pss_mb": peak_pss / 2**20,
        "rss_kb_per_stream": (peak_rss - idle_rss) / 1024 / per if open_streams else None,
        "pss_kb_per_stream": (peak_pss - idle_pss) / 1024 / per if open_streams else None,
        "cpu_percent": cpu_s / hold_s * 100,
        "cpu_ms_per_stream_second": cpu_s * 1000 / hold_s / per if open_streams else None,
        "chunks_per_s": chunks / hold_s,
        "chunks_expected_per_s": expected_chunks / hold_s,
        "kept_up": (chunks >= 0.9 * expected_chunks) if open_streams else False,
    }


def start(name: str, n: int, args, log_dir: str, work: str, fake_url: str, server_cpus,
          aiserver_env: dict | None = None) -> T.Target:
    tag = f"streams-{name}-{n}"
    if name == "direct":
        return T.start_fake(tag, log_dir, server_cpus, args.latency_ms, args.chunks, args.gap_ms, 3600)
    if name == "aiserver":
        extra = {"WEB_WORKERS": "1", **(aiserver_env or {})}
        if n + 100 > 1000:
            extra["WEB_WORKER_CONNECTIONS"] = str(n + 100)
        t = T.start_aiserver(log_dir, os.path.join(work, tag), fake_url, server_cpus, args.chunks, extra, name=tag,
                             smoke_modes=(False,))
        t.info["env_extra"] = extra
        return t
    if name == "litellm":
        return T.start_litellm(log_dir, os.path.join(work, tag), fake_url, server_cpus, args.chunks, 1,
                               smoke_modes=(False,))
    if name == "portkey":
        return T.start_portkey(log_dir, fake_url, server_cpus, args.chunks, smoke_modes=(False,))
    raise SkipTarget(f"unknown target {name}")


def fmt(v, nd=1):
    return "-" if v is None else f"{v:.{nd}f}"


def main(argv=None, embedded: bool = False):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--levels", default="100,500,1000")
    p.add_argument("--targets", default="direct,aiserver", help=f"comma-separated, from {STREAM_TARGETS}")
    p.add_argument("--chunks", type=int, default=60)
    p.add_argument("--gap-ms", type=float, default=1000.0)
    p.add_argument("--latency-ms", type=float, default=50.0)
    p.add_argument("--hold", type=float, default=10.0, help="seconds of measurement with every stream open")
    p.add_argument("--idle", type=float, default=2.0, help="seconds of idle before measuring idle memory and CPU")
    p.add_argument("--ramp-rate", type=float, default=250.0, help="streams opened per second")
    p.add_argument("--settle-timeout", type=float, default=30.0)
    p.add_argument("--pin", choices=["auto", "off"], default="auto")
    p.add_argument("--quick", action="store_true", help="levels 20,100 and a 3 s hold")
    p.add_argument("--log-dir", default="")
    p.add_argument("--work", default="")
    p.add_argument("--out", default="", help="write the figures here as JSON (standalone use)")
    args = p.parse_args(argv)
    if args.quick:
        if args.levels == "100,500,1000":
            args.levels = "20,100"
        args.hold = min(args.hold, 3.0)
        args.idle = min(args.idle, 1.0)
    levels = loadgen.parse_levels(args.levels)
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    if set(names) - set(STREAM_TARGETS):
        p.error(f"--targets takes {STREAM_TARGETS}")
    longest = args.settle_timeout + max(levels) / args.ramp_rate + args.hold
    if longest > args.chunks * args.gap_ms / 1000:
        log(f"warning: a stream lasts {args.chunks * args.gap_ms / 1000:.0f} s, less than the "
            f"{longest:.0f} s a level may need; early streams may end during the hold")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    work = args.work or os.path.join(HERE, "results", f"streams-{stamp}.work")
    log_dir = args.log_dir or os.path.join(work, "logs")
    os.makedirs(log_dir, exist_ok=True)
    raise_nofile(max(levels) * 2 + 1000)

    import bench
    server_cpus, client_cpus = bench.cpu_plan(args.pin)
    own_cpus = os.sched_getaffinity(0)
    fake = T.start_fake("streams-fake-upstream", log_dir, client_cpus, args.latency_ms, args.chunks, args.gap_ms, 3600)
    results: dict = {}
    skipped: dict = {}
    t_start = time.monotonic()
    try:
        for name in names:
            for n in levels:
                log(f"stream capacity: {name} with {n} streams ...")
                try:
                    target = start(name, n, args, log_dir, work, fake.url, server_cpus)
                except SkipTarget as exc:
                    skipped[name] = str(exc)
                    log(f"SKIPPING {name} in the stream-capacity benchmark: {exc}")
                    break
                try:
                    if client_cpus:
                        os.sched_setaffinity(0, {int(c) for c in client_cpus.split(",")})
                    lv = asyncio.run(measure_level(target, n, args))
                finally:
                    os.sched_setaffinity(0, own_cpus)
                    T.stop(target.proc)
                lv["env_extra"] = target.info.get("env_extra", {})
                results.setdefault(name, {"label": target.label, "levels": []})["levels"].append(lv)
                log(f"  {name} n={n}: open {lv['open']}/{n} (failed {lv['failed']}), idle RSS "
                    f"{fmt(lv['idle_rss_mb'])} MB, peak {fmt(lv['peak_rss_mb'])} MB, "
                    f"{fmt(lv['rss_kb_per_stream'])} KB RSS/stream, {fmt(lv['pss_kb_per_stream'])} KB PSS/stream, "
                    f"CPU {fmt(lv['cpu_percent'])}% ({fmt(lv['cpu_ms_per_stream_second'], 3)} ms/s per stream), "
                    f"chunks {fmt(lv['chunks_per_s'], 0)}/s of {fmt(lv['chunks_expected_per_s'], 0)}/s"
                    + (f", errors {lv['error_kinds']} e.g. {lv['error_sample']}" if lv["failed"] else ""))
    finally:
        T.stop(fake.proc)
    out = {"settings": {"levels": levels, "targets": names, "chunks": args.chunks, "gap_ms": args.gap_ms,
                        "latency_ms": args.latency_ms, "hold_s": args.hold, "ramp_rate": args.ramp_rate,
                        "server_cpus": server_cpus, "client_cpus": client_cpus},
           "results": results, "skipped": skipped, "elapsed_s": round(time.monotonic() - t_start, 1)}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)
    if embedded:
        return out
    return 0


if __name__ == "__main__":
    sys.exit(main())
