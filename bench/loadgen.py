"""Async load generator for the benchmark (aiohttp client).

    python bench/loadgen.py --url http://127.0.0.1:8000 --endpoint chat --stream \\
        --concurrency 1,10,50,200 --duration 5 --pid 12345 --expect-chunks 10

For each concurrency level it keeps that many requests in flight for --duration
seconds (after --warmup seconds that are not counted), stopping early at
--max-requests, and reports:
  * latency p50/p95/p99 (whole response), and for streams the time to the first
    non-empty content delta (TTFT);
  * throughput (valid responses per second) and errors;
  * the server's CPU milliseconds per request, summed over the process tree under
    --pid (utime+stime from /proc via psutil, before/after the level);
  * the peak RSS (and PSS) of that process tree, sampled every --sample-interval s.
Every response is checked: HTTP 200, the expected content text, and `data: [DONE]`
for streams. An invalid response counts as an error, never as a latency sample.

Every loop is bounded: by time (--duration, --timeout per request, a hard limit
per level) and by count (--max-requests per level).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp

try:
    import psutil
except ImportError:  # the monitor is optional; the figures say so
    psutil = None

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from fake_upstream import expected_text  # noqa: E402

PROMPT = "Say hello to the benchmark."


# --------------------------------------------------------------------------- requests

ENDPOINT_PATHS = {"chat": "/v1/chat/completions", "ask": "/v1/ask", "persisted": "/chat", "responses": "/v1/responses",
                  "task": "/task"}
TASK_ACCEPTED = "accepted"  # what the check of a `/task` answer yields for a new task, accepted and queued


@dataclass
class Spec:
    """What to send and what to expect back.

    Endpoints: chat (`POST /v1/chat/completions`), ask (`POST /v1/ask`), persisted (`POST /chat` with a
    `chat_id`: each virtual client continues its own chat, `turns_per_chat` turns each, then starts
    another), responses (`POST /v1/responses`, stored, non-streaming only) and task (`POST /task`, the
    deployment intake: each request a new task `<chat_prefix>-<client>-<turn>`, round 1, from the
    client's own email; `secret` and `evaluation_url` are sent as given; its answer must accept it as
    new and queued, and `expect` is not used)."""
    url: str                      # base URL, e.g. http://127.0.0.1:8000
    endpoint: str = "chat"
    stream: bool = False
    model: str = "gpt-4o-mini"
    headers: dict = field(default_factory=dict)
    expect: str = ""
    timeout: float = 30.0
    include_usage: bool = True
    chat_prefix: str = "bench"    # persisted: chat ids are <chat_prefix>-<client>-<n>
    turns_per_chat: int = 10
    expect_status: int = 200      # another status: valid when answered with it and a JSON `error` body
    secret: str = ""              # task: the server's VERIFICATION_SECRET
    evaluation_url: str = ""      # task: where the worker would notify (the SSRF check must let it through)

    @property
    def target_url(self) -> str:
        return self.url.rstrip("/") + ENDPOINT_PATHS[self.endpoint]

    @property
    def varies(self) -> bool:
        """Whether the body depends on the client and its turn (else one body serves every request)."""
        return self.endpoint in ("persisted", "task")

    @property
    def expected_content(self) -> str:
        return TASK_ACCEPTED if self.endpoint == "task" else self.expect

    def chat_id(self, client: int, turn: int) -> str:
        return f"{self.chat_prefix}-{client}-{turn // self.turns_per_chat}"

    def task_name(self, client: int, turn: int) -> str:
        """task: the task of the client's `turn`-th request (a new one each time)."""
        return f"{self.chat_prefix}-{client}-{turn}"

    def body(self, client: int = 0, turn: int = 0) -> dict:
        if self.endpoint == "ask":
            return {"question": PROMPT, "client_id": "bench", "user_id": "bench", "stream": self.stream}
        if self.endpoint == "persisted":
            return {"message": f"{PROMPT} (turn {turn})", "chat_id": self.chat_id(client, turn), "stream": self.stream}
        if self.endpoint == "responses":
            return {"model": self.model, "input": PROMPT, "store": True}
        if self.endpoint == "task":
            name = self.task_name(client, turn)
            return {"email": f"{self.chat_prefix}-{client}@bench.example", "secret": self.secret, "task": name,
                    "round": 1, "nonce": f"nonce-{name}", "brief": PROMPT, "checks": ["It says hello."],
                    "evaluation_url": self.evaluation_url, "attachments": []}
        body = {"model": self.model, "messages": [{"role": "user", "content": PROMPT}], "stream": self.stream}
        if self.stream and self.include_usage:
            body["stream_options"] = {"include_usage": True}
        return body


