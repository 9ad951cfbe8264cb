"""How long aiserver takes to start: from launching Gunicorn to the first answered request.

    .venv/bin/python bench/startup.py [--runs 5] [--upstream http://127.0.0.1:9100]

Each run starts `gunicorn --config gunicorn.conf.py app.wsgi:app` with one worker and the OpenAI
provider configured, as in production, polls `GET /ping` every 10 ms, then stops the server. Prints
the times and their median; bench/run.sh stores them with the other results. Bounded: 30 s per run.

With `--upstream` (a running bench/fake_upstream.py), the OpenAI provider points at it and each run
also sends one chat completion once `/ping` answers, and times that first answer from the launch too:
the openai SDK is imported at a provider's first call, not at start-up (docs/performance.md, "Third cut").
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def one_start(scratch: str, upstream: str | None) -> tuple[float, float | None]:
    """Seconds from the launch to the first answer to `/ping`, and (with `upstream`) to the first chat
    completion, sent once `/ping` answers."""
    port = free_port()
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"),
           "DOTENV_PATH": os.path.join(scratch, "empty.env"), "PORT": str(port), "WEB_WORKERS": "1",
           "OPENAI_API_KEY": "bench", "DATABASE_URL": f"sqlite:///{scratch}/startup.db", "LOG_DIR": scratch,
           "QUEUE_SQLITE_PATH": os.path.join(scratch, "queue.db")}
    if upstream:
        env["OPENAI_BASE_URL"] = f"{upstream.rstrip('/')}/v1"
    started = time.monotonic()
    proc = subprocess.Popen([os.path.join(ROOT, ".venv/bin/gunicorn"), "--config", "gunicorn.conf.py",
                             "app.wsgi:app"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while time.monotonic() - started < 30:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1) as response:
                    if response.status == 200:
                        ping = time.monotonic() - started
                        return ping, first_chat(port, started) if upstream else None
            except OSError:
                time.sleep(0.01)
        raise RuntimeError("the server did not answer within 30 s")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def first_chat(port: int, started: float) -> float:
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()
        if response.status != 200:
            raise RuntimeError(f"the first chat completion was answered {response.status}")
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", help="also write the times to this file")
    parser.add_argument("--upstream", help="a running bench/fake_upstream.py: also time the first chat completion")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        open(os.path.join(scratch, "empty.env"), "w").close()
        subprocess.run([os.path.join(ROOT, ".venv/bin/flask"), "--app", "app.wsgi", "db-upgrade"], cwd=ROOT,
                       env={"PATH": os.environ.get("PATH", ""), "DOTENV_PATH": os.path.join(scratch, "empty.env"),
                            "DATABASE_URL": f"sqlite:///{scratch}/startup.db", "LOG_DIR": scratch,
                            "QUEUE_SQLITE_PATH": os.path.join(scratch, "queue.db")},
                       check=True, capture_output=True, timeout=120)
        runs = [one_start(scratch, args.upstream) for _ in range(args.runs)]
    times = [ping for ping, _ in runs]
    print("start-up to first answer (s):", ", ".join(f"{t:.2f}" for t in times),
          f"| median {statistics.median(times):.2f}")
    chats = [chat for _, chat in runs if chat is not None]
    if chats:
        print("start-up to first chat completion (s):", ", ".join(f"{t:.2f}" for t in chats),
              f"| median {statistics.median(chats):.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"startup_s": times, **({"first_chat_s": chats} if chats else {})}, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
