"""CPU per request of the app itself, in one process, for comparing two checkouts on a busy machine.

Runs in aiserver's venv from the checkout to measure (no Gunicorn, no gevent: Flask's test client
calls the WSGI app, which calls the fake upstream through the real openai SDK), with a client key
sent on every request. Prints this process's CPU time (`time.process_time`, so other work on the
machine inflates it far less than wall time) per request: the best and the median of five batches.

    bench/.venv-bench/bin/python bench/fake_upstream.py --port 47111 --latency-ms 1 --gap-ms 0 &
    PYTHONPATH=. .venv/bin/python bench/request_cpu.py --fake http://127.0.0.1:47111 --mode stream
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fake", required=True, help="URL of bench/fake_upstream.py")
    p.add_argument("--mode", choices=("nonstream", "stream"), default="nonstream")
    p.add_argument("--requests", type=int, default=60, help="requests per batch (five batches)")
    args = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="aiserver-cpu-")
    open(os.path.join(tmp, "empty.env"), "w").close()
    os.environ.update(DATABASE_URL=f"sqlite:///{tmp}/bench.db", DOTENV_PATH=f"{tmp}/empty.env", LOG_DIR=tmp,
                      OPENAI_API_KEY="bench", OPENAI_BASE_URL=f"{args.fake}/v1",
                      KEY_HASH_SECRET_FILE=f"{tmp}/key_hash_secret")
    report, sys.stderr = sys.stderr, open(os.path.join(tmp, "console.log"), "w")  # the console log handler's
    from app import create_app
    from app.core.db import migrate
    from app.keys import service

    app = create_app()
    migrate(app.extensions["database"])
    _, key = service.create_key(service.KeySpec(name="bench"), app.extensions["key_hash_secret"]())
    client = app.test_client()
    body: dict = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
                  "stream": args.mode == "stream"}
    if args.mode == "stream":
        body["stream_options"] = {"include_usage": True}

    def batch(count: int) -> None:
        for _ in range(count):
            response = client.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})
            answer = response.get_data()
            response.close()
            if response.status_code != 200:
                raise SystemExit(f"HTTP {response.status_code}: {answer[:300]!r}")

    batch(30)  # warm-up: connections, caches
    figures = []
    for _ in range(5):
        started = time.process_time()
        batch(args.requests)
        figures.append((time.process_time() - started) / args.requests * 1e6)
    figures.sort()
    print(f"{args.mode}: CPU µs per request, best {figures[0]:.0f}, median {figures[2]:.0f}", file=report)


if __name__ == "__main__":
    main()