@dataclass
class Result:
    ok: bool
    total: float = 0.0            # seconds from send to the end of the body
    ttft: float | None = None     # seconds to the first non-empty content delta (streams)
    error: str = ""
    detail: str = ""
    client: int = -1              # which virtual client sent it, and its how-manieth request (its turn)
    turn: int = -1
    chunks: int = 0               # content deltas received (streams)
    max_gap: float | None = None  # longest silence in seconds between two reads of a stream's body


def _task_verdict(answer, sent: bytes) -> str:
    """TASK_ACCEPTED when the intake's answer accepts the task `sent` as a new round 1, queued, with
    the sent nonce and a task id and status URL; else the answer itself (the error's detail)."""
    request = json.loads(sent)
    new = (answer.get("status") == "accepted" and answer.get("round") == 1 and answer.get("duplicate") is False
           and answer.get("nonce") == request["nonce"] and answer.get("stage") == "queued"
           and str(answer.get("task_id") or "").startswith("dt_")
           and answer.get("status_url") == f"/tasks/{answer.get('task_id')}")
    return TASK_ACCEPTED if new else json.dumps(answer)


def _content_of(obj, endpoint: str = "chat", sent: bytes = b"") -> str:
    """The answer's text: `response` of `POST /chat`, the output text of a Response, the verdict on a
    `/task` answer (`_task_verdict`), else the `chat.completion`'s first choice."""
    try:
        if endpoint == "task":
            return _task_verdict(obj, sent)
        if endpoint == "persisted":
            return obj["response"] or ""
        if endpoint == "responses":
            return "".join(part.get("text") or "" for item in obj["output"] if item.get("type") == "message"
                           for part in item["content"])
        return obj["choices"][0]["message"]["content"] or ""
    except (KeyError, IndexError, TypeError, AttributeError):
        return ""


def _stream_pieces(obj) -> tuple[list[str], bool, str]:
    """(content pieces, whether this event ends the stream, an error) of one stream event: OpenAI's
    `chat.completion.chunk`, or this server's own `/chat` events (`delta`, `done`, `error`)."""
    kind = obj.get("type")
    if kind == "delta":
        return [obj.get("content") or ""], False, ""
    if kind == "done":
        return [], True, ""
    if kind == "error":
        return [], False, json.dumps(obj)[:300]
    return [(choice.get("delta") or {}).get("content") or "" for choice in obj.get("choices") or ()], False, ""


async def _expected_error(resp: aiohttp.ClientResponse, t0: float) -> Result:
    """A response whose status was the Spec's `expect_status`: valid if its body is a JSON error."""
    raw = await resp.read()
    try:
        valid = "error" in json.loads(raw)
    except (ValueError, TypeError):
        valid = False
    if not valid:
        detail = raw[:300].decode("utf-8", "replace")
        return Result(False, time.perf_counter() - t0, error="bad_error_body", detail=detail)
    return Result(True, time.perf_counter() - t0)


