"""The outage benchmark: one vendor of an alias fails (503) or hangs for a minute under steady load,
with upstream health memory (the defaults) and without it (UPSTREAM_FAILURES_TO_COOL very large).

    bench/.venv-bench/bin/python bench/outage.py              # 4 runs of 90 s (503, hang; with and without)
    bench/.venv-bench/bin/python bench/outage.py --quick      # 4 runs of 30 s, a 20 s outage
    bench/.venv-bench/bin/python bench/outage.py --markdown   # also print the figures as Markdown tables

Each run starts two fake OpenAI-compatible vendors (bench/fake_upstream.py, real HTTP and SSE) and
aiserver (Gunicorn, WEB_WORKERS=2) with `OPENAI_COMPATIBLE=a,b` and the alias
`smart=a/gpt-4o-mini|b/gpt-4o-mini`, so vendor a is asked first and b is the next tier. It sends
--rate requests a second for --duration seconds (open loop: each sent on time whatever the others
do), streamed and non-streamed in turn, to `POST /v1/chat/completions` with `model: smart`, every
answer checked by bench/loadgen.py (status, the fake's exact text, `[DONE]`). From --outage-start to
--outage-end seconds vendor a answers every call with a 503 (`--fault 503`) or holds it unanswered
(`hang`: aiserver leaves it after FIRST_BYTE_TIMEOUT_S, 10 s by default). Reported per --bucket
seconds (by the time a request was sent): requests, errors, p50/p95 latency of the valid answers,
and the calls each vendor received per request (from the fakes' own counts, read at each bucket's
end). The figures go to bench/results/outage-<timestamp>.json.

The health settings are aiserver's defaults (3 failures to cool, a 10 s cooldown doubling up to
300 s) unless --settings overrides them (`--settings UPSTREAM_COOLDOWN_S=5`); "without memory" is
the same with UPSTREAM_FAILURES_TO_COOL=1000000000, so every request tries vendor a first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import aiohttp  # noqa: E402
import loadgen  # noqa: E402
import targets as T  # noqa: E402
from fake_upstream import expected_text  # noqa: E402

CHUNKS = 10
WITHOUT_MEMORY = {"UPSTREAM_FAILURES_TO_COOL": "1000000000"}


def aiserver_settings(a_url: str, b_url: str, tmp: str, extra: dict) -> dict:
    """aiserver's settings for a run: two OpenAI-compatible vendors behind the alias `smart`."""
    vendors = {}
    for name, url in (("A", a_url), ("B", b_url)):
        vendors.update({f"{name}_API_BASE": f"{url}/v1", f"{name}_API_KEY": "bench",
                        f"{name}_MODEL_DEFAULT": "gpt-4o-mini"})
    return {"WEB_WORKERS": "2", "OPENAI_COMPATIBLE": "a,b", "MODEL_ALIASES": "smart=a/gpt-4o-mini|b/gpt-4o-mini",
            "UPSTREAM_HEALTH_FILE": os.path.join(tmp, "upstream_health"), "LOG_LEVEL": "WARNING", **vendors,
            **extra}


async def fake_calls(session: aiohttp.ClientSession, fake: T.Target) -> int:
    async with session.get(f"{fake.url}/fake/stats", timeout=aiohttp.ClientTimeout(total=10)) as resp:
        return (await resp.json())["calls"]


async def set_fault(session: aiohttp.ClientSession, fake: T.Target, mode: str) -> None:
    async with session.post(f"{fake.url}/fake/fault", json={"mode": mode},
                            timeout=aiohttp.ClientTimeout(total=10)) as resp:
        resp.raise_for_status()


