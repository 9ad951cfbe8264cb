"""Gunicorn settings for aiserver: `gunicorn --config gunicorn.conf.py app.wsgi:app`.

Why the file looks the way it does:
- gevent workers. `gevent.monkey.patch_all()` runs exactly once per worker, first, in Gunicorn's
  `GeventWorker.init_process` (the worker entry point), before the worker imports `app.wsgi`. So
  this file never imports `app`, the app is never preloaded into the master (`preload_app`), and the
  master imports nothing that holds references to `ssl.SSLContext` (requests, urllib3, SDKs).
- Settings come from the environment, then `.env`, then the defaults declared in `app/core/config.py`.
  The `.env` file is *read*, not exported into the master's environment: workers forked after a
  graceful reload (HUP) then read `.env` afresh in `create_app`, so edits to it take effect without
  a restart.
- `timeout` recycles a worker whose event loop is blocked (the gevent worker reports in from a
  greenlet every second whatever the requests are doing), so streams of any length live on while a
  hung worker is killed after 30 s.
- On TERM or a graceful reload (HUP) a worker stops accepting and lets in-flight requests, streams
  included, finish for up to `graceful_timeout` seconds. Supervisor's `stopwaitsecs` for
  `[program:web]` must stay above it.
- A worker whose master died (`kill -9`, OOM) does the same (`OrphanSafeGeventWorker`): Gunicorn's
  gevent worker would exit at once on "parent changed", cutting every open stream unstored.
- Request-head limits sit above the app's: what the app can see, it answers in JSON (see README,
  "Errors only Caddy or Gunicorn answer").
- Metrics: each worker is its own process, so prometheus-client runs in multiprocess mode. The
  master sets `PROMETHEUS_MULTIPROC_DIR` before forking (Supervisor passes one shared with the
  queue worker; alone, a temporary directory removed at exit), drops files of processes that are
  gone when it starts, and a dead worker's live gauges (streams in flight) when it exits. This is
  `prometheus_client.multiprocess.mark_process_dead` by hand: importing prometheus-client would
  import ssl into the master.
- The models file (MODELS_FILE) is checked by the master at start and on every reload (HUP), in a
  subprocess so the master imports nothing of the app: a valid file is copied to a snapshot that the
  workers forked after it load (`AISERVER_MODELS_SNAPSHOT`); an invalid one stops the start, or, on a
  reload, is refused with its line named while the workers keep the snapshot last found valid. So a
  typo in a reload never takes the server down.
- Gunicorn's own lines use the app's log format (`logger_class`); the per-request access line is the
  app's own (`aiserver.access`, written when the response closes, with request id, provider, model
  and tokens), so Gunicorn's access log is off to avoid logging each request twice.
"""
import contextlib
import glob
import http
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from dotenv import dotenv_values
from gunicorn import glogging
from gunicorn.workers.ggevent import GeventWorker  # what worker_class = "gevent" imports into the master anyway

_here = os.path.dirname(os.path.abspath(__file__))
_dotenv_path = os.environ.get("DOTENV_PATH") or os.path.join(_here, ".env")
_dotenv = dotenv_values(_dotenv_path) if os.path.isfile(_dotenv_path) else {}


def setting(name: str, default: str) -> str:
    """The environment's value, else `.env`'s, else `default` (the same order as `app.core.config`)."""
    return os.environ.get(name) or _dotenv.get(name) or default




class OrphanSafeGeventWorker(GeventWorker):
    """Gunicorn's gevent worker, except when its master dies: the stock worker notices the new parent
    within a second (`notify`) and calls `sys.exit`, which drops every open response mid-stream, so
    the text its clients saw was never stored. This one treats it as a graceful stop instead: it stops
    accepting (its listening socket is closed, so a restarted master can bind the port) and lets open
    requests finish for up to `graceful_timeout` seconds; requests still open then are closed, which
    stores a stream's text so far (`app.conversations.service.stream_reply`). Then it exits."""

    orphaned = False

    def notify(self):
        self.tmp.notify()
        if not self.orphaned and self.ppid != os.getppid():
            self.orphaned = True
            self.alive = False  # GeventWorker.run then closes the listeners and waits for open requests
            self.log.warning("Parent changed (master %s gone): no longer accepting; open requests get up to "
                             "%s s to finish (pid:%s)", self.ppid, self.cfg.graceful_timeout, self.pid)


bind = f"{setting('HOST', '127.0.0.1')}:{setting('PORT', '5001')}"
worker_class = OrphanSafeGeventWorker
workers = int(setting("WEB_WORKERS", "2"))
worker_connections = int(setting("WEB_WORKER_CONNECTIONS", "1000"))
preload_app = False  # the app (and its ssl/socket users) must load after the worker's monkey-patch
timeout = 30
graceful_timeout = int(setting("WEB_GRACEFUL_TIMEOUT_S", "30"))
# Idle keep-alive connections hold a stopping worker until they time out, so keep this short; Caddy's
# own idle timeout towards us is shorter still (2 s), so it never reuses a connection we just closed.
keepalive = 5
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # heartbeat file off the disk
control_socket_disable = True  # its asyncio thread would import ssl into the master; HUP/TERM suffice
proc_name = "aiserver-web"
# Above the app's own limits (app/web/errors.py: URLs over 4096 bytes are a JSON 414, a header over
# 8192 bytes a JSON 431), so a client sees Gunicorn's own (JSON, write_json_error) answers only beyond these.
limit_request_line = 8190  # Gunicorn's maximum
limit_request_field_size = 16384

