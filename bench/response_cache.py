"""The response cache's cost and saving: a hit against a miss and against the direct upstream.

    bench/.venv-bench/bin/python bench/response_cache.py            # SQLite and Redis, ~1.5 minutes
    bench/.venv-bench/bin/python bench/response_cache.py --quick    # SQLite only, shorter levels

One fake upstream (bench/fake_upstream.py, --latency-ms before its answer) is loaded directly, then
through aiserver (one worker) with the cache off, then with it on (RESPONSE_CACHE_TTL_S) for each store:
every request sent with `Cache-Control: no-cache` (a miss: the upstream answers and the answer is
stored), then the same request without it (every request a hit, after the first). Non-streamed and
streamed, at each concurrency level; per row the p50/p95 latency, requests per second and aiserver's
CPU per request (its process tree). Every level is bounded by --duration and --max-requests.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import loadgen  # noqa: E402
import targets as T  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/0"


def level(target: T.Target, stream: bool, concurrency: int, args, headers: dict | None = None) -> dict:
    spec = target.spec(stream, args.chunks, timeout=30.0)
    spec.headers.update(headers or {})
    return asyncio.run(loadgen.run_level(spec, concurrency, args.duration, args.warmup, args.max_requests,
                                         target.pid))


def row(name: str, stream: bool, result: dict) -> str:
    latency = result["latency_ms"] or {}
    cpu = result["cpu_ms_per_request"]
    return (f"| {name} | {'stream' if stream else 'whole'} | {result['concurrency']} | "
            f"{loadgen.fmt(latency.get('p50'))} | {loadgen.fmt(latency.get('p95'))} | {result['rps']:.0f} | "
            f"{'-' if cpu is None else f'{cpu:.2f}'} | {result['errors']} |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="SQLite only, 3 s levels")
    p.add_argument("--concurrency", type=loadgen.parse_levels, default=[1, 10])
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--max-requests", type=int, default=20000)
    p.add_argument("--latency-ms", type=float, default=50.0, help="the fake upstream's wait before answering")
    p.add_argument("--chunks", type=int, default=10)
    p.add_argument("--gap-ms", type=float, default=5.0)
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.warmup = 3.0, 0.5
    stores = ["sqlite"] if args.quick else ["sqlite", "redis"]
    work = tempfile.mkdtemp(prefix="bench-response-cache-")
    procs: list = []
    rows = ["| target | answer | clients | p50 ms | p95 ms | req/s | aiserver CPU ms/req | errors |",
            "|---|---|---|---|---|---|---|---|"]
    try:
        direct = T.start_fake("direct", work, None, args.latency_ms, args.chunks, args.gap_ms, 3600)
        procs.append(direct.proc)
        upstream = T.start_fake("upstream", work, None, args.latency_ms, args.chunks, args.gap_ms, 3600)
        procs.append(upstream.proc)
        servers = {"aiserver, cache off": {"WEB_WORKERS": "1"}}
        for store in stores:
            servers[f"aiserver, cache on ({store})"] = {"RESPONSE_CACHE_TTL_S": "3600", "WEB_WORKERS": "1",
                                                        **({"REDIS_URL": REDIS_URL} if store == "redis" else {})}
        for stream in (False, True):
            for concurrency in args.concurrency:
                rows.append(row("direct upstream", stream, level(direct, stream, concurrency, args)))
        for name, env in servers.items():
            T.log(f"starting {name}")
            target = T.start_aiserver(work, os.path.join(work, name.replace(" ", "_")), upstream.url, None,
                                      args.chunks, extra_env={**env, "QUEUE_NAME": f"bench-rc-{os.getpid()}"},
                                      name=name.replace(" ", "_").replace(",", ""))
            procs.append(target.proc)
            for stream in (False, True):
                for concurrency in args.concurrency:
                    if "cache on" in name:
                        rows.append(row(f"{name}: miss (no-cache)", stream,
                                        level(target, stream, concurrency, args, {"Cache-Control": "no-cache"})))
                        rows.append(row(f"{name}: hit", stream, level(target, stream, concurrency, args)))
                    else:
                        rows.append(row(name, stream, level(target, stream, concurrency, args)))
            T.stop(target.proc)
    finally:
        for proc in procs:
            T.stop(proc)
        shutil.rmtree(work, ignore_errors=True)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
