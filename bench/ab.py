"""A/B on a busy machine: this checkout's aiserver against other checkouts' (and Portkey's gateway),
loaded in turn for several short rounds, so a change is measured against the code before it under the
same background load. Prints per target the median CPU ms per request over the rounds, and its median
ratio to Portkey's in the same round.

    git archive <base commit> | tar -x -C /tmp/base && ln -s $PWD/.venv /tmp/base/.venv
    bench/.venv-bench/bin/python bench/ab.py --other base=/tmp/base --rounds 6 --key

Each aiserver runs from its own checkout (its `.venv`, `gunicorn.conf.py`), on its own SQLite database,
pinned like `bench.py` pins servers; the fake upstream and this load generator on the last CPU.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import loadgen  # noqa: E402
import targets  # noqa: E402


def start_aiserver(name: str, root: str, work: str, fake_url: str, cpus: str, chunks: int, workers: int,
                   key: bool) -> targets.Target:
    """`targets.start_aiserver` run from the checkout at `root`."""
    mine = targets.ROOT
    targets.ROOT = root
    try:
        extra = {"WEB_WORKERS": str(workers)} if workers else {}
        return targets.start_aiserver(work, os.path.join(work, name), fake_url, cpus, chunks, extra_env=extra,
                                      name=name, client_key=key)
    finally:
        targets.ROOT = mine


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--other", action="append", default=[], help="NAME=DIR: another checkout to compare")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--duration", type=float, default=3.0, help="measured seconds per level and round")
    p.add_argument("--concurrency", default="10,50")
    p.add_argument("--modes", default="nonstream,stream")
    p.add_argument("--workers", type=int, default=0, help="WEB_WORKERS; 0: aiserver's default")
    p.add_argument("--key", action="store_true", help="create a client key and send it (the realistic set-up)")
    p.add_argument("--no-portkey", action="store_true")
    args = p.parse_args(argv)
    chunks = 10
    work = tempfile.mkdtemp(prefix="aiserver-ab-")
    server_cpus, client_cpus = ("0", "1") if (os.cpu_count() or 1) > 1 else (None, None)
    fake = targets.start_fake("fake", work, client_cpus, 50.0, chunks, 5.0, 3600)
    started: list[targets.Target] = []
    try:
        checkouts = [("this", targets.ROOT)] + [tuple(spec.split("=", 1)) for spec in args.other]
        for name, root in checkouts:
            started.append(start_aiserver(name, os.path.abspath(root), work, fake.url, server_cpus, chunks,
                                          args.workers, args.key))
        if not args.no_portkey:
            started.append(targets.start_portkey(work, fake.url, server_cpus, chunks))
        figures: dict[tuple, list[float]] = {}
        for round_no in range(args.rounds):
            for mode in args.modes.split(","):
                for concurrency in loadgen.parse_levels(args.concurrency):
                    for target in started:
                        level = asyncio.run(loadgen.run_level(target.spec(mode == "stream", chunks), concurrency,
                                                              args.duration, 0.5, 50_000, pid=target.pid,
                                                              helper_pids=(fake.pid,)))
                        figures.setdefault((target.name, mode, concurrency), []).append(
                            level["cpu_ms_per_request"] or float("nan"))
                        print(f"round {round_no + 1} {target.name:10} {mode:9} c={concurrency:<3} "
                              f"cpu/req={level['cpu_ms_per_request']:.2f} ms rps={level['rps']:.0f} "
                              f"errors={level['errors']} background={level['background_cpu_util'] or 0:.2f}",
                              flush=True)
        print("\ntarget     mode      C    CPU ms/req (median)  x Portkey (median of rounds)")
        for (name, mode, concurrency), values in figures.items():
            portkey = figures.get(("portkey", mode, concurrency))
            ratio = statistics.median(v / p for v, p in zip(values, portkey)) if portkey else float("nan")
            print(f"{name:10} {mode:9} {concurrency:<4} {statistics.median(values):8.2f}  "
                  f"({min(values):.2f}-{max(values):.2f})  {ratio:.2f}x")
    finally:
        for target in started:
            targets.stop(target.proc)
        targets.stop(fake.proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
