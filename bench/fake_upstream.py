"""A fast fake OpenAI-compatible upstream for the benchmark (aiohttp, one process).

    python bench/fake_upstream.py --port 9100 --latency-ms 50 --chunks 10 --gap-ms 5

Endpoints:
  POST /v1/chat/completions   non-stream: sleeps --latency-ms, then one `chat.completion`.
                              stream: sleeps --latency-ms, then --chunks content chunks
                              --gap-ms apart, a finish chunk, a usage chunk when
                              `stream_options.include_usage` is true, then `data: [DONE]`.
  GET  /v1/models             one model list.
  *    /github/...            a stand-in GitHub API root (GITHUB_API_URL) that must not be contacted:
                              each request is counted (`served.github`) and answered 503.
  POST /fake/fault            {"mode": "ok" | "503" | "hang"}: from now on every chat completion is
                              answered normally, with an OpenAI-style 503 at once, or not at all
                              (the connection held open for --hang-seconds, then closed), as an
                              outage of the vendor would (bench/outage.py switches it).
  GET  /fake/stats            requests served so far (`calls`: every chat completion received,
                              faulted ones included) (the harness checks that every
                              gateway request really reached the upstream), the streams
                              being served now (`open_streams`) and the other TCP
                              connections open to this process now (`open_connections`:
                              idle keep-alive ones included, this request's not).
The same routes answer without the /v1 prefix, for clients whose base URL lacks it.

The answer's text is `expected_text(chunks)`: the load generator checks every
response against it. Nothing here is random, so every run serves the same bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time

from aiohttp import web

MODEL = "gpt-4o-mini"


def chunk_texts(chunks: int) -> list[str]:
    """The content pieces a stream sends; joined, they are the whole answer."""
    return [f"tok{i} " for i in range(chunks)]


def expected_text(chunks: int) -> str:
    return "".join(chunk_texts(chunks))


def _usage(chunks: int) -> dict:
    return {"prompt_tokens": 12, "completion_tokens": chunks, "total_tokens": 12 + chunks}


class Fake:
    def __init__(self, latency_ms: float, chunks: int, gap_ms: float, hang_seconds: float = 120.0):
        self.fault = "ok"
        self.hang_seconds = hang_seconds
        self.calls = 0
        self.latency = max(0.0, latency_ms) / 1000.0
        self.gap = max(0.0, gap_ms) / 1000.0
        self.chunks = max(1, chunks)
        self.pieces = chunk_texts(self.chunks)
        self.text = expected_text(self.chunks)
        self.served = {"chat": 0, "chat_stream": 0, "models": 0, "bad_request": 0, "github": 0, "failed": 0,
                       "hung": 0}
        self.open_streams = 0
        self.max_open_streams = 0
        self.server: web.Server | None = None  # set once serving: it knows the open connections
        self._models = json.dumps({
            "object": "list",
            "data": [{"id": MODEL, "object": "model", "created": 1700000000, "owned_by": "fake"}],
        }).encode()

    # -- handlers ---------------------------------------------------------

    async def models(self, request: web.Request) -> web.Response:
        self.served["models"] += 1
        return web.Response(body=self._models, content_type="application/json")

    async def github(self, request: web.Request) -> web.Response:
        self.served["github"] += 1
        return web.json_response({"message": "the benchmark's fake does not serve GitHub"}, status=503)

    async def set_fault(self, request: web.Request) -> web.Response:
        mode = (await request.json()).get("mode")
        if mode not in ("ok", "503", "hang"):
            return web.json_response({"error": {"message": "mode: ok, 503 or hang"}}, status=400)
        self.fault = mode
        return web.json_response({"mode": mode})

    async def faulted(self) -> web.Response | None:
        """The answer of a vendor in an outage, or None when there is none."""
        if self.fault == "503":
            self.served["failed"] += 1
            return web.json_response({"error": {"message": "The server is overloaded.", "type": "server_error"}},
                                     status=503)
        if self.fault == "hang":
            self.served["hung"] += 1
            await asyncio.sleep(self.hang_seconds)  # nothing sent; the client gives up first
            raise web.HTTPServiceUnavailable()
        return None

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response({
            "served": self.served,
            "calls": self.calls,
            "fault": self.fault,
            "open_streams": self.open_streams,
            "max_open_streams": self.max_open_streams,
            # the connection asking for these stats is not counted
            "open_connections": len(self.server.connections) - 1 if self.server else None,
            "latency_ms": self.latency * 1000,
            "chunks": self.chunks,
            "gap_ms": self.gap * 1000,
            "expected_text": self.text,
            "pid": os.getpid(),
        })

    async def chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
            if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
                raise ValueError("messages must be a list")
        except (ValueError, json.JSONDecodeError) as exc:
            self.served["bad_request"] += 1
            return web.json_response(
                {"error": {"message": f"bad request: {exc}", "type": "invalid_request_error"}}, status=400)
        self.calls += 1
        failure = await self.faulted()
        if failure is not None:
            return failure
        model = str(body.get("model") or MODEL)
        created = int(time.time())
        cid = f"chatcmpl-fake{created}"
        if body.get("stream"):
            opts = body.get("stream_options") or {}
            include_usage = bool(isinstance(opts, dict) and opts.get("include_usage"))
            return await self._stream(request, cid, created, model, include_usage)
        self.served["chat"] += 1
        if self.latency:
            await asyncio.sleep(self.latency)
        payload = {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": self.text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }],
            "usage": _usage(self.chunks),
            "system_fingerprint": "fp_fake",
        }
        return web.Response(body=json.dumps(payload).encode(), content_type="application/json")

    async def _stream(self, request, cid, created, model, include_usage) -> web.StreamResponse:
        self.served["chat_stream"] += 1
        self.open_streams += 1
        self.max_open_streams = max(self.max_open_streams, self.open_streams)
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            resp = web.StreamResponse(status=200, headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
            })
            await resp.prepare(request)
            head = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                    "system_fingerprint": "fp_fake"}

            def event(choices, **extra) -> bytes:
                return b"data: " + json.dumps({**head, "choices": choices, **extra}).encode() + b"\n\n"

            # The first chunk names the role, as OpenAI's does; the content follows.
            first = [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                      "finish_reason": None}]
            await resp.write(event(first))
            for i, piece in enumerate(self.pieces):  # bounded: --chunks
                if i and self.gap:
                    await asyncio.sleep(self.gap)
                await resp.write(event([{"index": 0, "delta": {"content": piece}, "logprobs": None,
                                         "finish_reason": None}]))
            await resp.write(event([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]))
            if include_usage:
                await resp.write(event([], usage=_usage(self.chunks)))
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
            return resp
        finally:
            self.open_streams -= 1


def build_app(fake: Fake) -> web.Application:
    app = web.Application(client_max_size=4 * 1024 * 1024)
    for prefix in ("/v1", ""):
        app.router.add_post(f"{prefix}/chat/completions", fake.chat)
        app.router.add_get(f"{prefix}/models", fake.models)
    app.router.add_get("/fake/stats", fake.stats)
    app.router.add_post("/fake/fault", fake.set_fault)
    app.router.add_route("*", "/github/{path:.*}", fake.github)
    app.router.add_get("/health", lambda r: web.Response(text="ok"))
    return app


async def serve(args) -> None:
    fake = Fake(args.latency_ms, args.chunks, args.gap_ms, args.hang_seconds)
    runner = web.AppRunner(build_app(fake), access_log=None, handle_signals=False)
    await runner.setup()
    fake.server = runner.server
    site = web.TCPSite(runner, args.host, args.port, backlog=4096, reuse_address=True)
    await site.start()
    port = runner.addresses[0][1]
    print(f"fake upstream listening on http://{args.host}:{port}/v1 "
          f"(latency {args.latency_ms} ms, {args.chunks} chunks, gap {args.gap_ms} ms)", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        # Bounded: --max-seconds (the harness also stops it by signal).
        await asyncio.wait_for(stop.wait(), timeout=args.max_seconds)
    except asyncio.TimeoutError:
        print("fake upstream: --max-seconds reached, stopping", file=sys.stderr, flush=True)
    finally:
        await runner.cleanup()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9100, help="0 picks a free port (printed)")
    p.add_argument("--latency-ms", type=float, default=50.0, help="wait before the answer or first chunk")
    p.add_argument("--chunks", type=int, default=10, help="content chunks in a stream")
    p.add_argument("--gap-ms", type=float, default=5.0, help="wait between content chunks")
    p.add_argument("--hang-seconds", type=float, default=120.0,
                   help="how long a request is held unanswered while the fault is `hang`")
    p.add_argument("--max-seconds", type=float, default=4 * 3600,
                   help="exit by itself after this long (default 4 h)")
    args = p.parse_args(argv)
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
