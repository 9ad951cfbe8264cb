"""The peewee database: chosen by `DATABASE_URL`, bound in the factory, migrated by one runner.

Models subclass `BaseModel`, whose database is the `database` proxy; `init_app` binds it to a
SQLite (WAL, cooperative lock wait: `CooperativeSqliteDatabase`) or PostgreSQL pool. Services open connections with
`database.connection_context()`, which nests and works inside streaming generators that outlive
the request context. Schema changes are numbered files in `app/migrations/`, applied by peewee's
migration runner (`flask --app app.wsgi db-upgrade`, which `make run`
and the deploy scripts run before the server starts).
"""
from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections import deque
from typing import Any, Callable, TypeVar

import click
from flask import Flask
from peewee import DatabaseProxy, InterfaceError, Model, OperationalError, SqliteDatabase, TextField
from playhouse.db_url import parse as parse_db_url
from playhouse.migrations import Runner
from playhouse.pool import MaxConnectionsExceeded, PooledDatabase, PooledPostgresqlDatabase, PooledSqliteDatabase

from app.core.backoff import backoff_delay
from app.core.config import project_root

log = logging.getLogger("aiserver.db")
database = DatabaseProxy()
M = TypeVar("M", bound=Model)
T = TypeVar("T")
MIGRATIONS_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "migrations")  # app/migrations

LOCKED = "database is locked"  # SQLite's SQLITE_BUSY, as Python's sqlite3 words it
LOCK_PAUSES_S = (0.002, 0.1)  # first and longest sleep between tries for the write lock
OUTAGE_PAUSES_S = 0.25  # first sleep before a write is tried again on a PostgreSQL that was unreachable; doubles
SQLITE_PRAGMAS = (
    ("busy_timeout", 5),  # milliseconds: SQLite's own wait sleeps in C, which freezes a gevent worker
    ("journal_mode", "wal"),
    ("synchronous", "normal"),
    ("foreign_keys", 1),
    ("cache_size", -16000),
)


class BaseModel(Model):
    class Meta:
        database = database
        legacy_table_names = False


class JSONField(TextField):
    """JSON kept as text, so SQLite and PostgreSQL store it the same way."""

    def db_value(self, value: Any) -> str | None:
        return None if value is None else json.dumps(value, separators=(",", ":"))

    def python_value(self, value: str | None) -> Any:
        return None if value is None else json.loads(value)


# -- waiting for SQLite's write lock ---------------------------------------------------------------------


def wait_for_lock(run: Callable[[], T], seconds: float) -> T:
    """`run()`, tried again while SQLite answers "database is locked", for up to `seconds`.

    The pauses are `time.sleep`, which gevent's patching makes a greenlet sleep: while one request
    waits for another process's write lock, the rest of the worker keeps serving. A refused
    statement did nothing, so trying it again is safe inside a transaction too."""
    deadline = time.monotonic() + seconds
    pause, longest = LOCK_PAUSES_S
    while True:
        try:
            return run()
        except OperationalError as error:
            if LOCKED not in str(error) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, longest)


class FirstComeFirstServed:
    """peewee's connection pool, but requests waiting for a free connection get one in the order they
    came. peewee's own wait lets a newcomer take a connection a waiter was woken for, and re-queues each
    waiter every second, so under overload some requests passed their timeout (a 503) while later ones
    were served. Here each waiter waits on an event of its own, in a queue; a returned connection (or a
    waiter leaving) wakes the first in line, and a newcomer queues behind whoever waits. The queue's
    lock (the pool's) is never held while connecting: peewee takes its database lock first, then the
    pool's, and the other order could deadlock."""

    _pool_lock: threading.RLock
    _wait_timeout: float

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._waiting: deque[threading.Event] = deque()

    def connect(self, reuse_if_open: bool = False):
        if not self._waiting:
            try:
                return self._take_connection(reuse_if_open)
            except MaxConnectionsExceeded:
                pass
        turn = threading.Event()
        with self._pool_lock:
            self._waiting.append(turn)
            self._wake_first()  # first in line: it tries at once (a connection may be back already)
        deadline = time.monotonic() + self._wait_timeout
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not turn.wait(None if math.isinf(remaining) else remaining):
                    raise MaxConnectionsExceeded("Max connections exceeded, timed out attempting to connect.")
                turn.clear()  # before trying: a connection returned meanwhile sets it again
                try:
                    return self._take_connection(reuse_if_open)
                except MaxConnectionsExceeded:
                    continue
        finally:
            with self._pool_lock:
                self._waiting.remove(turn)
                self._wake_first()

    def _take_connection(self, reuse_if_open: bool):
        """What peewee's pool does without waiting: a pooled or new connection, or MaxConnectionsExceeded."""
        return super(PooledDatabase, self).connect(reuse_if_open)  # type: ignore[misc]

    def _close(self, conn: Any, close_conn: bool = False) -> None:
        super()._close(conn, close_conn)  # type: ignore[misc]
        with self._pool_lock:
            self._wake_first()

    def _wake_first(self) -> None:
        if self._waiting:
            self._waiting[0].set()