async def one_request(session: aiohttp.ClientSession, spec: Spec, body: bytes) -> Result:
    t0 = time.perf_counter()
    try:
        async with session.post(spec.target_url, data=body, headers=spec.headers,
                                timeout=aiohttp.ClientTimeout(total=spec.timeout)) as resp:
            if resp.status != spec.expect_status:
                text = (await resp.read())[:300].decode("utf-8", "replace")
                return Result(False, error=f"http_{resp.status}", detail=text)
            if resp.status != 200:
                return await _expected_error(resp, t0)
            if not spec.stream:
                raw = await resp.read()
                total = time.perf_counter() - t0
                try:
                    content = _content_of(json.loads(raw), spec.endpoint, body)
                except ValueError:
                    return Result(False, total, error="bad_json", detail=raw[:300].decode("utf-8", "replace"))
                if content.strip() != spec.expected_content.strip():
                    return Result(False, total, error="wrong_content", detail=content[:300])
                return Result(True, total)
            parts: list[str] = []
            ttft = None
            done = False
            lines = 0
            buf = b""
            last_read, max_gap = time.perf_counter(), 0.0
            # Read whatever arrived and split it into lines here: cheaper than one
            # readline() coroutine per line, so the client is not the bottleneck.
            async for data in resp.content.iter_any():  # bounded by the request timeout
                now = time.perf_counter()
                max_gap, last_read = max(max_gap, now - last_read), now
                buf += data
                if b"\n" not in data:
                    continue
                *complete, buf = buf.split(b"\n")
                for line in complete:
                    lines += 1
                    if not line.startswith(b"data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == b"[DONE]":
                        done = True
                        continue
                    if b'"content"' not in payload and b'"type"' not in payload:
                        continue  # no content anywhere in this chunk (usage, finish, keep-alive)
                    try:
                        pieces, ends, failed = _stream_pieces(json.loads(payload))
                    except (ValueError, AttributeError):
                        return Result(False, error="bad_chunk", detail=payload[:300].decode("utf-8", "replace"))
                    if failed:
                        return Result(False, error="stream_error", detail=failed)
                    done = done or ends
                    for piece in pieces:
                        if piece:
                            if ttft is None:
                                ttft = time.perf_counter() - t0
                            parts.append(piece)
            if buf.strip() == b"data: [DONE]":
                done = True
            total = time.perf_counter() - t0
            content = "".join(parts)
            if not done:
                return Result(False, total, ttft, error="no_done", detail=f"{lines} lines, content {content[:200]!r}",
                              chunks=len(parts), max_gap=max_gap)
            if content.strip() != spec.expected_content.strip():
                return Result(False, total, ttft, error="wrong_content", detail=content[:300], chunks=len(parts),
                              max_gap=max_gap)
            return Result(True, total, ttft, chunks=len(parts), max_gap=max_gap)
    except asyncio.TimeoutError:
        return Result(False, time.perf_counter() - t0, error="timeout")
    except aiohttp.ClientError as exc:
        return Result(False, time.perf_counter() - t0, error=type(exc).__name__, detail=str(exc)[:300])
    except OSError as exc:
        return Result(False, time.perf_counter() - t0, error=type(exc).__name__, detail=str(exc)[:300])


def make_session(concurrency: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=max(100, concurrency * 2), limit_per_host=0,
                                     keepalive_timeout=30, enable_cleanup_closed=True)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None))


# --------------------------------------------------------------------------- the server's process tree

def tree_processes(pid: int) -> list:
    if psutil is None or not pid:
        return []
    try:
        root = psutil.Process(pid)
        return [root] + root.children(recursive=True)
    except psutil.Error:
        return []


def tree_cpu_seconds(pid: int) -> float:
    """utime+stime of every live process in the tree, in seconds."""
    total = 0.0
    for p in tree_processes(pid):
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def tree_memory(pid: int, with_pss: bool = False) -> tuple[int, int, int]:
    """(summed RSS bytes, summed PSS bytes or 0, number of processes) of the tree."""
    rss = pss = n = 0
    for p in tree_processes(pid):
        try:
            if with_pss:
                m = p.memory_full_info()
                rss += m.rss
                pss += getattr(m, "pss", 0)
            else:
                rss += p.memory_info().rss
            n += 1
        except psutil.Error:
            pass
    return rss, pss, n


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def machine_cpu() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, steal seconds), from /proc/stat's first line."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    user, nice, system, idle, iowait, irq, softirq = (v + [0] * 7)[:7]
    steal = v[7] if len(v) > 7 else 0
    return (user + nice + system + irq + softirq) / _TICK, steal / _TICK