async def drive(url: str, fakes: dict[str, T.Target], args) -> dict:
    """The load, the outage switched on and off on time, and the fakes' counts at each bucket's end."""
    specs = [loadgen.Spec(url=url, stream=stream, model="smart", expect=expected_text(CHUNKS), timeout=60.0,
                          headers={"Content-Type": "application/json"}) for stream in (False, True)]
    bodies = [json.dumps(spec.body()).encode() for spec in specs]
    buckets = int(args.duration // args.bucket)
    counts: dict[str, list[int]] = {name: [] for name in fakes}
    sent: list[tuple[float, asyncio.Task]] = []
    async with loadgen.make_session(1000) as session, aiohttp.ClientSession() as control:
        for name, fake in fakes.items():
            counts[name].append(await fake_calls(control, fake))
        start = time.monotonic()

        async def switch() -> None:
            await asyncio.sleep(args.outage_start)
            await set_fault(control, fakes["a"], args.fault)
            await asyncio.sleep(args.outage_end - args.outage_start)
            await set_fault(control, fakes["a"], "ok")

        async def sample() -> None:
            for bucket in range(1, buckets + 1):  # bounded: one read per bucket
                await asyncio.sleep(max(0.0, start + bucket * args.bucket - time.monotonic()))
                for name, fake in fakes.items():
                    counts[name].append(await fake_calls(control, fake))

        helpers = [asyncio.create_task(switch()), asyncio.create_task(sample())]
        for i in range(int(args.rate * buckets * args.bucket)):  # bounded: rate x duration requests
            delay = start + i / args.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(loadgen.one_request(session, specs[i % 2], bodies[i % 2]))
            sent.append((time.monotonic() - start, task))
        await asyncio.gather(*helpers)
        results = [(offset, await task) for offset, task in sent]
        await set_fault(control, fakes["a"], "ok")
    return {"results": results, "counts": counts, "buckets": buckets}


def figures(load: dict, bucket: float) -> list[dict]:
    """Per bucket: requests, errors, latency of the valid answers and each vendor's calls per request."""
    rows = []
    for n in range(load["buckets"]):
        results = [r for offset, r in load["results"] if n * bucket <= offset < (n + 1) * bucket]
        ok = [r.total for r in results if r.ok]
        calls = {name: values[n + 1] - values[n] for name, values in load["counts"].items()}
        latency = loadgen.summarize_ms(ok) if ok else {}
        rows.append({"from_s": n * bucket, "requests": len(results), "errors": len(results) - len(ok),
                     "error_kinds": sorted({r.error for r in results if not r.ok}),
                     "p50_ms": latency.get("p50"), "p95_ms": latency.get("p95"),
                     **{f"calls_{name}_per_request": round(c / len(results), 2) if results else None
                        for name, c in calls.items()}})
    return rows


def one_run(args, fault: str, memory: bool, log_dir: str) -> dict:
    label = f"{fault}, {'with' if memory else 'without'} health memory"
    T.log(f"run: vendor a {fault} from {args.outage_start:.0f} s to {args.outage_end:.0f} s, {label}")
    tmp = tempfile.mkdtemp(prefix="outage-", dir=log_dir)
    a = b = server = None
    try:
        a = T.start_fake("vendor-a", tmp, None, args.latency_ms, CHUNKS, 5.0, args.duration + 600)
        b = T.start_fake("vendor-b", tmp, None, args.latency_ms, CHUNKS, 5.0, args.duration + 600)
        extra = dict(item.split("=", 1) for item in args.settings)
        settings = aiserver_settings(a.url, b.url, tmp, {**extra, **({} if memory else WITHOUT_MEMORY)})
        server = T.start_aiserver(tmp, tmp, a.url, None, CHUNKS, extra_env=settings, name="aiserver")
        args.fault = fault
        load = asyncio.run(drive(server.url, {"a": a, "b": b}, args))
        return {"fault": fault, "memory": memory, "label": label, "buckets": figures(load, args.bucket),
                "settings": settings}
    finally:
        for proc in (server, a, b):
            T.stop(proc.proc if proc else None)


def cell(value, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(runs: list[dict], args) -> str:
    """One table per fault: each bucket with and without health memory side by side."""
    out = []
    for fault in dict.fromkeys(run["fault"] for run in runs):
        pair = {run["memory"]: run for run in runs if run["fault"] == fault}
        out.append(f"\n**Vendor a {'answering 503' if fault == '503' else 'hung'} from {args.outage_start:.0f} s "
                   f"to {args.outage_end:.0f} s** ({args.rate:g} requests/s; latency p50 / p95 in ms; "
                   "calls to a / b per request; errors)\n")
        out.append("| sent at (s) | with memory: latency | calls a / b | errors | without: latency | calls a / b "
                   "| errors |")
        out.append("|---|---|---|---|---|---|---|")
        rows = zip(*(pair[m]["buckets"] for m in (True, False) if m in pair))
        for row in rows:
            cells = [f"{row[0]['from_s']:.0f}-{row[0]['from_s'] + args.bucket:.0f}"]
            for r in row:
                cells += [f"{cell(r['p50_ms'])} / {cell(r['p95_ms'])}",
                          f"{cell(r['calls_a_per_request'], 2)} / {cell(r['calls_b_per_request'], 2)}",
                          str(r["errors"])]
            out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="30 s runs, the outage from 5 s to 25 s")
    p.add_argument("--faults", default="503,hang", help="which outages to run (503, hang)")
    p.add_argument("--rate", type=float, default=20.0, help="requests a second, streamed and not in turn")
    p.add_argument("--duration", type=float, default=90.0)
    p.add_argument("--outage-start", type=float, default=15.0)
    p.add_argument("--outage-end", type=float, default=75.0)
    p.add_argument("--bucket", type=float, default=5.0, help="seconds per reported bucket")
    p.add_argument("--latency-ms", type=float, default=50.0, help="the fakes' wait before answering")
    p.add_argument("--settings", nargs="*", default=[], help="aiserver settings, NAME=value, for every run")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.outage_start, args.outage_end = 30.0, 5.0, 25.0
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    results_dir = os.path.join(HERE, "results")
    os.makedirs(results_dir, exist_ok=True)
    runs = []
    with tempfile.TemporaryDirectory(prefix="outage-bench-") as log_dir:
        for fault in args.faults.split(","):
            for memory in (True, False):
                try:
                    runs.append(one_run(args, fault, memory, log_dir))
                except T.SkipTarget as skipped:
                    T.log(f"skipped: {skipped}")
                    return 1
    out = {"args": vars(args), "runs": runs, "source": T.source_state(), "machine": T.machine()}
    path = os.path.join(results_dir, f"outage-{time.strftime('%Y%m%d-%H%M%S')}.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1, default=str)
    T.log(f"figures written to {path}")
    text = markdown(runs, args)
    print(text if args.markdown else json.dumps([{k: v for k, v in r.items() if k != "settings"} for r in runs],
                                                indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
