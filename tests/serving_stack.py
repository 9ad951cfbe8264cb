"""The production stack on loopback for tests/test_serving.py: Supervisor and Caddy run from the
shipped `supervisord.conf` and `deploy/Caddyfile.internal`, changed only in ports and paths.

`SupervisedStack` copies supervisord.conf into a temporary directory with its runtime paths
(socket, pid file, logs) moved there and `%(here)s` pointed back at the project, then runs
`supervisord --nodaemon` with the test's settings in its environment. `CaddyProxy` runs Caddy on
the internal-only Caddyfile with its placeholders set: an ephemeral port, the web program as
upstream, no admin endpoint, and HOME/XDG directories inside the temporary directory.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import xmlrpc.client
from pathlib import Path
from typing import Any, Callable

import requests
from supervisor.xmlrpc import SupervisorTransport

from tests.conftest import ROOT, VENV_BIN
from tests.fakes.openai_api import FakeOpenAI

CADDY = shutil.which("caddy")


def free_port() -> int:
    """A port the kernel had free a moment ago (servers that must know their port up front)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except (requests.RequestException, OSError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def answers(url: str) -> bool:
    return requests.get(url, timeout=2).status_code == 200


def refuses_connections(address: str) -> bool:
    """Whether nothing accepts connections on HOST:PORT any more (after a kill -9, a worker that
    outlives its master for a moment still holds the listening socket)."""
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def children(pid: int) -> set[int]:
    """Live child processes of `pid` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class TimedOpenAI(FakeOpenAI):
    """The OpenAI fake, also noting when each content chunk of a stream went out (`time.monotonic()`).

    A frame is written by the fake's stream loop before it asks the generator for the next one, so
    the moment the generator resumes after yielding a content frame is the moment it was sent.
    """

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.sent: list[tuple[float, bytes]] = []

    def frames(self, reply, model, request):
        for frame in super().frames(reply, model, request):
            yield frame
            if frame.content:
                self.sent.append((time.monotonic(), frame.data))


def adapt_supervisord_conf(text: str, run_dir: Path, log_dir: Path) -> str:
    """The shipped supervisord.conf with its runtime files under `run_dir`/`log_dir` (ports and paths only)."""
    text = text.replace("%(here)s/data/", f"{run_dir}/").replace("%(here)s/logs/", f"{log_dir}/")
    text = text.replace("childlogdir=%(here)s/logs", f"childlogdir={log_dir}")
    text = text.replace("%(here)s/.venv/bin/", f"{VENV_BIN}/").replace("%(here)s", str(ROOT))
    return text


class SupervisedStack:
    """`supervisord --nodaemon` on an adapted copy of the shipped supervisord.conf."""

    def __init__(self, tmp: Path, environ: dict[str, str]):
        self.tmp = tmp
        self.run_dir, self.log_dir = tmp / "run", tmp / "logs"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.conf = tmp / "supervisord.conf"
        self.conf.write_text(adapt_supervisord_conf((ROOT / "supervisord.conf").read_text(), self.run_dir,
                                                    self.log_dir))
        self.port = int(environ["PORT"])
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = environ
        # supervisorctl's own client: polling through it costs no process start
        self.rpc = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=SupervisorTransport(
            None, None, serverurl=f"unix://{self.run_dir / 'supervisor.sock'}")).supervisor
        self.console_path = self.log_dir / "console.out"
        self.console = open(self.console_path, "ab")  # O_APPEND: the programs append to it too
        subprocess.run([str(VENV_BIN / "flask"), "--app", "app.wsgi", "db-upgrade"], cwd=ROOT, env=environ,
                       check=True, capture_output=True, timeout=60)
        self.process = subprocess.Popen([str(VENV_BIN / "supervisord"), "--nodaemon", "--configuration",
                                         str(self.conf)], cwd=tmp, env=environ, stdout=self.console,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for(lambda: answers(self.url + "/ping"), 60, what="the web program")
            wait_for(lambda: self.pid("worker"), 30, what="the worker program")
        except AssertionError:
            self.stop()
            raise AssertionError(f"the stack did not start:\n{self.console_text()[-4000:]}") from None

    def ctl(self, *args: str, check: bool = True) -> str:
        result = subprocess.run([str(VENV_BIN / "supervisorctl"), "--configuration", str(self.conf), *args],
                                capture_output=True, text=True, timeout=90)
        if check and result.returncode not in (0,):
            raise AssertionError(f"supervisorctl {' '.join(args)}: {result.returncode}\n{result.stdout}{result.stderr}")
        return result.stdout

    def pid(self, program: str) -> int:
        """The running program's pid; 0 while it is not RUNNING (or Supervisor does not answer)."""
        try:
            info = self.rpc.getProcessInfo(program)
        except (OSError, xmlrpc.client.Error):
            return 0
        return info["pid"] if info["statename"] == "RUNNING" else 0

    def console_text(self) -> str:
        if not self.console.closed:
            self.console.flush()
        return self.console_path.read_text(errors="replace")

    def stop(self) -> None:
        programs = [pid for pid in (self.pid("web"), self.pid("worker")) if pid]
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        for pid in programs:  # each program is its own process group; make sure none outlives the test
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
        self.console.close()


class CaddyProxy:
    """Caddy on the shipped deploy/Caddyfile.internal (or `caddyfile`), on an ephemeral port, in front of
    `upstream` (one HOST:PORT, or several separated by spaces for deploy/Caddyfile.scaled)."""

    def __init__(self, tmp: Path, upstream: str, caddyfile: Path = ROOT / "deploy" / "Caddyfile.internal"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        home = tmp / "caddy-home"
        self.log_dir = tmp / "caddy-logs"
        env = dict(os.environ, AISERVER_BIND="127.0.0.1", AISERVER_HTTP_PORT=str(self.port),
                   AISERVER_UPSTREAM=upstream, AISERVER_UPSTREAMS=upstream,  # Caddyfile.scaled: space-separated
                   CADDY_ADMIN="off", CADDY_LOG_DIR=str(self.log_dir), HOME=str(home),
                   XDG_CONFIG_HOME=str(home / "config"), XDG_DATA_HOME=str(home / "data"))
        self.output_path = tmp / "caddy.out"
        self.output = open(self.output_path, "wb")
        self.process = subprocess.Popen([CADDY, "run", "--config", str(caddyfile), "--adapter", "caddyfile"],
                                        env=env, stdout=self.output, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        try:
            wait_for(lambda: answers(self.url + "/ping"), 20, what="Caddy")
        except AssertionError:
            self.stop()
            raise AssertionError(f"Caddy did not start:\n{self.output_path.read_text()[-3000:]}") from None

    def failed_health_checks(self, upstream: str) -> int:
        """How many of Caddy's active /health checks of `upstream` (HOST:PORT) have failed so far."""
        checks = (json.loads(line) for line in self.output_path.read_text().splitlines() if line.startswith("{"))
        return sum(1 for check in checks if check.get("msg") == "HTTP request failed" and check.get("host") == upstream)

    def wait_until_marked_down(self, upstream: str, timeout: float = 15.0) -> None:
        """Returns once Caddy's active checks have taken `upstream` out of rotation: no new request is
        sent to it after that. Caddy logs a failed check just before it marks the upstream down, so
        this waits for the second failure, by which time the first has taken effect."""
        wait_for(lambda: self.failed_health_checks(upstream) >= 2, timeout, interval=0.2,
                 what=f"Caddy to mark {upstream} down")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.output.close()


def read_stream(url: str, body: bytes, markers: list[bytes], timeout: float = 20.0,
                on_first: Callable[[], None] | None = None) -> tuple[dict[bytes, float], bytes]:
    """POST `body` to `url` over a raw socket; returns when each marker first arrived and all bytes.

    Reads whatever the socket delivers as soon as it arrives (no client-side buffering), until the
    server closes or the stream's `[DONE]` and chunked terminator have arrived. `on_first` runs once,
    right after the first marker arrives.
    """
    host, port = re.match(r"http://([\d.]+):(\d+)", url).groups()
    path = url.split(f":{port}", 1)[1]
    seen: dict[bytes, float] = {}
    data = b""
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(b"POST %s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json\r\n"
                     b"Accept: text/event-stream\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                     % (path.encode(), host.encode(), port.encode(), len(body), body))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            piece = sock.recv(65536)
            now = time.monotonic()
            if not piece:
                break
            data += piece
            for marker in markers:
                if marker not in seen and marker in data:
                    seen[marker] = now
                    if on_first and len(seen) == 1:
                        on_first()
            if b"[DONE]" in data and data.endswith(b"0\r\n\r\n"):
                break
    return seen, data