class TreeMonitor:
    """Samples the tree's CPU and memory while a level runs (bounded by stop())."""

    def __init__(self, pid: int, interval: float = 0.25):
        self.pid = pid
        self.interval = interval
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.peak_rss = 0
        self.peak_pss = 0
        self.nprocs = 0
        self._task = None
        self._stop = asyncio.Event()

    def _sample(self, with_pss: bool) -> None:
        rss = pss = 0
        procs = tree_processes(self.pid)
        for p in procs:
            try:
                with p.oneshot():
                    t = p.cpu_times()
                    if with_pss:
                        m = p.memory_full_info()
                        pss += getattr(m, "pss", 0)
                    else:
                        m = p.memory_info()
                cpu = t.user + t.system
            except psutil.Error:
                continue
            key = (p.pid, p.create_time()) if hasattr(p, "create_time") else p.pid
            self.first.setdefault(key, cpu if self._task is None else 0.0)
            self.last[key] = cpu
            rss += m.rss
        self.nprocs = max(self.nprocs, len(procs))
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_pss = max(self.peak_pss, pss)

    async def _run(self) -> None:
        n = 0
        while not self._stop.is_set() and n < 1_000_000:  # bounded: stop() and a count
            n += 1
            self._sample(with_pss=(n % 4 == 0))
            try:
                await asyncio.wait_for(self._stop.wait(), self.interval)
            except asyncio.TimeoutError:
                pass

    def start(self) -> None:
        if psutil is None or not self.pid:
            return
        self._sample(with_pss=True)  # the baseline: every process's CPU so far
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> dict:
        if self._task is None:
            return {"cpu_seconds": None, "peak_rss_bytes": None, "peak_pss_bytes": None, "processes": 0}
        self._stop.set()
        await self._task
        self._sample(with_pss=True)
        cpu = sum(self.last[k] - self.first.get(k, 0.0) for k in self.last)
        return {"cpu_seconds": cpu, "peak_rss_bytes": self.peak_rss, "peak_pss_bytes": self.peak_pss,
                "processes": self.nprocs}


# --------------------------------------------------------------------------- one level

def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summarize_ms(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "mean": None, "max": None, "n": 0}
    ms = [v * 1000.0 for v in values]
    return {"p50": percentile(ms, 50), "p95": percentile(ms, 95), "p99": percentile(ms, 99),
            "mean": sum(ms) / len(ms), "max": max(ms), "n": len(ms)}


async def _drive(session, spec, body, concurrency, deadline, max_requests, results, started, turns) -> None:
    """Keep `concurrency` clients busy until `deadline`; `turns[client]` counts each client's requests
    over the whole level (warm-up included), so a persisted chat goes on where the warm-up left it."""
    async def worker(client: int):
        while time.monotonic() < deadline and started[0] < max_requests:
            started[0] += 1
            turn = turns[client]
            turns[client] += 1
            payload = json.dumps(spec.body(client, turn)).encode() if spec.varies else body
            result = await one_request(session, spec, payload)
            result.client, result.turn = client, turn
            results.append(result)

    await asyncio.gather(*(worker(client) for client in range(concurrency)))