class FairPooledPostgresqlDatabase(FirstComeFirstServed, PooledPostgresqlDatabase):
    pass


class CooperativeSqliteDatabase(FirstComeFirstServed, PooledSqliteDatabase):
    """A SQLite pool whose statements wait for the write lock in Python (`wait_for_lock`, up to
    `lock_wait_s`) rather than in SQLite's C busy handler, which would block the event loop."""

    def __init__(self, path: str, lock_wait_s: float = 10.0, **kwargs: Any):
        self.lock_wait_s = lock_wait_s
        super().__init__(path, **kwargs)

    def execute_sql(self, sql, params=None):
        return wait_for_lock(lambda: super(CooperativeSqliteDatabase, self).execute_sql(sql, params), self.lock_wait_s)

    def begin(self, lock_type=None):
        return wait_for_lock(lambda: super(CooperativeSqliteDatabase, self).begin(lock_type), self.lock_wait_s)


def until_stored(write: Callable[[], T], what: str, attempts: int = 6) -> T:
    """`write()` (a whole transaction), run again while the database refuses it for a passing reason,
    up to `attempts` times; every refusal is logged, the last raised. For writes that must land, such
    as a finished answer. Passing reasons: SQLite's lock held by another writer, and no pooled
    connection free (every one in use by other requests, hundreds of them per gevent worker under
    load), both tried again at once since each try has already waited the full lock or pool wait;
    and on PostgreSQL a lost or refused connection (a server restarting) or a transaction conflict,
    tried again after `OUTAGE_PAUSES_S` (about 8 s in all)."""
    for attempt in range(1, attempts):
        try:
            return write()
        except (OperationalError, InterfaceError, MaxConnectionsExceeded) as error:
            waited = isinstance(error, MaxConnectionsExceeded) or LOCKED in str(error)
            if not waited and isinstance(database.obj, SqliteDatabase):
                raise
            log.warning("%s not stored yet (attempt %d of %d): %s; trying again", what, attempt, attempts,
                        " ".join(str(error).split()))
            if not waited:
                time.sleep(backoff_delay(attempt, OUTAGE_PAUSES_S))
    return write()


# -- locking ---------------------------------------------------------------------------------------


def write_transaction():
    """A transaction that holds the write lock from its first statement: BEGIN IMMEDIATE on SQLite,
    where it serialises writers across processes (concurrent writers queue up instead of failing on
    a stale snapshot); a plain one on PostgreSQL, where rows are locked with `locked_row` instead."""
    db = database.obj
    return db.atomic("IMMEDIATE") if isinstance(db, SqliteDatabase) else db.atomic()


def locked_row(model: type[M], key: Any) -> M | None:
    """The `model` row whose primary key is `key`, locked until the transaction ends (`SELECT ... FOR
    UPDATE` on PostgreSQL; on SQLite `write_transaction` already locks the whole database); None if absent."""
    query = model.select().where(model._meta.primary_key == key)
    if database.obj.for_update:
        query = query.for_update()
    return query.first()


def insert_rows(model: Any, rows: list[dict[str, Any]], per_statement: int = 100) -> None:
    """Insert `rows` (dicts of field names to values) into `model`'s table, up to `per_statement` rows a
    statement: what peewee's `insert_many` writes (a field a row leaves out takes its default, each value
    is converted by its field's `db_value`), without building an expression node per value, which cost
    several times the write itself for the batched usage and call-log rows of a busy worker."""
    for start in range(0, len(rows), per_statement):
        chunk = rows[start:start + per_statement]
        names = list(dict.fromkeys(name for row in chunk for name in row))
        fields = [model._meta.fields[name] for name in names]
        fields += [field for field in model._meta.defaults if field.name not in names]
        db = database.obj
        opening, closing = db.quote  # our own names: nothing in them to escape
        one_row = "(" + ", ".join([db.param] * len(fields)) + ")"
        sql = (f"INSERT INTO {opening}{model._meta.table_name}{closing} "
               f"({', '.join(opening + field.column_name + closing for field in fields)}) VALUES "
               + ", ".join([one_row] * len(chunk)))
        database.execute_sql(sql, [field.db_value(row[field.name] if field.name in row else default_of(field))
                                   for row in chunk for field in fields])


