"""What seeing every call costs on the hot path, in one run, back to back: aiserver as it is by default
(tracing off, the call log on), without the call log (`CALL_LOG=false`), with payloads kept
(`LOG_PAYLOADS=all`), with tracing on (exported to a local OTLP receiver), and with tracing on and a
dead collector (a port nothing listens on).

    .venv/bin/python bench/tracing.py --quick     # about two minutes
    .venv/bin/python bench/tracing.py             # three runs of each level

Each target is its own Gunicorn server (one gevent worker, the same CPU pinning) in front of one fake
upstream (bench/fake_upstream.py); for each run, mode and concurrency level the targets are loaded in
turn (bench/loadgen.py's run_level), so their figures sit next to each other. The receiver is
tests/fakes/otlp_receiver.py (the official protobufs; it needs the project's .venv, where this runs);
the run checks that it received the traced server's spans. Every loop is bounded by the lists of runs,
modes and levels, each level by --duration and --max-requests.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import loadgen  # noqa: E402
import targets as T  # noqa: E402

PROJECT_PY = os.path.join(ROOT, ".venv", "bin", "python")


def start_receiver(log_dir: str, cpus: str | None) -> tuple[T.Proc, str]:
    """The OTLP receiver's process and URL."""
    port = T.free_port()
    argv = [PROJECT_PY, "-m", "tests.fakes.otlp_receiver", "--port", str(port), "--quiet"]
    proc = T.spawn("otlp-receiver", argv, T.base_env(), ROOT, log_dir, cpus)
    T.wait_port(proc, port, 20)
    return proc, f"http://127.0.0.1:{port}"


def received_spans(url: str) -> int:
    with urllib.request.urlopen(url + "/stats", timeout=5) as answer:
        return json.load(answer)["spans"]


def variants(receiver_url: str, dead_url: str) -> tuple[tuple[str, dict], ...]:
    """Each server's name and the settings that make it differ from the default."""
    return (("default", {}), ("no-call-log", {"CALL_LOG": "false"}), ("payloads-all", {"LOG_PAYLOADS": "all"}),
            ("tracing-on", {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver_url}),
            ("tracing-dead-collector", {"OTEL_EXPORTER_OTLP_ENDPOINT": dead_url}))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="one run, levels 1 and 50, 3 s each")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--concurrency", type=loadgen.parse_levels, default=[1, 10, 50])
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--max-requests", type=int, default=20000)
    p.add_argument("--modes", default="nonstream,stream")
    p.add_argument("--out", default="", help="write the figures as JSON here too")
    args = p.parse_args(argv)
    if args.quick:
        args.runs, args.concurrency, args.duration = 1, [1, 50], 3.0
    chunks = 10
    server_cpus, client_cpus = None, None
    all_cpus = sorted(os.sched_getaffinity(0))
    if len(all_cpus) >= 2:
        server_cpus, client_cpus = ",".join(map(str, all_cpus[:-1])), str(all_cpus[-1])
    log_dir = tempfile.mkdtemp(prefix="aiserver-bench-tracing-")
    fake = receiver = None
    servers: dict[str, T.Target] = {}
    results: dict[str, list] = {}
    try:
        fake = T.start_fake("fake", log_dir, client_cpus, 50.0, chunks, 5.0, 3600)
        receiver, receiver_url = start_receiver(log_dir, client_cpus)
        dead = f"http://127.0.0.1:{T.free_port()}"
        for name, env in variants(receiver_url, dead):
            servers[name] = T.start_aiserver(log_dir, os.path.join(log_dir, name), fake.url, server_cpus, chunks,
                                             extra_env={"WEB_WORKERS": "1", "LOG_LEVEL": "WARNING", **env},
                                             name=f"aiserver-{name}")
        for run in range(args.runs):
            for mode in args.modes.split(","):
                for level in args.concurrency:
                    for name, target in servers.items():
                        spec = target.spec(mode == "stream", chunks)
                        figures = asyncio.run(loadgen.run_level(spec, level, args.duration, args.warmup,
                                                                args.max_requests, pid=target.pid,
                                                                helper_pids=(fake.pid,)))
                        loadgen.print_level(f"{name} r{run + 1}", mode == "stream", figures)
                        results.setdefault(f"{mode} c={level} {name}", []).append(figures)
        spans = received_spans(receiver_url)
        T.log(f"the receiver got {spans} spans from the traced server")
        if spans == 0:
            T.log("NO SPANS RECEIVED: tracing was not on; the figures do not measure it")
            return 1
    finally:
        for target in servers.values():
            T.stop(target.proc)
        T.stop(receiver)
        T.stop(fake.proc if fake else None)
    print_summary(results)
    if args.out:
        with open(args.out, "w") as out:
            json.dump(results, out, indent=1)
    return 0


def print_summary(results: dict[str, list]) -> None:
    """Median over runs of p50 latency, time to first token, requests/s and CPU per request."""
    print("\n| mode, concurrency, server | p50 ms | ttft p50 ms | req/s | CPU ms/req |")
    print("|---|---|---|---|---|")
    for key, levels in results.items():
        print(f"| {key} | {median(levels, lambda lv: lv['latency_ms']['p50'])} | "
              f"{median(levels, lambda lv: (lv['ttft_ms'] or {}).get('p50'))} | "
              f"{median(levels, lambda lv: lv['rps'])} | "
              f"{median(levels, lambda lv: lv['cpu_ms_per_request'])} |")


def median(levels: list[dict], pick) -> str:
    values = [v for v in (pick(level) for level in levels) if v is not None]
    return f"{statistics.median(values):.2f}" if values else "-"


if __name__ == "__main__":
    sys.exit(main())
