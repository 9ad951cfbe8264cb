"""Logging: console plus `app.log` (INFO), `error.log` (ERROR) and `debug.log` (DEBUG), rotated, all
three created at start.

The web workers and the job worker all write the same files, so rotation uses
concurrent-log-handler (a lock file per log) instead of the standard RotatingFileHandler, which
corrupts rotation when several processes share a file.

Every record's arguments are escaped first (`EscapeArguments`): a newline or other control character
from a caller (a model name, a path, an upstream error) can never forge a log line. Then every
record passes a redaction filter that replaces configured secrets (API keys, tokens, the
verification secret) and anything shaped like a token (`app.core.credentials.TOKEN_SHAPES`) with `***`, so
a secret that slips into an exception message still never reaches a file. Each request gets an id
(`X-Request-ID` honoured when the client sends one) and exactly one access line when its response
is closed, which for a stream is after the last byte, so the line carries provider, model and tokens.
"""
from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

from concurrent_log_handler import ConcurrentRotatingFileHandler

from app.core.config import project_root
from app.core.credentials import redact_tokens


def escape_control(text: str) -> str:
    """`text` with every non-printable character (newlines, ANSI escapes, bidi overrides, lone
    surrogates) written as its Python escape, so it stays on one line and reads as what it was."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


class EscapeArguments(logging.Filter):
    """Escape the control characters of a record's arguments (not of its format string, which is
    ours, nor of a traceback, which is many lines by nature). Numbers, and objects whose text is
    printable, are left as they are so `%d` and `%r` still work."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, Mapping):
            record.args = {key: escaped(value) for key, value in record.args.items()}
        elif record.args:
            record.args = tuple(escaped(value) for value in record.args)
        return True


def escaped(value: Any) -> Any:
    if value is None or isinstance(value, (int, float)):
        return value
    text = value if isinstance(value, str) else str(value)
    return value if text.isprintable() else escape_control(text)


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: list[str]):
        super().__init__()
        self.secrets = sorted(set(secrets), key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return redact_tokens(text)

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact once per record, however many handlers it passes through."""
        if getattr(record, "redacted", False):
            return True
        record.redacted = True
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg, record.args = self.redact(message), None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname, "logger": record.name, "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def make_formatter(kind: str) -> logging.Formatter:
    if kind == "json":
        return JsonFormatter()
    formatter = logging.Formatter(TEXT_FORMAT)
    formatter.converter = time.gmtime
    return formatter


class RotatingLogFile(ConcurrentRotatingFileHandler):
    """concurrent-log-handler's rotating file, which every process logging to it shares, with a fast path
    for the usual line: while the file this process has open is still the one at its path (nobody
    rotated or removed it) and under the size limit, the line is one append (the file is opened with
    `O_APPEND`, so lines of several processes never mix) without the lock file. Otherwise, to rotate or
    reopen, the handler's own locked emit runs. That one took and released the lock file, flushed,
    sought and stat'ed for every line (~30 µs of a file's ~50 µs a line). A file may pass its size
    limit by one line per process writing to it (a line checked before another process rotated)."""

    def emit(self, record: logging.LogRecord) -> None:
        stream = self.stream
        if stream is not None and not stream.closed and self.current(stream):
            try:
                stream.write(self.format(record) + self.terminator)
                stream.flush()
                return
            except UnicodeError:  # nothing was written: the locked emit has the fallbacks
                pass
            except Exception:
                self.handleError(record)
                return
        super().emit(record)

    opened: tuple[Any, tuple[int, int]] = (None, (-1, -1))  # a stream we opened, its file's (device, inode)

    def current(self, stream: Any) -> bool:
        """Whether `stream` is still the file at our path and under the size limit: one `stat` of the path
        a line, the open file's identity taken once per stream (the size is the path's: the same file)."""
        try:
            if self.opened[0] is not stream:
                identity = os.fstat(stream.fileno())
                self.opened = (stream, (identity.st_dev, identity.st_ino))
            named = os.stat(self.baseFilename)
        except OSError:
            return False
        return (named.st_dev, named.st_ino) == self.opened[1] and named.st_size < self.maxBytes


def create_if_missing(path: str) -> None:
    """Create an empty log file now: the handler opens its file only at the first record, and
    `tail -f logs/error.log` on a healthy server should wait for errors, not fail. Appending (O_CREAT
    without O_TRUNC) is safe when several workers start at once."""
    with open(path, "a", encoding="utf-8"):
        pass


def configure_logging(config: dict[str, Any], filters: list[logging.Filter]) -> None:
    """(Re)build the `aiserver` logger's handlers, each passing every record through `filters` (the
    request id, then redaction); idempotent, so tests may call it per app."""
    log_dir = config["LOG_DIR"]
    if not os.path.isabs(log_dir):
        log_dir = os.path.join(project_root(), log_dir)
    os.makedirs(log_dir, exist_ok=True)
    formatter = make_formatter(config["LOG_FORMAT"])
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    handlers[0].setLevel(config["LOG_LEVEL"].upper())
    for name, level in (("app.log", logging.INFO), ("error.log", logging.ERROR), ("debug.log", logging.DEBUG)):
        path = os.path.join(log_dir, name)
        create_if_missing(path)
        file_handler = RotatingLogFile(path, maxBytes=20 * 2**20, backupCount=5, encoding="utf-8")
        file_handler.setLevel(level)
        handlers.append(file_handler)
    for logger_name in ("aiserver", "gunicorn.error", "huey"):
        logger = logging.getLogger(logger_name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
            old.close()
        for handler in handlers:
            handler.setFormatter(formatter)
            for log_filter in filters:
                handler.addFilter(log_filter)
            logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
        logger.propagate = False


