"""Chat history at scale: fill a database with 1,000,000 messages in 100,000 chats, then time
`GET /chat/history` pages and `GET /chat/history/{id}` through a running server.

    .venv/bin/python bench/history_bench.py                       # SQLite, then PostgreSQL
    .venv/bin/python bench/history_bench.py --engine sqlite --chats 10000 --per-chat 10
    .venv/bin/python bench/history_bench.py --engine postgresql --reuse   # keep an already filled database

For each engine it makes a fresh database (SQLite under --workdir, or the PostgreSQL database
`aiserver_history_bench` next to --postgres-url), applies the migrations, bulk-loads the rows
(SQLite executemany, PostgreSQL COPY), starts `gunicorn -k gevent` on it (one worker, an ephemeral
loopback port) and times each request from a keep-alive client, sequentially:

  * list, first page      `GET /chat/history` (limit 50)
  * list, deep pages      `GET /chat/history?cursor=...` at random positions in the 100,000 chats
  * list, walk            following next_cursor from the first page on
  * one chat              `GET /chat/history/{id}` of random chats (10 messages each)

It prints median, p95 and p99 in milliseconds (client-side: HTTP included). It is a script, never a
test: the figures depend on the machine. docs/conversations.md has the last run's.
"""
from __future__ import annotations

import argparse
import io
import os
import random
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.conversations.service import encode_cursor  # noqa: E402
from app.core.db import migrate, open_database  # noqa: E402

BENCH_DB = "aiserver_history_bench"
WORDS = ("the answer depends on what you measure and how often you measure it while the system is under load "
         "a star planet orbit moon light year galaxy comet database index query page cursor latency").split()
SYSTEM = "You are a helpful, knowledgeable assistant. Answer clearly and accurately."


def text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def timestamp(moment: datetime) -> str:
    """The text peewee stores for a datetime on SQLite (and PostgreSQL accepts)."""
    return moment.isoformat(" ", timespec="microseconds")


def generate(chats: int, per_chat: int, seed: int = 7):
    """(conversation rows, message rows generator); chats spread over the last 200 days."""
    rng = random.Random(seed)
    start = datetime(2025, 1, 1)
    conversations = []
    for n in range(chats):
        created = start + timedelta(seconds=rng.uniform(0, 200 * 86400), microseconds=rng.randint(1, 999_999))
        last = created + timedelta(seconds=per_chat * 20, microseconds=rng.randint(1, 999_999))
        chat_id = f"chat-{n:07d}" if n % 2 else f"{rng.getrandbits(128):032x}"
        conversations.append((chat_id, "Bench chat " + text(rng, 5), timestamp(created), timestamp(last), per_chat))

    def messages():
        for chat_id, _title, created, _last, _count in conversations:
            moment = datetime.fromisoformat(created)
            yield (chat_id, "system", SYSTEM, "complete", None, None, timestamp(moment), None, None)
            for i in range(1, per_chat):
                moment += timedelta(seconds=20)
                if i % 2:
                    yield (chat_id, "user", text(rng, rng.randint(5, 30)), "complete", None, None,
                           timestamp(moment), None, None)
                else:
                    yield (chat_id, "assistant", text(rng, rng.randint(20, 80)), "complete", "openai",
                           "gpt-4o-mini", timestamp(moment), 120, 60)

    return conversations, messages


MESSAGE_COLUMNS = ("conversation_id", "role", "content", "status", "provider", "model", "created_at",
                   "prompt_tokens", "completion_tokens")


def fill_sqlite(path: Path, conversations, messages) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=wal")
    db.execute("PRAGMA synchronous=off")
    with db:
        db.executemany("INSERT INTO conversation (id, title, created_at, last_updated, message_count) "
                       "VALUES (?, ?, ?, ?, ?)", conversations)
        columns = ", ".join(MESSAGE_COLUMNS)
        db.executemany(f"INSERT INTO conversation_message ({columns}) VALUES ({', '.join('?' * 9)})", messages())
    db.close()


def fill_postgres(url: str, conversations, messages) -> None:
    import psycopg2

    def copy(cursor, table: str, columns: tuple[str, ...], rows) -> None:
        buffer = io.StringIO()
        for row in rows:
            buffer.write("\t".join("\\N" if v is None else str(v) for v in row) + "\n")
        buffer.seek(0)
        cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", buffer)

    connection = psycopg2.connect(url)
    with connection, connection.cursor() as cursor:
        copy(cursor, "conversation", ("id", "title", "created_at", "last_updated", "message_count"), conversations)
        copy(cursor, "conversation_message", MESSAGE_COLUMNS, messages())
    connection.autocommit = True
    connection.cursor().execute("VACUUM ANALYZE")
    connection.close()


def fresh_postgres(admin_url: str, reuse: bool) -> tuple[str, bool]:
    """The bench database's URL, and whether it still has to be filled."""
    import psycopg2

    admin = psycopg2.connect(admin_url)
    admin.autocommit = True
    cursor = admin.cursor()
    cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (BENCH_DB,))
    exists = cursor.fetchone() is not None
    if exists and not reuse:
        cursor.execute(f'DROP DATABASE "{BENCH_DB}" WITH (FORCE)')
    if not exists or not reuse:
        cursor.execute(f'CREATE DATABASE "{BENCH_DB}"')
    admin.close()
    return admin_url.rsplit("/", 1)[0] + "/" + BENCH_DB, not (exists and reuse)