async def run_level(spec: Spec, concurrency: int, duration: float, warmup: float, max_requests: int,
                    pid: int = 0, sample_interval: float = 0.25, helper_pids: tuple = (),
                    outcomes: list | None = None) -> dict:
    """One level. `helper_pids`: process trees of the benchmark itself (the gateways' fake upstream)
    whose CPU is not counted as background noise. `outcomes`, when given, receives every request's
    Result, the warm-up's included (to check afterwards what the server stored)."""
    body = json.dumps(spec.body()).encode()
    headers = {"Content-Type": "application/json", **spec.headers}
    spec = Spec(**{**spec.__dict__, "headers": headers})
    hard_limit = warmup + duration + spec.timeout + 30.0
    turns = [0] * concurrency
    warmup_results: list[Result] = []
    async with make_session(concurrency) as session:
        if warmup > 0:
            await asyncio.wait_for(
                _drive(session, spec, body, concurrency, time.monotonic() + warmup, max_requests, warmup_results,
                       [0], turns),
                hard_limit)
        monitor = TreeMonitor(pid, sample_interval)
        monitor.start()
        results: list[Result] = []
        client_cpu0 = time.process_time()
        busy0, steal0 = machine_cpu()
        helpers0 = sum(tree_cpu_seconds(h) for h in helper_pids)
        t0 = time.monotonic()
        try:
            await asyncio.wait_for(
                _drive(session, spec, body, concurrency, t0 + duration, max_requests, results, [0], turns),
                duration + spec.timeout + 30.0)
        except asyncio.TimeoutError:
            results.append(Result(False, error="level_hard_limit"))
        elapsed = time.monotonic() - t0
        client_cpu = time.process_time() - client_cpu0
        busy1, steal1 = machine_cpu()
        helpers = sum(tree_cpu_seconds(h) for h in helper_pids) - helpers0
        usage = await monitor.stop()
    if outcomes is not None:
        outcomes.extend(warmup_results + results)
    ok = [r for r in results if r.ok]
    errors = Counter(r.error for r in results if not r.ok)
    samples = {}
    for r in results:
        if not r.ok and r.error not in samples:
            samples[r.error] = r.detail
    cpu = usage["cpu_seconds"]
    return {
        "concurrency": concurrency,
        "duration_s": elapsed,
        "requests": len(results),
        "ok": len(ok),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "error_samples": samples,
        "warmup_errors": dict(Counter(r.error for r in warmup_results if not r.ok)),
        "rps": len(ok) / elapsed if elapsed > 0 else 0.0,
        "latency_ms": summarize_ms([r.total for r in ok]),
        "ttft_ms": summarize_ms([r.ttft for r in ok if r.ttft is not None]) if spec.stream else None,
        "cpu_ms_total": None if cpu is None else cpu * 1000.0,
        "cpu_ms_per_request": None if cpu is None or not results else cpu * 1000.0 / len(results),
        "peak_rss_mb": None if usage["peak_rss_bytes"] is None else usage["peak_rss_bytes"] / 2**20,
        "peak_pss_mb": None if not usage["peak_pss_bytes"] else usage["peak_pss_bytes"] / 2**20,
        "processes": usage["processes"],
        # The load generator's own CPU over the level as a share of one core: near 1.0
        # means the client, not the server, limited the figures.
        "client_cpu_util": client_cpu / elapsed if elapsed > 0 else None,
        # CPU used on the machine by anything but the target, this client and helper_pids, in cores:
        # other work running during the level (noise). Steal: time the hypervisor took away.
        "background_cpu_util": (max(0.0, (busy1 - busy0) - (cpu or 0.0) - client_cpu - helpers) / elapsed
                                if elapsed > 0 and busy1 else None),
        "steal_util": (steal1 - steal0) / elapsed if elapsed > 0 and busy1 else None,
    }


def fmt(v, nd=1) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def print_level(label: str, stream: bool, lv: dict, file=sys.stdout) -> None:
    lat, tt = lv["latency_ms"], lv["ttft_ms"] or {}
    line = (f"{label:<22} c={lv['concurrency']:<4} n={lv['ok']:<6} err={lv['errors']:<4} "
            f"rps={lv['rps']:8.1f}  p50={fmt(lat['p50'])} p95={fmt(lat['p95'])} p99={fmt(lat['p99'])} ms")
    if stream:
        line += f"  ttft50={fmt(tt.get('p50'))} ttft99={fmt(tt.get('p99'))} ms"
    line += (f"  cpu/req={fmt(lv['cpu_ms_per_request'], 2)} ms  rss={fmt(lv['peak_rss_mb'])} MB"
             f" ({lv['processes']} procs)  client cpu {fmt(100 * (lv['client_cpu_util'] or 0), 0)}%")
    if (lv.get("background_cpu_util") or 0) > 0.2:
        line += f"  BACKGROUND CPU {100 * lv['background_cpu_util']:.0f}%"
    if lv["error_kinds"]:
        line += f"  errors={lv['error_kinds']}"
    print(line, file=file, flush=True)