errorlog = "-"
loglevel = setting("LOG_LEVEL", "INFO").lower()
accesslog = None
# Used only when an access log is asked for on the command line (`--access-logfile -`).
access_log_format = "[%({x-request-id}o)s] method=%(m)s path=%(U)s status=%(s)s latency_ms=%(M)s bytes=%(B)s"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [-] %(message)s"  # app.core.logs.TEXT_FORMAT, no request yet


class JsonLines(logging.Formatter):
    """The app's JSON log shape (`app.core.logs.JsonFormatter`), for LOG_FORMAT=json."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
                 "level": record.levelname, "logger": record.name, "request_id": "-",
                 "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class AppFormatLogger(glogging.Logger):
    """Gunicorn's logger with the app's line format (UTC timestamps), so the console reads as one log."""

    def setup(self, cfg):
        super().setup(cfg)
        json_lines = setting("LOG_FORMAT", "text").lower() == "json"
        for handler in [*self.error_log.handlers, *self.access_log.handlers]:
            formatter = JsonLines() if json_lines else logging.Formatter(TEXT_FORMAT)
            formatter.converter = time.gmtime
            handler.setFormatter(formatter)


logger_class = AppFormatLogger


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """`gunicorn.util.write_error` in the app's error shape (`{"error": {...}, "success": false}`), for what
    Gunicorn refuses before the app sees a request: a malformed request line or header, an unknown
    transfer coding (`Transfer-Encoding: xchunked`, 501), a request line or header beyond its limits."""
    from gunicorn import util

    reason = http.HTTPStatus(status_int).phrase  # Gunicorn says "Bad Request" with its 501
    kind = "invalid_request_error" if status_int < 500 else "server_error"
    code = reason.lower().replace(" ", "_").replace("-", "_")
    body = json.dumps({"error": {"message": f"{reason}: {mesg}" if mesg else reason, "type": kind, "code": code},
                       "success": False}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
    util.write_nonblock(sock, head + body)


def post_worker_init(worker):
    """Gunicorn's own error answers in JSON (`write_json_error`; its worker calls `util.write_error`).
    PostgreSQL under gevent: make psycopg2 yield to other greenlets while it waits on the server."""
    from gunicorn import util

    util.write_error = write_json_error
    if setting("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
        from psycogreen.gevent import patch_psycopg

        patch_psycopg()


def pre_request(worker, req):
    """Nothing. Gunicorn's default writes `POST /v1/chat/completions` at debug level before every request,
    which the app's `debug.log` takes (it has the `gunicorn.error` logger at debug): a second line a
    request, saying less than the access line written when the response closes, for 3% of a worker's
    CPU under load (bench/profile_gunicorn.conf.py)."""


METRICS_FILE = re.compile(r"_(\d+)\.db$")  # prometheus-client's per-process files: counter_1234.db


def on_starting(server):
    """Set up the metrics directory every worker writes to, keeping files of processes still alive
    (the queue worker's, when Supervisor shares the directory)."""
    directory = setting("PROMETHEUS_MULTIPROC_DIR", "")
    if not directory:
        directory = server.metrics_tmp_dir = tempfile.mkdtemp(prefix="aiserver-metrics-")
    os.makedirs(directory, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    for path in glob.glob(os.path.join(directory, "*.db")):
        match = METRICS_FILE.search(path)
        if match and not os.path.exists(f"/proc/{match.group(1)}"):
            os.remove(path)
    if not check_models_file(server):
        raise SystemExit(1)


def on_reload(server):
    check_models_file(server)


MODELS_SNAPSHOT = "AISERVER_MODELS_SNAPSHOT"


def check_models_file(server) -> bool:
    """Validate the models file in a subprocess; a valid one becomes the workers' snapshot. False (the
    problems logged) when it is invalid."""
    path = setting("MODELS_FILE", "models.yaml")
    path = path if os.path.isabs(path) else os.path.join(_here, path)
    if not os.path.isfile(path):
        os.environ.pop(MODELS_SNAPSHOT, None)
        return True
    with open(path, "rb") as handle:
        text = handle.read()
    check = subprocess.run([sys.executable, "-m", "app.llm.modelsfile", path], input=text, cwd=_here,
                           env={**_dotenv_values(), **os.environ}, capture_output=True, timeout=120)
    if check.returncode != 0:
        kept = " the workers keep the models file last found valid" if os.environ.get(MODELS_SNAPSHOT) else ""
        server.log.error("models file refused:%s\n%s", kept, check.stderr.decode(errors="replace").strip())
        return False
    snapshot = os.path.join(tempfile.gettempdir(), f"aiserver-models-{os.getpid()}.yaml")
    with open(snapshot + ".new", "wb") as handle:
        handle.write(text)
    os.replace(snapshot + ".new", snapshot)
    os.environ[MODELS_SNAPSHOT] = snapshot
    server.log.info("models file %s: %s", path, check.stdout.decode(errors="replace").strip())
    return True


def _dotenv_values() -> dict:
    return {name: value for name, value in _dotenv.items() if value is not None}


def child_exit(server, worker):
    """A worker is gone: its live gauges no longer count (its counters and histograms stay summed)."""
    for path in glob.glob(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], f"gauge_live*_{worker.pid}.db")):
        os.remove(path)


def on_exit(server):
    if getattr(server, "metrics_tmp_dir", None):
        shutil.rmtree(server.metrics_tmp_dir, ignore_errors=True)
    if os.environ.get(MODELS_SNAPSHOT):
        with contextlib.suppress(OSError):
            os.remove(os.environ[MODELS_SNAPSHOT])