class Server:
    """`gunicorn -k gevent` (gunicorn.conf.py) on an ephemeral port, one worker."""

    def __init__(self, database_url: str, workdir: Path):
        env = dict(os.environ, DATABASE_URL=database_url, HOST="127.0.0.1", PORT="0", WEB_WORKERS="1",
                   LOG_DIR=str(workdir / "logs"), LOG_LEVEL="INFO", DOTENV_PATH=os.devnull,
                   SYSTEM_PROMPT_FILE=str(workdir / "system_prompt.txt"))
        self.log_path = workdir / "gunicorn.out"
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen([str(Path(sys.executable).parent / "gunicorn"), "--config",
                                         "gunicorn.conf.py", "app.wsgi:app"], cwd=ROOT, env=env, stdout=self.log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        self.url = self._wait(60)

    def _wait(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            match = re.search(r"Listening at: (http://[\d.]+:\d+)", self.log_path.read_text())
            if match:
                try:
                    if requests.get(match.group(1) + "/ping", timeout=1).ok:
                        return match.group(1)
                except requests.RequestException:
                    pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("gunicorn did not start:\n" + self.log_path.read_text()[-2000:])

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        self.log.close()


def timed(session: requests.Session, url: str) -> tuple[float, dict]:
    started = time.perf_counter()
    response = session.get(url, timeout=10)
    elapsed = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    return elapsed, response.json()


def summary(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return (f"  {name:<34} n={len(samples):<5} median {statistics.median(samples):6.2f} ms   "
            f"p95 {pick(0.95):6.2f} ms   p99 {pick(0.99):6.2f} ms")


def measure(url: str, conversations, rounds: int, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    session = requests.Session()
    for _ in range(20):  # warm the connection pool and the caches a little
        timed(session, f"{url}/chat/history")
    first = [timed(session, f"{url}/chat/history")[0] for _ in range(rounds)]
    assert len(timed(session, f"{url}/chat/history")[1]["chats"]) == 50

    deep = []
    for _ in range(rounds):
        _id, _title, _created, last, _count = rng.choice(conversations)
        cursor = encode_cursor(datetime.fromisoformat(last), _id)
        elapsed, body = timed(session, f"{url}/chat/history?cursor={cursor}")
        deep.append(elapsed)

    walk, cursor = [], None
    for _ in range(rounds):
        elapsed, body = timed(session, f"{url}/chat/history" + (f"?cursor={cursor}" if cursor else ""))
        walk.append(elapsed)
        cursor = body["next_cursor"]
        if not cursor:
            break

    one = []
    for _ in range(rounds):
        chat_id = rng.choice(conversations)[0]
        elapsed, body = timed(session, f"{url}/chat/history/{chat_id}")
        assert body["history"]["messages"][0]["role"] == "system"
        one.append(elapsed)
    session.close()
    return [summary("list, first page (50)", first), summary("list, random deep page", deep),
            summary("list, walking next_cursor", walk), summary("one chat (GET /chat/history/{id})", one)]


def run(engine: str, args: argparse.Namespace, workdir: Path) -> None:
    conversations, messages = generate(args.chats, args.per_chat)
    total = args.chats * args.per_chat
    fill = True
    if engine == "sqlite":
        path = workdir / "history.db"
        if path.exists() and not args.reuse:
            for suffix in ("", "-wal", "-shm"):
                Path(str(path) + suffix).unlink(missing_ok=True)
        fill = not path.exists()
        url = f"sqlite:///{path}"
    else:
        url, fill = fresh_postgres(args.postgres_url, args.reuse)
    db = open_database(url)
    migrate(db)
    db.close_all() if hasattr(db, "close_all") else db.close()
    if fill:
        started = time.monotonic()
        (fill_sqlite(path, conversations, messages) if engine == "sqlite"
         else fill_postgres(url, conversations, messages))
        print(f"{engine}: loaded {args.chats:,} chats, {total:,} messages in {time.monotonic() - started:.0f} s",
              flush=True)
    server = Server(url, workdir)
    try:
        print(f"{engine}: {args.chats:,} chats, {total:,} messages, {args.rounds} requests each", flush=True)
        for line in measure(server.url, conversations, args.rounds):
            print(line, flush=True)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--chats", type=int, default=100_000)
    parser.add_argument("--per-chat", type=int, default=10, help="messages per chat, the system message included")
    parser.add_argument("--rounds", type=int, default=500, help="requests per measurement")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="a database to connect to while creating the bench database")
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "aiserver-history-bench"))
    parser.add_argument("--reuse", action="store_true", help="keep a database filled by an earlier run")
    parser.add_argument("--keep", action="store_true", help="keep the databases (and the work directory) after")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        for engine in ("sqlite", "postgresql") if args.engine == "both" else (args.engine,):
            run(engine, args, workdir)
    finally:
        if not args.keep and not args.reuse:
            shutil.rmtree(workdir, ignore_errors=True)
            if args.engine != "sqlite":
                drop_postgres(args.postgres_url)


def drop_postgres(admin_url: str) -> None:
    import psycopg2

    admin = psycopg2.connect(admin_url)
    admin.autocommit = True
    admin.cursor().execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
    admin.close()


if __name__ == "__main__":
    main()
