"""Turn a results JSON from bench/bench.py into docs/performance.md and two PNG charts.

    bench/.venv-bench/bin/python bench/report.py bench/results/<timestamp>.json   # rewrites docs/
    bench/.venv-bench/bin/python bench/report.py RESULTS.json --out-dir /tmp/x     # elsewhere

Nothing in the page is typed by hand: edit this file, not docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

ORDER = ["direct", "aiserver", "aiserver-ask", "litellm", "portkey"]
LABELS = {
    "direct": "direct (fake upstream)",
    "aiserver": "aiserver /v1/chat/completions",
    "aiserver-ask": "aiserver /v1/ask",
    "litellm": "LiteLLM proxy",
    "portkey": "Portkey gateway",
}
COLORS = {"direct": "#555555", "aiserver": "#1f77b4", "aiserver-ask": "#17becf", "litellm": "#d62728",
          "portkey": "#2ca02c"}
NOT_MEASURED = "not yet measured"


def f(v, nd=1, dash="–") -> str:
    return dash if v is None else f"{v:,.{nd}f}"


def med(d) -> float | None:
    return None if not d else d.get("median")


def rng(d, nd=1) -> str:
    if not d:
        return "–"
    if d["n"] <= 1:
        return f(d["median"], nd)
    return f"{f(d['median'], nd)} ({f(d['min'], nd)} to {f(d['max'], nd)})"


def _cell_error(entry) -> str:
    if not entry["errors"]:
        return "0"
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(entry["error_kinds"].items()))
    return f"**{entry['errors']}** ({kinds})"


def names_in(res) -> list[str]:
    present = set(res["summary"]) | set(res.get("skipped", {}))
    return [n for n in ORDER if n in present]


def skipped_reason(res, name) -> str:
    why = res.get("skipped", {}).get(name, "")
    return why.splitlines()[0] if why else ""


def table_nonstream(res) -> list[str]:
    levels = res["settings"]["concurrency"]
    rows = ["| Target | Concurrency | p50 ms | p95 ms | p99 ms | Added p50 ms (range over runs) | Added p99 ms "
            "| Throughput req/s | CPU ms/request | CPU % of its core | Peak RSS MB (PSS) | Errors |",
            "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for name in names_in(res):
        data = res["summary"].get(name, {}).get("nonstream")
        if not data:
            rows.append(f"| {LABELS[name]} | – | {NOT_MEASURED} | | | | | | | | | |")
            continue
        for c in levels:
            e = data.get(str(c))
            if not e:
                continue
            lat = e["latency_ms"]
            added = e.get("added", {})
            rows.append(
                f"| {LABELS[name]} | {c} | {f(med(lat['p50']))} | {f(med(lat['p95']))} | {f(med(lat['p99']))} "
                f"| {rng(added.get('latency_ms_p50')) if name != 'direct' else '(baseline)'} "
                f"| {f(med(added.get('latency_ms_p99'))) if name != 'direct' else ''} "
                f"| {f(med(e['rps']), 0)} | {f(med(e['cpu_ms_per_request']), 2)} | {pct(e.get('cpu_util'))} "
                f"| {f(med(e['peak_rss_mb']), 0)} ({f(med(e['peak_pss_mb']), 0)}) | {_cell_error(e)} |")
    return rows


def pct(d) -> str:
    v = med(d)
    return "–" if v is None else f"{v * 100:.0f}"


def table_stream(res) -> list[str]:
    levels = res["settings"]["concurrency"]
    rows = ["| Target | Concurrency | TTFT p50 ms | TTFT p99 ms | Added TTFT p50 ms (range over runs) "
            "| Total p50 ms | Total p99 ms | Added total p50 ms | Throughput streams/s | CPU ms/stream "
            "| CPU % of its core | Peak RSS MB (PSS) | Errors |",
            "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for name in names_in(res):
        data = res["summary"].get(name, {}).get("stream")
        if not data:
            rows.append(f"| {LABELS[name]} | – | {NOT_MEASURED} | | | | | | | | | | |")
            continue
        for c in levels:
            e = data.get(str(c))
            if not e:
                continue
            lat, tt = e["latency_ms"], e.get("ttft_ms") or {}
            added = e.get("added", {})
            base = name == "direct"
            rows.append(
                f"| {LABELS[name]} | {c} | {f(med(tt.get('p50')))} | {f(med(tt.get('p99')))} "
                f"| {'(baseline)' if base else rng(added.get('ttft_ms_p50'))} "
                f"| {f(med(lat['p50']))} | {f(med(lat['p99']))} "
                f"| {'' if base else f(med(added.get('latency_ms_p50')))} "
                f"| {f(med(e['rps']), 0)} | {f(med(e['cpu_ms_per_request']), 2)} | {pct(e.get('cpu_util'))} "
                f"| {f(med(e['peak_rss_mb']), 0)} ({f(med(e['peak_pss_mb']), 0)}) | {_cell_error(e)} |")
    return rows


def table_streams(res) -> list[str]:
    s = res.get("streams")
    if not s:
        return ["The stream-capacity benchmark was not run (`--no-streams`)."]
    st = s["settings"]
    rows = [f"Each stream: {st['chunks']} chunks {f(st['gap_ms'], 0)} ms apart from the fake upstream; "
            f"measured for {f(st['hold_s'], 0)} s once every stream had sent its first chunk.", "",
            "| Target | Streams | Open during hold | Idle RSS MB | Peak RSS MB | RSS KB/stream | PSS KB/stream "
            "| CPU % of a core | CPU ms/s per stream | Chunks/s (expected) | Errors |",
            "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    labels = {"direct": "direct (fake upstream, aiohttp)", "aiserver": "aiserver, WEB_WORKERS=1",
              "litellm": "LiteLLM proxy, 1 worker", "portkey": "Portkey gateway"}
    for name in [n for n in ORDER if n in st["targets"]]:
        data = s["results"].get(name)
        if not data:
            why = (s.get("skipped", {}).get(name) or "").splitlines()[:1]
            rows.append(f"| {labels.get(name, name)} | – | {NOT_MEASURED}"
                        f"{(': ' + why[0][:120]) if why else ''} | | | | | | | | |")
            continue
        for lv in data["levels"]:
            kinds = ", ".join(f"{k} {v}" for k, v in lv["error_kinds"].items())
            err = "0" if not lv["failed"] else f"**{lv['failed']}** ({kinds})"
            rows.append(
                f"| {labels.get(name, name)} | {lv['streams']} | {lv['open']} | {f(lv['idle_rss_mb'], 0)} "
                f"| {f(lv['peak_rss_mb'], 0)} | {f(lv['rss_kb_per_stream'], 0)} | {f(lv['pss_kb_per_stream'], 0)} "
                f"| {f(lv['cpu_percent'], 1)} | {f(lv['cpu_ms_per_stream_second'], 3)} "
                f"| {f(lv['chunks_per_s'], 0)} ({f(lv['chunks_expected_per_s'], 0)}) | {err} |")
    notes = [lv for d in s["results"].values() for lv in d["levels"]
             if lv.get("env_extra", {}).get("WEB_WORKER_CONNECTIONS")]
    if notes:
        rows += ["", "aiserver's WEB_WORKER_CONNECTIONS (default 1000) was raised to streams + 100 for the levels "
                 "that need more than 1,000 connections in one worker."]
    return rows


# --------------------------------------------------------------------------- charts

def charts(res, out_dir: str, prefix: str) -> tuple[str, str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    levels = res["settings"]["concurrency"]
    modes = [m for m in ("nonstream", "stream") if m in res["settings"]["modes"]]
    names = names_in(res)
    missing = [LABELS[n] for n in names if n not in res["summary"]]
    title_note = f"  ({', '.join(missing)}: {NOT_MEASURED})" if missing else ""
    machine = res["machine"]
    foot = (f"{machine.get('nproc')} CPUs ({machine.get('cpu_model', '?')}); gateway pinned to CPU "
            f"{res['settings']['server_cpus'] or 'any'}, load generator to {res['settings']['client_cpus'] or 'any'}; "
            f"fake upstream {res['settings']['fake']['latency_ms']:.0f} ms; median of {res['settings']['runs']} "
            f"run(s), bars show the range")

    def series(stat_at):
        """(levels, medians, lower errors, upper errors) of a {median, min, max} stat per concurrency."""
        points = [(c, stat_at(c)) for c in levels]
        points = [(c, st) for c, st in points if st]
        return ([c for c, _ in points], [st["median"] for _, st in points],
                [st["median"] - st["min"] for _, st in points], [st["max"] - st["median"] for _, st in points])

    def finish(ax, ylabel, title):
        ax.set_xscale("log")
        ax.set_xticks(levels)
        ax.set_xticklabels([str(c) for c in levels])
        ax.set_xlabel("concurrent requests")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)

    def save(fig, title, name):
        fig.suptitle(title + title_note, fontsize=11)
        fig.text(0.5, 0.01, foot, ha="center", fontsize=7, color="#444")
        fig.tight_layout(rect=(0, 0.04, 1, 0.95))
        path = os.path.join(out_dir, f"{prefix}{name}")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path

    # Added latency vs concurrency.
    fig, axes = plt.subplots(1, len(modes), figsize=(6.2 * len(modes), 4.6), squeeze=False)
    for ax, mode in zip(axes[0], modes):
        metric = "latency_ms_p50" if mode == "nonstream" else "ttft_ms_p50"
        ax.axhline(0, color=COLORS["direct"], lw=1, ls="--", label=LABELS["direct"] + " (0 by definition)")
        for name in names:
            if name == "direct" or name not in res["summary"] or mode not in res["summary"][name]:
                continue
            data = res["summary"][name][mode]
            xs, ys, lo, hi = series(lambda c: (data.get(str(c)) or {}).get("added", {}).get(metric))
            if xs:
                ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, color=COLORS[name], label=LABELS[name])
        ax.set_yscale("symlog", linthresh=10)
        lows = [min(line.get_ydata()) for line in ax.get_lines() if len(line.get_ydata())]
        ax.set_ylim(bottom=min(-2.0, 1.5 * min(lows)) if lows else -2.0)
        finish(ax, "added p50 latency, ms" if mode == "nonstream" else "added p50 time to first token, ms",
               "Non-streaming: added p50 latency" if mode == "nonstream" else "Streaming: added p50 TTFT")
    overhead = save(fig, "Latency added over calling the upstream directly", "perf-overhead.png")

    # Throughput vs concurrency.
    fig, axes = plt.subplots(1, len(modes), figsize=(6.2 * len(modes), 4.6), squeeze=False)
    for ax, mode in zip(axes[0], modes):
        for name in names:
            if name not in res["summary"] or mode not in res["summary"][name]:
                continue
            data = res["summary"][name][mode]
            xs, ys, lo, hi = series(lambda c: (data.get(str(c)) or {}).get("rps"))
            if xs:
                ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, color=COLORS[name], label=LABELS[name],
                            ls="--" if name == "direct" else "-")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda y, _: f"{y:g}"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        finish(ax, "valid responses per second" if mode == "nonstream" else "complete streams per second",
               "Non-streaming throughput" if mode == "nonstream" else "Streaming throughput")
    throughput = save(fig, "Throughput against a fake upstream", "perf-throughput.png")
    return overhead, throughput


# --------------------------------------------------------------------------- the page

def headline(res) -> list[str]:
    """A few sentences computed from the tables."""
    out = []
    levels = res["settings"]["concurrency"]
    for mode, metric, what in (("nonstream", "latency_ms_p50", "p50 latency"),
                               ("stream", "ttft_ms_p50", "p50 time to first token")):
        parts = []
        for name in names_in(res):
            if name == "direct":
                continue
            data = res["summary"].get(name, {}).get(mode)
            if not data:
                parts.append(f"{LABELS[name]}: {NOT_MEASURED}")
                continue
            vals = []
            for c in levels:
                a = (data.get(str(c)) or {}).get("added", {}).get(metric)
                if a:
                    vals.append(f"{f(a['median'])} ms at {c}")
            parts.append(f"{LABELS[name]}: " + ", ".join(vals))
        if parts:
            out.append(f"- Added {what} ({'non-streaming' if mode == 'nonstream' else 'streaming'}), by concurrency: "
                       + "; ".join(parts) + ".")
    parts = []
    for name in names_in(res):
        data = res["summary"].get(name, {}).get("nonstream")
        if not data:
            continue
        best = max((e["rps"]["median"], c) for c, e in data.items() if e.get("rps"))
        cpu = [med(e["cpu_ms_per_request"]) for e in data.values() if med(e["cpu_ms_per_request"]) is not None]
        parts.append(f"{LABELS[name]} {f(best[0], 0)} req/s (at {best[1]}), {f(min(cpu), 2)} to {f(max(cpu), 2)} "
                     f"CPU ms per request")
    if parts:
        out.append("- Best non-streaming throughput on one pinned CPU, and CPU per request: " + "; ".join(parts) + ".")
    return out


def _value(res, name, mode, level, *path):
    node = (res["summary"].get(name, {}).get(mode) or {}).get(str(level)) or {}
    for key in path:
        node = (node or {}).get(key) or {}
    return node if isinstance(node, (int, float)) else None


def run_ratios(res, figure: str, mode: str, level: int = 50) -> list[float]:
    """aiserver's `figure` at `level` over Portkey's, one ratio per run: the two were loaded moments apart,
    so a slower moment of the machine (another VM's load shows as steal time) moves both."""
    by_run: dict[int, dict[str, float]] = {}
    for entry in res.get("raw") or []:
        value = (entry.get("level") or {}).get(figure)
        if entry["mode"] == mode and entry["concurrency"] == level and isinstance(value, (int, float)):
            by_run.setdefault(entry["run"], {})[entry["target"]] = value
    return sorted(run["aiserver"] / run["portkey"] for run in by_run.values()
                  if run.get("aiserver") is not None and run.get("portkey"))


def ratio(res, figure: str, mode: str, level: int = 50) -> float | None:
    """The median of the runs' ratios (`run_ratios`); without the raw runs, the ratio of the medians."""
    ratios = run_ratios(res, figure, mode, level)
    if ratios:
        return ratios[len(ratios) // 2] if len(ratios) % 2 else (ratios[len(ratios) // 2 - 1] + ratios[len(ratios) // 2]) / 2
    ours, theirs = _value(res, "aiserver", mode, level, figure, "median"), _value(res, "portkey", mode, level, figure, "median")
    return ours / theirs if ours is not None and theirs else None


def ratio_spread(res, figure: str, mode: str, level: int = 50) -> str:
    """" (each run: 2.04×, 2.83×, 4.09×)" when there were several runs, else nothing."""
    ratios = run_ratios(res, figure, mode, level)
    return f" (each run: {', '.join(f'{r:.2f}×' for r in ratios)})" if len(ratios) > 1 else ""


def targets(res) -> list[str]:
    """The issue's targets against this run's aiserver figures (/v1/chat/completions), met or not."""
    startup_path = os.path.join(ROOT, "bench", "results", "startup.json")
    startup = None
    if os.path.exists(startup_path):
        with open(startup_path) as fh:
            times = sorted(json.load(fh)["startup_s"])
            startup = times[len(times) // 2]
    streams = {lvl["streams"]: lvl for lvl in ((res.get("streams") or {}).get("results", {})
                                               .get("aiserver", {}).get("levels", []))}
    portkey_rps = _value(res, "portkey", "nonstream", 50, "rps", "median")
    portkey_stream_rps = _value(res, "portkey", "stream", 50, "rps", "median")
    rows = [
        ("Added p50, non-streaming, C=1", "≤ 1.5 ms",
         _value(res, "aiserver", "nonstream", 1, "added", "latency_ms_p50", "median"), lambda v: v <= 1.5, "ms"),
        ("Added TTFT p50, streaming, C=1", "≤ 1.5 ms",
         _value(res, "aiserver", "stream", 1, "added", "ttft_ms_p50", "median"), lambda v: v <= 1.5, "ms"),
        ("CPU per request, non-streaming (C=50), × Portkey's", "≤ 1.0 ×",
         ratio(res, "cpu_ms_per_request", "nonstream"), lambda v: v <= 1.0, "×"),
        ("CPU per 10-chunk stream (C=50), × Portkey's", "≤ 1.0 ×",
         ratio(res, "cpu_ms_per_request", "stream"), lambda v: v <= 1.0, "×"),
        ("Throughput at C=50, non-streaming", f"≥ Portkey ({f(portkey_rps, 0)} req/s)",
         _value(res, "aiserver", "nonstream", 50, "rps", "median"),
         lambda v: portkey_rps is not None and v >= portkey_rps, "req/s"),
        ("Throughput at C=50, streaming", f"≥ Portkey ({f(portkey_stream_rps, 0)} streams/s)",
         _value(res, "aiserver", "stream", 50, "rps", "median"),
         lambda v: portkey_stream_rps is not None and v >= portkey_stream_rps, "streams/s"),
        ("Added p50 at C=50, non-streaming", "≤ 10 ms",
         _value(res, "aiserver", "nonstream", 50, "added", "latency_ms_p50", "median"), lambda v: v <= 10, "ms"),
        ("Memory per open stream, 1,000 streams, one worker", "< 50 KB",
         (streams.get(1000) or {}).get("rss_kb_per_stream"), lambda v: v < 50, "KB"),
        ("Start-up to the first answered request", "< 1 s", startup, lambda v: v < 1, "s"),  # issue 23
    ]
    lines = ["| Target | Wanted | Measured | Met |", "|---|---|--:|---|"]
    for label, wanted, value, ok, unit in rows:
        measured = f"{f(value, 2 if unit in ('ms', 's', '×') else 0)} {unit}" if value is not None else NOT_MEASURED
        if value is not None and "× Portkey's" in label:
            measured += ratio_spread(res, "cpu_ms_per_request", "stream" if "10-chunk stream" in label else "nonstream")
        met = "–" if value is None else ("yes" if ok(value) else "**no**")
        lines.append(f"| {label} | {wanted} | {measured} | {met} |")
    return lines


WHERE_THE_TIME_GOES = """\
Where a request's CPU goes: see the profiles in the hand-written sections above ("Fifth cut" is the
latest, of one gevent worker at 50 concurrent with a key, sampled by CPU from a thread of its own:
`bench/profile_gunicorn.conf.py`, `bench/profile_layers.py`). In short, for a non-streaming chat
completion: the upstream call (the openai SDK's client, httpx2, httpcore2's pool and h11) 30%; Flask
and Werkzeug 17%; this server's own request code (front doors, gateway, registry, call log) 13%;
Gunicorn 12%; the access line (console and two files) 8%; the key 6%; marshmallow 5%; metrics, rate
limits, upstream health, usage rows and gevent's hub 1-2% each. A stream spends more in Gunicorn (15%)
and 5% in the SSE pump. No one function takes more than about 5%: what is left is the interpreter
running some 4,600 Python calls a request through these layers (the system calls, about 47 a request,
are a few per cent). py-spy cannot attach on this machine (it cannot read the target's memory).

Memory per open stream: `tracemalloc` in a gevent server holding 200 slow streams counts about
17 KB of Python objects a stream (the suspended generator frames of httpx2/httpcore2's read path
and of the SSE pump, the upstream response and its h11 parser, the queue between the two
greenlets). Each stream has two greenlets (the request's, and the pump's that reads upstream so
heartbeats can be sent during silence), and a suspended greenlet keeps a copy of its C stack: 5.3 KB
for the request's and 8.0 KB for the pump's (greenlet's `_stack_saved`, 200 streams held, one
worker). The rest of the ~80 KB of RSS a stream is outside what either counts: the allocator's arenas
and fragmentation as a thousand streams' objects come and go, which no one part of a stream owns.
Dropping the pump greenlet would save its 8 KB and lose the heartbeat; it was kept.
"""


def client_limit_notes(res) -> list[str]:
    notes = []
    for name, modes in res["summary"].items():
        for mode, data in modes.items():
            for c, e in data.items():
                u = med(e.get("client_cpu_util"))
                if u is not None and u > 0.85:
                    notes.append(f"{LABELS.get(name, name)} {mode} at {c}: load generator at {u * 100:.0f}% of its CPU")
    return notes


def noise_lines(res) -> list[str]:
    vals, steal, busy = [], [], []
    for r in res.get("raw", []):
        lv = r["level"]
        b = lv.get("background_cpu_util")
        if b is None:
            continue
        vals.append(b)
        if lv.get("steal_util") is not None:
            steal.append(lv["steal_util"])
        if b > 0.2:
            busy.append(f"run {r['run']} {LABELS.get(r['target'], r['target'])} {r['mode']} at {r['concurrency']} "
                        f"({b * 100:.0f}%)")
    if not vals:
        return []
    vals.sort()
    out = [f"- Other work on the machine while the figures were taken (CPU used by anything but the target, the load "
           f"generator and the fake upstream): median {vals[len(vals) // 2] * 100:.0f}% of a core, "
           f"max {vals[-1] * 100:.0f}%"
           + (f"; hypervisor steal at most {max(steal) * 100:.0f}%" if steal else "") + "."]
    if busy:
        out.append(f"  Levels with more than 20% of a core of other work ({len(busy)} of {len(vals)}): "
                   + "; ".join(busy[:12]) + ("; ..." if len(busy) > 12 else "")
                   + ". Their figures are noisier; the ranges over runs show how much.")
    return out


def upstream_check(res) -> str:
    """Did every valid gateway answer come from the upstream (no cache, no canned reply)?"""
    levels = [r for r in res.get("raw", []) if r["target"] != "direct" and "upstream_requests" in r["level"]]
    if not levels:
        return ""
    short = [r for r in levels if r["level"]["upstream_requests"] < r["level"]["ok"]]
    text = (f"For each of the {len(levels)} gateway levels the harness compared the fake upstream's request count "
            "(warm-up included) with the valid answers: ")
    if not short:
        return text + "the upstream always saw at least as many requests, so no answer was cached."
    return text + f"**{len(short)} levels had fewer upstream requests than answers** (" + "; ".join(
        f"{LABELS.get(r['target'], r['target'])} {r['mode']} at {r['concurrency']}" for r in short[:6]) + ")."


def _rel(text: str, res) -> str:
    """Commands as run, with this checkout's absolute paths made relative."""
    text = text or ""
    work = res.get("work_dir")
    if work:
        text = text.replace(work, "<scratch>")
    return text.replace(ROOT + "/", "")


KEPT_START, KEPT_END = "<!-- kept: start -->", "<!-- kept: end -->"


def kept_block(md_path: str) -> list[str]:
    """The hand-written block of the page now (between the `kept` markers, markers included, then a blank
    line), carried over when the page is generated again: the write-ups of earlier cuts; none if absent."""
    try:
        with open(md_path) as fh:
            text = fh.read()
    except OSError:
        return []
    start, end = text.find(KEPT_START), text.find(KEPT_END)
    if start < 0 or end < start:
        return []
    return [text[start:end + len(KEPT_END)], ""]


def generate(results_path: str, out_dir: str, md_name: str = "performance.md", png_prefix: str = "") -> str:
    with open(results_path) as fh:
        res = json.load(fh)
    os.makedirs(out_dir, exist_ok=True)
    overhead, throughput = charts(res, out_dir, png_prefix)
    st = res["settings"]
    m = res["machine"]
    v = res["versions"]
    rel_results = os.path.relpath(results_path, ROOT)
    skipped = res.get("skipped", {})
    lines = [
        "# Performance",
        "",
        "What aiserver costs in latency, CPU and memory in front of an LLM provider, next to "
        "[LiteLLM's proxy](https://github.com/BerriAI/litellm) and "
        "[Portkey's gateway](https://github.com/Portkey-AI/gateway), "
        "all pointed at the same fast fake OpenAI-compatible upstream on the same machine. "
        "A benchmark prints figures; nothing here is a pass/fail test.",
        "",
        "Reproduce with `make bench` (which runs `bash bench/run.sh`; about 15 minutes), or "
        "`bash bench/run.sh --quick` for a smoke run of about two minutes that leaves this page alone.",
        "",
        f"> Generated by `bench/report.py` from `{rel_results}` (kept locally, not committed; "
        f"run started {res['started']}, "
        f"took {res['elapsed_s'] / 60:.1f} min{'; QUICK smoke run' if res.get('quick') else ''}). "
        "Edit `bench/report.py`, not this page, except between the `kept` markers.",
        "",
        *kept_block(os.path.join(out_dir, md_name)),
    ]
    bg = sorted(r["level"]["background_cpu_util"] for r in res.get("raw", [])
                if r["level"].get("background_cpu_util") is not None)
    if bg and bg[len(bg) // 2] > 0.2:
        lines += [f"> **Noisy machine:** other work used a median {bg[len(bg) // 2] * 100:.0f}% of a core while these "
                  "figures were taken (see *How it was measured*). Latency and throughput suffer most; CPU per request "
                  "and memory less. Re-run `make bench` on an idle machine for cleaner figures.", ""]
    if res.get("truncated"):
        lines += ["> **The run hit `--max-minutes` and is incomplete.**", ""]
    for name in names_in(res):
        if name in skipped:
            lines += [f"> **{LABELS[name]}: {NOT_MEASURED}.** The harness could not start it: "
                      f"{skipped_reason(res, name)}", ""]
    src = res.get("aiserver_source") or {}
    if "aiserver" in res["summary"] or "aiserver-ask" in res["summary"]:
        state = (f"commit {src['commit']}" if src.get("commit") else "a checkout with no commit yet")
        if src.get("uncommitted_changes"):
            state += f" plus {src['uncommitted_changes']} uncommitted changed files (work in progress)"
        lines += [f"> aiserver as measured: {state}, on {src.get('measured_at', res['started'])}.", ""]
    lines += ["## Summary", ""] + headline(res) + [""]
    if "aiserver" in res["summary"]:
        lines += ["## Targets", "", "The issue's targets for aiserver, against this run's figures "
                  "(`/v1/chat/completions`). Where one is missed, the profile below shows where the time goes.", ""]
        lines += targets(res) + ["", WHERE_THE_TIME_GOES]
    lines += [
        f"![Added latency against the direct path]({os.path.basename(overhead)})",
        "",
        f"![Throughput]({os.path.basename(throughput)})",
        "",
        "## Non-streaming: `POST /v1/chat/completions`",
        "",
        "Latency is the whole request, from sending to the last byte of a validated answer. "
        "*Added* is the target's figure minus the direct path's, taken at the same concurrency moments before in the "
        "same run; the median over runs, with the range in parentheses. Other columns are medians over runs. "
        "CPU and memory are the target's whole process tree. *CPU % of its core*: the target's CPU over the "
        "measured seconds; well under 100 while latency climbs means it waited on something other than its CPU "
        "(or another process took the core: see the note on other work below).",
        "",
    ] + table_nonstream(res) + [
        "",
        "## Streaming: `\"stream\": true`",
        "",
        "TTFT is the time to the first non-empty content delta; *total* is to `data: [DONE]`. "
        f"The fake upstream sends {st['fake']['chunks']} content chunks {st['fake']['gap_ms']:g} ms apart after "
        f"{st['fake']['latency_ms']:g} ms.",
        "",
    ] + table_stream(res) + [
        "",
        "## Stream capacity: slow streams held open",
        "",
        "Many concurrent streams that each send one chunk a second, as a slow model does: what each open stream "
        "costs the server in memory (RSS over idle, divided by the open streams; PSS alongside, which does not count "
        "pages shared between processes twice) and in CPU. aiserver runs ONE gevent worker (`WEB_WORKERS=1`).",
        "",
    ] + table_streams(res) + [""]
    lines += [
        "## How it was measured",
        "",
        f"- Machine: {m.get('nproc')} CPUs (`nproc`), {m.get('cpu_model', '?')} (`lscpu`), "
        f"{m.get('memory_gib')} GiB memory, {m.get('os', '?')}, kernel {m.get('kernel', '?')}. A virtual machine: "
        "absolute figures are for comparing the targets here, not for sizing elsewhere.",
        "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val) + ".",
        "- Fake upstream (`bench/fake_upstream.py`, aiohttp, one process): "
        f"answers after {st['fake']['latency_ms']:g} ms; "
        f"streams {st['fake']['chunks']} chunks {st['fake']['gap_ms']:g} ms apart, a usage chunk when "
        "`stream_options.include_usage` is set (the load generator sets it), then `data: [DONE]`. "
        "The gateways share one "
        "fake; the direct target is a second, identical fake process placed where the gateways run.",
        "- CPUs: every server under test (the direct fake, aiserver, LiteLLM, Portkey) is pinned with `taskset` to "
        f"CPU {st['server_cpus'] or 'any'}; the load generator and the gateways' fake upstream to CPU "
        f"{st['client_cpus'] or 'any'}. "
        "So each target gets one whole core, whatever its number of processes, and does not compete with the client.",
        f"- Load (`bench/loadgen.py`, aiohttp client, keep-alive): closed loop, N requests always in flight, at "
        f"concurrency {', '.join(map(str, st['concurrency']))}; each level {st['warmup_s']:g} s of unmeasured "
        f"warm-up, then {st['duration_s']:g} s measured (at most {st['max_requests']:,} requests, "
        f"{st['timeout_s']:g} s timeout each). "
        f"{st['runs']} run(s); within a run, for each mode and concurrency, every target is loaded in turn, so the "
        "direct figures and each gateway's are taken back to back.",
        "- Every response is checked: HTTP 200, the exact expected content (all the chunks' text, concatenated), and "
        "`data: [DONE]` for streams. Anything else is an error and is not a latency sample. " + upstream_check(res),
        "- CPU: utime + stime of every process in the target's tree (`/proc/<pid>/stat` via psutil), before and after "
        "the measured seconds, divided by the requests. The kernel counts in 10 ms ticks, so at concurrency 1 "
        "(a few dozen requests) the figure is coarse and includes the server's idle work.",
        "- Memory: the summed RSS of the tree, sampled every 0.25 s, peak; PSS (sampled every second) counts pages "
        "shared between a preforking server's processes once.",
    ] + noise_lines(res) + [
        "",
        "Commands, as run:",
        "",
        "```sh",
        "make bench                        # = bash bench/run.sh",
        "bash bench/run.sh                 # install, then: bench/.venv-bench/bin/python bench/bench.py",
        "bash bench/run.sh --quick         # smoke run; results under bench/results/ only",
        f"# fake upstream: {_rel(res['upstream'].get('command'), res)}",
    ]
    for name, t in res["targets"].items():
        if name == "aiserver-ask":
            continue
        lines.append(f"# {name}: {_rel(t['info'].get('command'), res)}")
        if name == "aiserver":
            env = t["info"].get("env", {})
            lines.append("#   env: " + _rel(" ".join(f"{k}={val}" for k, val in sorted(env.items())), res))
            lines.append("#   before it: .venv/bin/flask --app app.wsgi db-upgrade (same env)")
        if name == "litellm":
            lines.append("#   env: LITELLM_MASTER_KEY=sk-bench LITELLM_LOCAL_MODEL_COST_MAP=True; config:")
            lines += ["#     " + _rel(ln, res) for ln in t["info"].get("config", "").splitlines()]
        if name == "portkey":
            lines.append("#   request headers: " + ", ".join(f"{k}: {val}" for k, val in t["headers"].items()))
    lines += [
        "# a target by hand, e.g.:",
        "bench/.venv-bench/bin/python bench/loadgen.py --url http://127.0.0.1:PORT --stream --concurrency 1,10,50,200 "
        "--duration 5 --pid SERVER_PID",
        "```",
        "",
    ]
    notes = client_limit_notes(res)
    if notes:
        lines += ["Where the load generator itself was near the limit of its CPU (so those figures show the harness's "
                  "ceiling, not the target's): " + "; ".join(notes) + ".", ""]
    lines += [
        "## Installing the other gateways",
        "",
        f"- LiteLLM: `litellm[proxy]` {v.get('litellm', '')} in its own venv, `bench/.venv-litellm`, pinned in "
        "`bench/requirements-litellm.txt` (its dependencies pinned in `bench/constraints-litellm.txt`). Started with "
        "`LITELLM_LOCAL_MODEL_COST_MAP=True`, so it uses its bundled model cost map: without it, it tries to fetch the "
        "map from GitHub at start-up (three attempts, then the bundled copy), and a `LITELLM_MASTER_KEY`, which "
        "requests then carry as their bearer token. Run with one worker (`--num_workers 1`), its defaults "
        "otherwise (uvicorn's access log on).",
        f"- Portkey: `@portkey-ai/gateway` {v.get('portkey_gateway', '')} from npm under `bench/portkey/`, with npm "
        f"`overrides` pinning `hono` to {v.get('hono', '4.9.7')} and `@hono/node-server` to "
        f"{v.get('hono_node_server', '1.13.5')}. Its own ranges (`hono ^4.9.7`, `@hono/node-server ^1.3.3`) resolve "
        "to newer releases (hono 4.13.19 and @hono/node-server 1.19.19 when this was written), with which every "
        "streaming request fails with HTTP 500 (`TypeError: immutable` in its log) while non-streaming ones work. "
        "npm 11 does not run its `postinstall` (`patch-package`), which has nothing to patch in the published "
        "package. Started as `node build/start-server.js --port=N --headless`; routed to the fake with "
        "`x-portkey-provider: openai` and `x-portkey-custom-host`.",
        "",
    ]
    md_path = os.path.join(out_dir, md_name)
    with open(md_path, "w") as fh:
        fh.write("\n".join(lines))
    return md_path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results")
    p.add_argument("--out-dir", default=os.path.join(ROOT, "docs"))
    args = p.parse_args(argv)
    print(generate(args.results, args.out_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
