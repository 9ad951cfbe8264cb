"""What storing a streamed chat answer in steps costs (`app.conversations.service.AnswerSteps`).

Two figures: the work each chunk of a `/chat` stream now does (appending and counting, against the
plain append it replaced), and one step, the UPDATE of the answer's row with its text so far, on
SQLite (a file, WAL) and on PostgreSQL. Prints a Markdown table; nothing is pass/fail.

    .venv/bin/python bench/chat_steps.py [--postgres postgresql://postgres@127.0.0.1:5432/test]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.conversations.models import Conversation, Message
from app.conversations.service import LOST_ANSWER, AnswerSteps
from app.core.clock import utcnow
from app.core.db import database, migrate, open_database

CHUNKS = 1_000_000


def per_chunk_ns(chunk: str = "word ") -> tuple[float, float]:
    """Nanoseconds per chunk of the stream loop's text branch: before (append) and now (`add`)."""
    events = [chunk] * CHUNKS
    pieces: list[str] = []
    started = time.perf_counter()
    for event in events:
        if isinstance(event, str):
            pieces.append(event)
    before = (time.perf_counter() - started) / CHUNKS * 1e9
    steps = AnswerSteps(1, 0, 1000)  # no writer: only the per-chunk work
    started = time.perf_counter()
    for event in events:
        if isinstance(event, str):
            steps.add(event)
    now = (time.perf_counter() - started) / CHUNKS * 1e9
    return before, now


def step_ms(url: str, chars: int, runs: int = 200) -> tuple[float, float]:
    """Median and p95 milliseconds of one step (the row's UPDATE) with `chars` characters of text."""
    database.initialize(open_database(url))
    migrate(database.obj)
    with database.connection_context():
        key = f"bench-{time.time_ns()}"
        Conversation.create(id=key, chat_id=key, created_at=utcnow(), last_updated=utcnow())
        answer = Message.insert(conversation=key, role="assistant", content="", status="error", error=LOST_ANSWER,
                                created_at=utcnow()).execute()
    steps = AnswerSteps(answer, 0, 1000)
    times = []
    for _ in range(runs):
        steps.add("x" * (chars // runs))
        started = time.perf_counter()
        steps._write()
        times.append((time.perf_counter() - started) * 1000)
    with database.connection_context():
        Message.delete().where(Message.conversation == key).execute()
        Conversation.delete().where(Conversation.id == key).execute()
    database.obj.close_all()
    return statistics.median(times), sorted(times)[int(runs * 0.95)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postgres", default="", help="also measure a step on this PostgreSQL database")
    args = parser.parse_args()
    before, now = per_chunk_ns()
    print(f"| per chunk (text branch of stream_reply) | {before:.0f} ns before | {now:.0f} ns now | "
          f"+{now - before:.0f} ns |")
    engines = [("SQLite (file, WAL)", f"sqlite:///{tempfile.mkdtemp()}/steps.db")]
    if args.postgres:
        engines.append(("PostgreSQL", args.postgres))
    for name, url in engines:
        for chars in (2_000, 20_000):
            median, p95 = step_ms(url, chars)
            print(f"| one step, {name}, text growing to {chars:,} chars | {median:.2f} ms median "
                  f"| {p95:.2f} ms p95 | |")


if __name__ == "__main__":
    main()
