"""Backups of the SQLite database, safe while the server runs.

SQLite's online backup API (`sqlite3.Connection.backup`) copies a consistent snapshot through a
read transaction; in WAL mode writers carry on meanwhile. Copying the file instead could capture a
torn page or miss what is still in the `-wal` file. Each backup is written beside its final name,
checked with `PRAGMA quick_check`, switched to a self-contained rollback journal, made readable by
the owner only, and then renamed into place, so a listed backup is always a whole one.

Used by the worker's nightly job (`app.ops.housekeeping`) and by `deploy/backup`, which runs
`python -m app.ops.backup`.
"""
from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import time
from pathlib import Path

PREFIX = "aiserver-"


class BackupError(Exception):
    """The database cannot be backed up (not SQLite, missing, or the copy failed its check)."""


def sqlite_path(database_url: str) -> str:
    """The database file of a `sqlite:///...` URL (relative paths are under the project)."""
    from app.core.config import project_root

    if not database_url.startswith("sqlite:///"):
        raise BackupError("only SQLite databases are backed up here; use pg_dump for PostgreSQL")
    path = database_url.split("sqlite:///", 1)[1]
    if not path or path == ":memory:":
        raise BackupError("an in-memory database has nothing to back up")
    return path if os.path.isabs(path) else os.path.join(project_root(), path)


def backup_sqlite(source: str, destination: str) -> str:
    """Copy `source` to `destination` with the online backup API; returns `destination`.

    Raises BackupError when `source` is missing or the copy does not pass `PRAGMA quick_check`.
    """
    if not os.path.isfile(source):
        raise BackupError(f"no database at {source}")
    Path(destination).parent.mkdir(parents=True, exist_ok=True)
    partial = f"{destination}.partial"
    if os.path.exists(partial):
        os.remove(partial)
    src = sqlite3.connect(source, timeout=30)  # run as the server's user: it may create the -wal/-shm files
    dst = sqlite3.connect(partial)
    try:
        src.backup(dst)  # one step: a single consistent snapshot
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
        check = dst.execute("PRAGMA quick_check").fetchone()[0]
    finally:
        dst.close()
        src.close()
    if check != "ok":
        os.remove(partial)
        raise BackupError(f"the copy of {source} failed its integrity check: {check}")
    os.chmod(partial, 0o600)
    os.replace(partial, destination)
    return destination


def backup_to_directory(source: str, directory: str, keep: int = 0) -> str:
    """A timestamped backup of `source` in `directory`; with `keep` > 0 only the newest `keep` stay."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    destination = os.path.join(directory, f"{PREFIX}{stamp}.db")
    suffix = 1
    while os.path.exists(destination):
        destination = os.path.join(directory, f"{PREFIX}{stamp}-{suffix}.db")
        suffix += 1
    backup_sqlite(source, destination)
    if keep > 0:
        prune_backups(directory, keep)
    return destination


def prune_backups(directory: str, keep: int) -> list[str]:
    """Delete all but the newest `keep` backups made here; returns the deleted paths."""
    backups = sorted(Path(directory).glob(f"{PREFIX}*.db"), key=lambda p: p.stat().st_mtime, reverse=True)
    removed = [str(path) for path in backups[keep:]]
    for path in removed:
        os.remove(path)
    return removed


def main(argv: list[str] | None = None) -> int:
    from app.core.config import load_settings, project_root

    settings = load_settings()
    parser = argparse.ArgumentParser(prog="python -m app.ops.backup", description=__doc__.splitlines()[0])
    parser.add_argument("--output", help="write the backup to this file (default: a timestamped file in --dir)")
    parser.add_argument("--dir", default=settings["BACKUP_DIR"], help="backup directory (default: BACKUP_DIR)")
    parser.add_argument("--keep", type=int, default=0, help="keep only the newest N backups in --dir (0: all)")
    args = parser.parse_args(argv)
    try:
        source = sqlite_path(settings["DATABASE_URL"])
        if args.output:
            written = backup_sqlite(source, os.path.abspath(args.output))
        else:
            directory = args.dir if os.path.isabs(args.dir) else os.path.join(project_root(), args.dir)
            written = backup_to_directory(source, directory, args.keep)
    except (BackupError, sqlite3.Error, OSError) as exc:
        print(f"backup failed: {exc}", file=sys.stderr)
        return 1
    print(written)
    return 0


if __name__ == "__main__":
    sys.exit(main())
