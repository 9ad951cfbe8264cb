"""CPU of one upstream call through the openai SDK against the same call sent by httpx2 alone.

Both go to bench/fake_upstream.py over the same kind of connection pool (this server's transport,
`FirstByteTransport`); the SDK's call is the provider's own (`OpenAICompatibleProvider.client.post`
with a raw `httpx2.Response`, streams with its body unread), so the difference is what the SDK adds to
a call: its request options, URL and header building, the auth hook and the response's processing.
Prints this process's CPU time per call (`time.process_time`): the best and the median of five
batches, the four kinds of call interleaved.

    bench/.venv-bench/bin/python bench/fake_upstream.py --port 47111 --latency-ms 1 &
    PYTHONPATH=. .venv/bin/python bench/sdk_cpu.py --fake http://127.0.0.1:47111
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from contextlib import closing
from typing import Callable

import httpx2

from app.llm.providers.base import FirstByteTransport, connection_limits
from app.llm.providers.openai_compatible import OpenAICompatibleProvider, raw_stream

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def calls(fake: str) -> dict[str, Callable[[], None]]:
    sdk = OpenAICompatibleProvider("openai", api_key="bench", base_url=f"{fake}/v1", default_model="gpt-4o-mini",
                                   fallback_models=[], connect_timeout=5, read_timeout=30).client
    plain = httpx2.Client(transport=FirstByteTransport(limits=connection_limits(100)),
                          timeout=httpx2.Timeout(30, connect=5))
    url, headers = f"{fake}/v1/chat/completions", {"Authorization": "Bearer bench", "Content-Type": "application/json"}
    streamed = {**BODY, "stream": True}

    def sdk_whole() -> None:
        json.loads(sdk.post("/chat/completions", body=BODY, cast_to=httpx2.Response).content)

    def plain_whole() -> None:
        json.loads(plain.post(url, content=json.dumps(BODY).encode(), headers=headers).content)

    def sdk_stream() -> None:
        response = sdk.post("/chat/completions", body=streamed, cast_to=httpx2.Response, options=raw_stream())
        with closing(response):
            for _line in response.iter_lines():
                pass

    def plain_stream() -> None:
        with plain.stream("POST", url, content=json.dumps(streamed).encode(), headers=headers) as response:
            for _line in response.iter_lines():
                pass

    return {"SDK, non-stream": sdk_whole, "httpx2 alone, non-stream": plain_whole,
            "SDK, stream": sdk_stream, "httpx2 alone, stream": plain_stream}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fake", required=True, help="URL of bench/fake_upstream.py")
    p.add_argument("--calls", type=int, default=100, help="calls of each kind per batch (five batches)")
    args = p.parse_args()
    kinds = calls(args.fake.rstrip("/"))
    for call in kinds.values():  # warm-up: connections, the SDK's first-call work
        for _ in range(20):
            call()
    figures: dict[str, list[float]] = {name: [] for name in kinds}
    for _ in range(5):
        for name, call in kinds.items():
            started = time.process_time()
            for _ in range(args.calls):
                call()
            figures[name].append((time.process_time() - started) / args.calls * 1e6)
    for name, values in figures.items():
        print(f"{name}: CPU µs per call, best {min(values):.0f}, median {statistics.median(values):.0f}")


if __name__ == "__main__":
    main()