# --------------------------------------------------------------------------- CLI

def parse_levels(text: str) -> list[int]:
    levels = [int(x) for x in text.split(",") if x.strip()]
    if not levels or any(c < 1 or c > 5000 for c in levels):
        raise argparse.ArgumentTypeError("concurrency levels must be integers in 1..5000")
    return levels


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True, help="base URL of the target, e.g. http://127.0.0.1:8000")
    p.add_argument("--endpoint", choices=sorted(ENDPOINT_PATHS), default="chat")
    p.add_argument("--stream", action="store_true")
    p.add_argument("--model", default="gpt-4o-mini")
    p.add_argument("--header", action="append", default=[], metavar="NAME:VALUE")
    p.add_argument("--concurrency", type=parse_levels, default=[1, 10, 50, 200])
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per level")
    p.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each level")
    p.add_argument("--max-requests", type=int, default=50000, help="cap on requests per level")
    p.add_argument("--timeout", type=float, default=30.0, help="per-request timeout, seconds")
    p.add_argument("--pid", type=int, default=0, help="root pid of the server's process tree")
    p.add_argument("--sample-interval", type=float, default=0.25)
    p.add_argument("--expect-chunks", type=int, default=10,
                   help="the fake upstream's --chunks: the expected text follows from it")
    p.add_argument("--expect-text", default=None, help="expected content (overrides --expect-chunks)")
    p.add_argument("--no-usage", action="store_true", help="don't ask for stream_options.include_usage")
    p.add_argument("--secret", default="", help="task: the server's VERIFICATION_SECRET")
    p.add_argument("--evaluation-url", default="", help="task: the evaluation_url sent (NOTIFY_ALLOW_HOSTS must "
                   "allow it, or it must resolve to a public address)")
    p.add_argument("--label", default="")
    p.add_argument("--json-out", default="", help="write the figures here as JSON")
    args = p.parse_args(argv)
    if not (0 < args.duration <= 600 and 0 <= args.warmup <= 60 and 0 < args.timeout <= 600):
        p.error("--duration must be in (0, 600], --warmup in [0, 60], --timeout in (0, 600]")

    headers = {}
    for h in args.header:
        name, _, value = h.partition(":")
        headers[name.strip()] = value.strip()
    spec = Spec(url=args.url, endpoint=args.endpoint, stream=args.stream, model=args.model, headers=headers,
                expect=args.expect_text if args.expect_text is not None else expected_text(args.expect_chunks),
                timeout=args.timeout, include_usage=not args.no_usage, secret=args.secret,
                evaluation_url=args.evaluation_url)
    label = args.label or f"{args.endpoint}{' stream' if args.stream else ''}"

    async def run_all():
        out = []
        for c in args.concurrency:  # bounded: the list
            lv = await run_level(spec, c, args.duration, args.warmup, args.max_requests, args.pid,
                                 args.sample_interval)
            print_level(label, args.stream, lv)
            out.append(lv)
        return out

    levels = asyncio.run(run_all())
    report = {"label": label, "url": args.url, "endpoint": args.endpoint, "stream": args.stream,
              "pid": args.pid, "affinity": sorted(os.sched_getaffinity(0)), "levels": levels}
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(report, f, indent=1)
    return 0 if all(lv["errors"] == 0 for lv in levels) else 1


if __name__ == "__main__":
    sys.exit(main())