def default_of(field: Any) -> Any:
    """A field's default value (None when it has none; called when it is a callable)."""
    return field.default() if callable(field.default) else field.default


def change_in_batches(model: Any, condition: Any, change: Callable[[list[Any]], Any], batch: int = 5000) -> int:
    """Apply `change(ids)` to the rows of `model` matching `condition`, `batch` ids per short transaction
    (one long statement would hold SQLite's write lock); returns how many rows were changed."""
    changed = 0
    while True:
        with database.connection_context(), database.atomic():
            ids = [row.id for row in model.select(model.id).where(condition).order_by(model.id).limit(batch)]
            if ids:
                change(ids)
        changed += len(ids)
        if len(ids) < batch:
            return changed


def delete_older_than(model: Any, column: Any, cutoff: Any, batch: int = 5000) -> int:
    """Delete the rows of `model` whose `column` is before `cutoff` (the nightly prunes)."""
    return change_in_batches(model, column < cutoff, lambda ids: model.delete().where(model.id.in_(ids)).execute(),
                             batch)


def open_database(url: str, pool_size: int = 20, pool_timeout: float = 10.0, lock_wait_s: float = 10.0):
    """A pooled peewee database for `url` (sqlite:///relative/or/absolute, postgresql://...).

    Under gevent one worker runs hundreds of requests at once, more than it may hold connections:
    a request beyond `pool_size` waits up to `pool_timeout` seconds for one to be returned, in the
    order requests came (`FirstComeFirstServed`; its events are gevent's once monkey-patched), then
    fails with `MaxConnectionsExceeded` (a 503). On SQLite a statement waits up to `lock_wait_s` for another
    writer's lock, cooperatively (`CooperativeSqliteDatabase`). A PostgreSQL connection is checked
    (`SELECT 1`) as it leaves the pool, so connections a server restart broke are dropped there
    instead of failing a request.
    """
    if url.startswith("sqlite:"):
        path = url.split("sqlite:///", 1)[1] if "sqlite:///" in url else ":memory:"
        if path != ":memory:" and not os.path.isabs(path):
            path = os.path.join(project_root(), path)
        if path != ":memory:":
            os.makedirs(os.path.dirname(path), exist_ok=True)
        return CooperativeSqliteDatabase(path, lock_wait_s=lock_wait_s, pragmas=SQLITE_PRAGMAS,
                                         max_connections=pool_size, stale_timeout=300, timeout=pool_timeout,
                                         check_same_thread=False)
    if url.startswith(("postgres://", "postgresql://")):
        params = parse_db_url(url)
        return FairPooledPostgresqlDatabase(params.pop("database"), max_connections=pool_size, stale_timeout=300,
                                            timeout=pool_timeout, **params)
    raise ValueError("DATABASE_URL must start with sqlite:/// or postgresql://")


def migrate(db) -> list[str]:
    """Apply pending migrations; returns their names. Safe to run on every start."""
    with db.connection_context():
        return Runner(db, MIGRATIONS_DIR).up()


def init_app(app: Flask) -> None:
    db = open_database(app.config["DATABASE_URL"], app.config["DATABASE_POOL_SIZE"],
                       app.config["DATABASE_POOL_TIMEOUT_S"], app.config["DB_LOCK_WAIT_S"])
    database.initialize(db)
    app.extensions["database"] = db

    @app.teardown_appcontext
    def close_leftover_connection(_exc):
        if not db.is_closed():
            db.close()

    @app.cli.command("db-upgrade")
    def db_upgrade():
        """Create or upgrade the schema."""
        applied = migrate(db)
        click.echo(f"applied: {', '.join(applied)}" if applied else "database is up to date")

    @app.cli.command("db-copy")
    @click.option("--to", "target_url", required=True, help="The database to fill: postgresql://user@host/db.")
    @click.option("--batch-size", default=1000, show_default=True, help="Rows read and written at a time.")
    def db_copy(target_url: str, batch_size: int):
        """Copy every table of DATABASE_URL into --to, verify row counts; safe to re-run."""
        from app.core.dbcopy import copy_database

        try:
            results = copy_database(db, open_database(target_url), batch_size)
        except ValueError as exc:  # not a PostgreSQL URL, or a table without a primary key
            raise click.ClickException(str(exc)) from exc
        for result in results:
            click.echo(f"{result.table}: {result.source_rows} rows, {result.copied} copied now, "
                       f"{result.target_rows} in the target{'' if result.matches else '  MISMATCH'}")
        if not all(result.matches for result in results):
            raise click.ClickException("row counts differ: the target holds rows the source does not "
                                       "(or was written to during the copy)")
        click.echo(f"copied {len(results)} tables; every row count matches")
