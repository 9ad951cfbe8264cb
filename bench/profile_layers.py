"""Shares of a profiled worker's samples by layer: each sample goes to the innermost layer on its stack.

    python bench/profile_layers.py /tmp/stacks-12345.txt    # from bench/profile_gunicorn.conf.py
"""
import collections
import os
import re
import sys

LAYERS = [
    ("auth (key lookup)", r"app/keys/(auth|service)\.py"),
    ("rate limits (flask-limiter, permit)", r"/flask_limiter/|/limits/|app/keys/limits\.py|app/keys/counters\.py"),
    ("usage rows", r"app/keys/usage\.py"),
    ("metrics", r"/prometheus_client/|app/core/metrics\.py"),
    ("logging (access line, handlers)",
     r"/logging/|concurrent_log_handler|portalocker|app/core/logs\.py|request_log\.py:\d+:log_access"),
    ("upstream health", r"app/llm/health\.py"),
    ("schema validation (marshmallow)", r"/marshmallow/|app/core/http\.py:\d+:load|app/core/schemas\.py"),
    ("SSE formatting and pump", r"app/llm/(sse|pump)\.py"),
    ("openai SDK + httpx2/httpcore2/h11 (upstream call)", r"/openai/|/httpx|/httpcore|/h11/"),
    ("Flask/Werkzeug", r"/flask/|/werkzeug/"),
    ("Gunicorn (request parsing, writing)", r"/gunicorn/"),
    # last: what of ours the layers above leave (views, gateway, registry, call log, responses); not
    # app/core and app/web, the shared plumbing, whose work goes to the layer that called it
    ("aiserver's own request code (front doors, gateway, registry, call log)",
     re.escape(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "app", ""))
     + r"(?!core/|web/)"),
]


def layer_of(frames: list[str]) -> str:
    if any(":fork_and_watch" in frame for frame in frames[:4]):
        # no Python frame of its own: the hub's C loop shows the frame left from the worker's fork
        return "gevent hub and other"
    for frame in reversed(frames):
        for name, pattern in LAYERS:
            if re.search(pattern, frame):
                return name
    return "gevent hub and other"


def shares(path: str) -> tuple[int, collections.Counter]:
    total, counts = 0, collections.Counter()
    with open(path) as f:
        for line in f:
            stack, _, n = line.rstrip("\n").rpartition(" ")
            total += int(n)
            counts[layer_of(stack.split(";"))] += int(n)
    return total, counts


def main(paths: list[str]) -> None:
    for path in paths:
        total, counts = shares(path)
        print(f"{path}: {total / 1e6:.2f} s of CPU profiled")
        for name, n in counts.most_common():
            print(f"{100 * n / max(total, 1):5.1f}%  {name}")


if __name__ == "__main__":
    main(sys.argv[1:])
