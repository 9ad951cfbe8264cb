"""The benchmark harness: direct vs aiserver vs LiteLLM's proxy vs Portkey's gateway.

    bench/.venv-bench/bin/python bench/bench.py            # the full run (about 15 minutes)
    bench/.venv-bench/bin/python bench/bench.py --quick    # a smoke run (about two minutes)

`bash bench/run.sh` installs what this needs first, then runs it. It:
  1. starts one fake upstream (bench/fake_upstream.py) for the gateways, and a second,
     identical one as the "direct" target;
  2. starts each gateway against the fake, on a free port, and checks one answer of each
     kind; a gateway that fails to start or answers wrongly is skipped with the reason;
  3. for each run, mode (non-stream, stream) and concurrency level, loads every target in
     turn, back to back, with bench/loadgen.py's run_level, so each gateway's figures sit
     next to the direct figures taken moments before;
  4. stops everything, runs the stream-capacity benchmark (bench/streams.py), writes
     bench/results/<timestamp>.json and regenerates docs/performance.md and the charts
     (bench/report.py).
Every loop is bounded: the runs, modes, levels and targets are finite lists, each level by
--duration and --max-requests, each request by --timeout, and the whole run by --max-minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import os
import signal
import statistics
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import loadgen  # noqa: E402
import targets as T  # noqa: E402
from targets import SkipTarget, log  # noqa: E402

ALL_TARGETS = ["direct", "aiserver", "aiserver-ask", "litellm", "portkey"]
MODES = {"nonstream": False, "stream": True}


def cpu_plan(pin: str) -> tuple[str | None, str | None]:
    """(cpus for the servers under test, cpus for the load generator and the gateways' fake)."""
    cpus = sorted(os.sched_getaffinity(0))
    if pin == "off" or len(cpus) < 2:
        return None, None
    server = cpus[:-1]
    return (",".join(map(str, server)), str(cpus[-1]))


def fake_stats(url: str) -> dict:
    try:
        with urllib.request.urlopen(url + "/fake/stats", timeout=5) as r:
            return json.load(r)
    except (OSError, ValueError):
        return {}


def upstream_count(stats: dict) -> int:
    s = stats.get("served") or {}
    return int(s.get("chat", 0)) + int(s.get("chat_stream", 0))


def med_range(values: list[float | None]) -> dict | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def aggregate(raw: list[dict], names: list[str]) -> dict:
    """Medians and ranges over runs, and the overhead of each target against direct (same run, mode, level)."""
    out: dict = {}
    by = {}
    for r in raw:
        by.setdefault((r["target"], r["mode"], r["concurrency"]), []).append(r)
    for (name, mode, c), rows in by.items():
        lv = [r["level"] for r in rows]
        entry = {
            "runs": len(rows),
            "requests": sum(x["requests"] for x in lv),
            "ok": sum(x["ok"] for x in lv),
            "errors": sum(x["errors"] for x in lv),
            "error_kinds": {},
            "rps": med_range([x["rps"] for x in lv]),
            "cpu_ms_per_request": med_range([x["cpu_ms_per_request"] for x in lv]),
            "peak_rss_mb": med_range([x["peak_rss_mb"] for x in lv]),
            "peak_pss_mb": med_range([x["peak_pss_mb"] for x in lv]),
            "processes": max(x["processes"] for x in lv),
            "client_cpu_util": med_range([x.get("client_cpu_util") for x in lv]),
            "background_cpu_util": med_range([x.get("background_cpu_util") for x in lv]),
            # The target's own CPU over the level, in cores: near 1.0 (its one pinned CPU) means CPU-bound.
            "cpu_util": med_range([x["cpu_ms_total"] / 1000 / x["duration_s"] if x.get("cpu_ms_total") is not None
                                   and x["duration_s"] > 0 else None for x in lv]),
        }
        for x in lv:
            for k, v in x["error_kinds"].items():
                entry["error_kinds"][k] = entry["error_kinds"].get(k, 0) + v
        for metric in ("latency_ms", "ttft_ms"):
            if lv[0].get(metric) is None:
                continue
            entry[metric] = {q: med_range([(x[metric] or {}).get(q) for x in lv]) for q in ("p50", "p95", "p99")}
        if name != "direct":
            over = {}
            for metric in ("latency_ms", "ttft_ms"):
                if metric not in entry:
                    continue
                for q in ("p50", "p95", "p99"):
                    diffs = []
                    for r in rows:
                        d = next((o for o in raw if o["target"] == "direct" and o["mode"] == mode
                                  and o["concurrency"] == c and o["run"] == r["run"]), None)
                        a = (r["level"].get(metric) or {}).get(q)
                        b = (d["level"].get(metric) or {}).get(q) if d else None
                        if a is not None and b is not None:
                            diffs.append(a - b)
                    over[f"{metric}_{q}"] = med_range(diffs)
            entry["added"] = over
        out.setdefault(name, {}).setdefault(mode, {})[str(c)] = entry
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 run, levels 1,10,50, 1.5 s each, small stream-capacity levels; "
                        "the report goes to bench/results/, not docs/")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--concurrency", type=loadgen.parse_levels, default=[1, 10, 50, 200])
    p.add_argument("--duration", type=float, default=4.0, help="measured seconds per level")
    p.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each level")
    p.add_argument("--max-requests", type=int, default=50000, help="cap on requests per level")
    p.add_argument("--timeout", type=float, default=30.0, help="per-request timeout, seconds")
    p.add_argument("--targets", default=",".join(ALL_TARGETS), help=f"comma-separated, from {ALL_TARGETS}")
    p.add_argument("--modes", default="nonstream,stream")
    p.add_argument("--latency-ms", type=float, default=50.0)
    p.add_argument("--chunks", type=int, default=10)
    p.add_argument("--gap-ms", type=float, default=5.0)
    p.add_argument("--pin", choices=["auto", "off"], default="auto",
                   help="auto: servers on all CPUs but the last, load generator and fake on the last")
    p.add_argument("--litellm-workers", type=int, default=1)
    p.add_argument("--aiserver-workers", type=int, default=0, help="WEB_WORKERS for aiserver; 0: its default")
    p.add_argument("--aiserver-key", action="store_true",
                   help="create a client key (no limits) for aiserver and send it with every request")
    p.add_argument("--streams", dest="streams", action="store_true", default=True)
    p.add_argument("--no-streams", dest="streams", action="store_false",
                   help="skip the stream-capacity benchmark")
    p.add_argument("--stream-levels", default="", help="stream-capacity levels (default 100,500,1000)")
    p.add_argument("--stream-targets", default="", help="stream-capacity targets (default see streams.py)")
    p.add_argument("--max-minutes", type=float, default=40.0, help="stop starting new levels after this long")
    p.add_argument("--out", default="", help="results JSON (default bench/results/<timestamp>.json)")
    p.add_argument("--docs", dest="docs", action="store_true", default=None,
                   help="regenerate docs/performance.md and docs/perf-*.png (default: yes unless --quick)")
    p.add_argument("--no-docs", dest="docs", action="store_false")
    args = p.parse_args(argv)
    if args.quick:
        args.runs = 1
        if args.concurrency == [1, 10, 50, 200]:
            args.concurrency = [1, 10, 50]
        args.duration, args.warmup = 1.5, 0.5
        args.stream_levels = args.stream_levels or "20,100"
    if args.docs is None:
        args.docs = not args.quick
    if not (1 <= args.runs <= 20):
        p.error("--runs must be in 1..20")
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    if "direct" not in names:
        names.insert(0, "direct")
    unknown = set(names) - set(ALL_TARGETS)
    if unknown:
        p.error(f"unknown targets: {sorted(unknown)}")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if set(modes) - set(MODES):
        p.error(f"--modes takes {list(MODES)}")

    stamp = time.strftime("%Y%m%d-%H%M%S")
    results_dir = os.path.join(HERE, "results")
    os.makedirs(results_dir, exist_ok=True)
    out_path = args.out or os.path.join(results_dir, f"{'quick-' if args.quick else ''}{stamp}.json")
    work = os.path.join(results_dir, f"{'quick-' if args.quick else ''}{stamp}.work")
    log_dir = os.path.join(work, "logs")
    os.makedirs(log_dir, exist_ok=True)
    server_cpus, client_cpus = cpu_plan(args.pin)
    started = time.monotonic()
    budget_end = started + args.max_minutes * 60

    procs: list[T.Proc] = []

    def cleanup():
        for proc in reversed(procs):
            T.stop(proc)
        procs.clear()

    atexit.register(cleanup)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(130))

    log(f"machine: {T.machine()}")
    log(f"servers on CPUs {server_cpus or 'any'}, load generator and fake upstream on CPUs {client_cpus or 'any'}")
    log(f"logs and scratch files: {os.path.relpath(work, ROOT)}")

    # The gateways' upstream (on the client's CPUs), and the direct target (on the servers' CPUs).
    upstream = T.start_fake("fake-upstream", log_dir, client_cpus, args.latency_ms, args.chunks, args.gap_ms,
                            args.max_minutes * 60 + 3600)
    procs.append(upstream.proc)
    fake_url = upstream.url
    running: dict[str, T.Target] = {}
    skipped: dict[str, str] = {}
    direct = T.start_fake("direct", log_dir, server_cpus, args.latency_ms, args.chunks, args.gap_ms,
                          args.max_minutes * 60 + 3600)
    procs.append(direct.proc)
    T.smoke(direct, args.chunks)
    running["direct"] = direct

    def attempt(name, fn):
        log(f"starting {name} ...")
        t0 = time.monotonic()
        try:
            target = fn()
        except SkipTarget as exc:
            skipped[name] = str(exc)
            log(f"SKIPPING {name}: {exc}")
            return None
        if target.owns_proc and target.proc:
            procs.append(target.proc)
        target.info["startup_s"] = round(time.monotonic() - t0, 1)
        running[name] = target
        log(f"{name} ready at {target.url} (pid {target.pid}, {target.info['startup_s']} s)")
        return target

    aiserver_extra = {"WEB_WORKERS": str(args.aiserver_workers)} if args.aiserver_workers else {}
    if "aiserver" in names or "aiserver-ask" in names:
        chat = attempt("aiserver", lambda: T.start_aiserver(log_dir, os.path.join(work, "aiserver"), fake_url,
                                                            server_cpus, args.chunks, aiserver_extra,
                                                            client_key=args.aiserver_key))
        if chat and "aiserver-ask" in names:
            attempt("aiserver-ask", lambda: T.aiserver_ask(chat, args.chunks))
        elif "aiserver-ask" in names:
            skipped["aiserver-ask"] = "aiserver did not start (see above)"
        if chat and "aiserver" not in names:
            running.pop("aiserver")
    if "litellm" in names:
        attempt("litellm", lambda: T.start_litellm(log_dir, os.path.join(work, "litellm"), fake_url, server_cpus,
                                                   args.chunks, args.litellm_workers))
    if "portkey" in names:
        attempt("portkey", lambda: T.start_portkey(log_dir, fake_url, server_cpus, args.chunks))

    order = [n for n in ALL_TARGETS if n in running]
    for t in running.values():
        rss, pss, n = loadgen.tree_memory(t.pid, with_pss=True)
        t.info["idle_rss_mb"], t.info["idle_pss_mb"], t.info["processes"] = rss / 2**20, pss / 2**20, n

    # The load generator runs in this process, pinned to the client's CPUs from here on.
    own_cpus = os.sched_getaffinity(0)
    if client_cpus:
        os.sched_setaffinity(0, {int(c) for c in client_cpus.split(",")})

    raw: list[dict] = []
    truncated = False
    for run in range(1, args.runs + 1):
        for mode in modes:
            for c in args.concurrency:
                for name in order:
                    if time.monotonic() > budget_end:
                        truncated = True
                        break
                    t = running[name]
                    if t.proc and not t.proc.alive():
                        log(f"{name} has died; its log ends with:\n{t.proc.log_tail()}")
                        continue
                    before = upstream_count(fake_stats(fake_url)) if name != "direct" else 0
                    spec = t.spec(MODES[mode], args.chunks, args.timeout)
                    # Every other process of the benchmark (the fake upstream, the idle targets): not noise.
                    helpers = tuple({o.pid for o in running.values() if o.pid and o.pid != t.pid} | {upstream.pid})
                    level = asyncio.run(loadgen.run_level(spec, c, args.duration, args.warmup, args.max_requests,
                                                          t.pid, helper_pids=helpers))
                    if name != "direct":
                        level["upstream_requests"] = upstream_count(fake_stats(fake_url)) - before
                    loadgen.print_level(f"r{run} {name} {mode}", MODES[mode], level)
                    raw.append({"run": run, "mode": mode, "concurrency": c, "target": name, "level": level})
    if truncated:
        log(f"--max-minutes ({args.max_minutes}) reached: the remaining levels were not run")
    for t in running.values():
        rss, pss, n = loadgen.tree_memory(t.pid, with_pss=True)
        t.info["end_rss_mb"], t.info["end_pss_mb"] = rss / 2**20, pss / 2**20
    os.sched_setaffinity(0, own_cpus)
    cleanup()

    streams_result = None
    if args.streams and time.monotonic() < budget_end:
        import streams
        s_args = ["--log-dir", log_dir, "--work", os.path.join(work, "streams"), "--pin", args.pin]
        if args.stream_levels:
            s_args += ["--levels", args.stream_levels]
        if args.stream_targets:
            s_args += ["--targets", args.stream_targets]
        if args.quick:
            s_args += ["--quick"]
        streams_result = streams.main(s_args, embedded=True)

    result = {
        "kind": "aiserver-bench",
        "version": 1,
        "quick": args.quick,
        "started": stamp,
        "work_dir": work,
        "elapsed_s": round(time.monotonic() - started, 1),
        "truncated": truncated,
        "machine": T.machine(),
        "aiserver_source": T.source_state(),
        "versions": T.versions(),
        "settings": {
            "runs": args.runs, "concurrency": args.concurrency, "duration_s": args.duration, "warmup_s": args.warmup,
            "max_requests": args.max_requests, "timeout_s": args.timeout, "modes": modes,
            "fake": {"latency_ms": args.latency_ms, "chunks": args.chunks, "gap_ms": args.gap_ms},
            "server_cpus": server_cpus, "client_cpus": client_cpus, "litellm_workers": args.litellm_workers,
            "aiserver_workers": args.aiserver_workers or "default",
            "argv": sys.argv[1:] if argv is None else argv,
        },
        "targets": {n: {"label": t.label, "url": t.url, "endpoint": t.endpoint, "headers": t.headers,
                        "info": t.info} for n, t in running.items()},
        "upstream": {"url": fake_url, "command": upstream.info.get("command"), "stats": fake_stats(fake_url)},
        "skipped": skipped,
        "summary": aggregate(raw, order),
        "raw": raw,
        "streams": streams_result,
    }
    with open(out_path, "w") as f:
        json.dump(result, f, indent=1)
    log(f"results: {os.path.relpath(out_path, ROOT)}")

    import report
    if args.docs:
        report.generate(out_path, os.path.join(ROOT, "docs"))
        log("regenerated docs/performance.md, docs/perf-overhead.png, docs/perf-throughput.png")
    else:
        md = out_path[:-5] + ".md"
        report.generate(out_path, os.path.dirname(out_path), md_name=os.path.basename(md),
                        png_prefix=os.path.basename(out_path[:-5]) + "-")
        log(f"report (not in docs/): {os.path.relpath(md, ROOT)}")
    for name, why in skipped.items():
        log(f"skipped {name}: {why.splitlines()[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
