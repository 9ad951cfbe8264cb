"""Start, check and stop the benchmark's processes: the fake upstream and the gateways.

Every process is started in its own session (so its whole tree can be signalled),
pinned with `taskset` when asked, logs to a file under the run's scratch folder,
and is stopped at the end: SIGTERM to the group, then SIGKILL after a grace period.
Every wait here is bounded by a deadline.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import loadgen  # noqa: E402
from fake_upstream import expected_text  # noqa: E402

BENCH_PY = sys.executable
LITELLM_VENV = os.path.join(HERE, ".venv-litellm")
PORTKEY_DIR = os.path.join(HERE, "portkey")
PORTKEY_SERVER = os.path.join(PORTKEY_DIR, "node_modules", "@portkey-ai", "gateway", "build", "start-server.js")
LITELLM_MASTER_KEY = "sk-bench"


class SkipTarget(Exception):
    """A target could not be started or answered wrongly: the run goes on without it."""


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(**extra: str) -> dict:
    """A small, explicit environment: nothing from a developer's shell leaks into a target."""
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SSL_CERT_FILE")
           if k in os.environ}
    env.setdefault("LANG", "C.UTF-8")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env.update({k: str(v) for k, v in extra.items()})
    return env


def taskset_prefix(cpus: str | None) -> list[str]:
    if cpus and shutil.which("taskset"):
        return ["taskset", "-c", cpus]
    return []


@dataclass
class Proc:
    name: str
    argv: list[str]
    log_path: str
    popen: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid if self.popen else 0

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_tail(self, lines: int = 25) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 20000))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def spawn(name: str, argv: list[str], env: dict, cwd: str, log_dir: str, cpus: str | None = None) -> Proc:
    log_path = os.path.join(log_dir, f"{name}.log")
    full = taskset_prefix(cpus) + argv
    logf = open(log_path, "ab")
    logf.write(f"$ (cd {cwd} && {' '.join(full)})\n".encode())
    logf.flush()
    popen = subprocess.Popen(full, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=logf,
                             stderr=subprocess.STDOUT, start_new_session=True)
    logf.close()
    return Proc(name, full, log_path, popen)


def stop(proc: Proc | None, grace: float = 15.0) -> None:
    """SIGTERM the process group, wait up to `grace` s, then SIGKILL it."""
    if proc is None or proc.popen is None:
        return
    pgid = proc.popen.pid  # start_new_session: the leader's pid is the group id
    if proc.popen.poll() is None:
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    # Whatever is left in the group (workers that outlived their master) goes too.
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.popen.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def wait_port(proc: Proc, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.2) + 1):  # bounded: count and deadline
        if time.monotonic() > deadline:
            break
        if not proc.alive():
            raise SkipTarget(f"{proc.name} exited with code {proc.popen.returncode} before listening "
                             f"on port {port}; its log ends with:\n{proc.log_tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SkipTarget(f"{proc.name} did not listen on port {port} within {timeout:.0f} s; "
                     f"its log ends with:\n{proc.log_tail()}")


@dataclass
class Target:
    """One thing the load generator is pointed at."""
    name: str                     # key in the results: direct, aiserver, aiserver-ask, litellm, portkey
    label: str                    # what the report calls it
    url: str
    endpoint: str = "chat"        # chat or ask (see loadgen.Spec)
    headers: dict = field(default_factory=dict)
    proc: Proc | None = None      # the process tree measured for CPU and memory
    owns_proc: bool = True        # aiserver-ask shares aiserver's process
    info: dict = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    def spec(self, stream: bool, chunks: int, timeout: float = 30.0) -> loadgen.Spec:
        return loadgen.Spec(url=self.url, endpoint=self.endpoint, stream=stream, headers=dict(self.headers),
                            expect=expected_text(chunks), timeout=timeout)

    def loadgen_args(self) -> list[str]:
        args = ["--url", self.url, "--endpoint", self.endpoint]
        for k, v in self.headers.items():
            args += ["--header", f"{k}: {v}"]
        if self.pid:
            args += ["--pid", str(self.pid)]
        return args


def smoke(target: Target, chunks: int, timeout: float = 20.0, modes: tuple = (False, True)) -> None:
    """One valid answer of each mode (False: non-stream, True: stream) within `timeout` s (retried),
    or SkipTarget. The stream-capacity benchmark checks only non-stream: its fake streams for a minute."""

    async def check() -> str:
        deadline = time.monotonic() + timeout
        last = ""
        async with loadgen.make_session(2) as session:
            for stream in modes:
                spec = target.spec(stream, chunks, timeout=10.0)
                spec.headers["Content-Type"] = "application/json"
                body = loadgen.json.dumps(spec.body()).encode()
                ok = False
                for _ in range(50):  # bounded: 50 tries and the deadline
                    r = await loadgen.one_request(session, spec, body)
                    if r.ok:
                        ok = True
                        break
                    last = f"{'stream' if stream else 'non-stream'} request to {spec.target_url}: {r.error} {r.detail}"
                    if time.monotonic() > deadline or (target.proc and not target.proc.alive()):
                        break
                    await asyncio.sleep(0.5)
                if not ok:
                    return last
        return ""

    problem = asyncio.run(check())
    if problem:
        tail = target.proc.log_tail() if target.proc else ""
        raise SkipTarget(f"{target.label} gave no valid answer: {problem}"
                         + (f"\nits log ends with:\n{tail}" if tail else ""))


# --------------------------------------------------------------------------- the starters

def start_fake(name: str, log_dir: str, cpus: str | None, latency_ms: float, chunks: int, gap_ms: float,
               max_seconds: float) -> Target:
    port = free_port()
    argv = [BENCH_PY, os.path.join(HERE, "fake_upstream.py"), "--port", str(port), "--latency-ms", str(latency_ms),
            "--chunks", str(chunks), "--gap-ms", str(gap_ms), "--max-seconds", str(int(max_seconds))]
    proc = spawn(name, argv, base_env(), HERE, log_dir, cpus)
    wait_port(proc, port, 20)
    return Target(name, "direct (fake upstream)", f"http://127.0.0.1:{port}", proc=proc,
                  info={"port": port, "cpus": cpus, "command": " ".join(proc.argv)})


def aiserver_env(fake_url: str, port: int, tmp: str, **extra) -> dict:
    """aiserver's environment: the fake upstream, a SQLite database under `tmp`, and `extra` over those."""
    empty_env = os.path.join(tmp, "empty.env")
    open(empty_env, "a").close()
    settings = dict(OPENAI_API_KEY="bench", OPENAI_BASE_URL=f"{fake_url}/v1", PORT=str(port),
                    DATABASE_URL=f"sqlite:///{tmp}/bench.db", LOG_DIR=tmp,
                    # The checkout's own .env (a developer's keys) must not change the routing.
                    DOTENV_PATH=empty_env)
    return base_env(**{**settings, **extra})


def flask_command(args: list[str], env: dict, log_path: str, timeout: float = 180.0) -> str:
    """Run `flask --app app.wsgi <args>` in aiserver's venv; its output, or SkipTarget saying why it failed."""
    flask = os.path.join(ROOT, ".venv", "bin", "flask")
    if not os.path.exists(flask):
        raise SkipTarget("aiserver is not runnable yet: .venv/bin/flask is missing (run `make install` for .venv)")
    try:
        done = subprocess.run([flask, "--app", "app.wsgi", *args], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)
        output, rc = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as expired:
        output, rc = str(expired.output or ""), f"timeout ({timeout:.0f} s)"
    with open(log_path, "w") as f:
        f.write(output)
    if rc != 0:
        tail = "\n".join(output.splitlines()[-20:])
        raise SkipTarget(f"`flask --app app.wsgi {' '.join(args)}` failed ({rc}):\n{tail}")
    return output


def start_aiserver(log_dir: str, tmp: str, fake_url: str, cpus: str | None, chunks: int,
                   extra_env: dict | None = None, name: str = "aiserver", smoke_modes: tuple = (False, True),
                   migrate: bool = True, headers: dict | None = None, client_key: bool = False) -> Target:
    """Gunicorn on a free port (its database migrated first unless `migrate` is false: another instance
    on the same database did it), checked with one valid answer per smoke mode. `headers` go with every
    request to it (a client key's Authorization); `client_key` creates a key (no limits) and sends it."""
    gunicorn = os.path.join(ROOT, ".venv", "bin", "gunicorn")
    needed = (gunicorn, os.path.join(ROOT, "gunicorn.conf.py"), os.path.join(ROOT, "app", "wsgi.py"))
    missing = [p for p in needed if not os.path.exists(p)]
    if missing:
        raise SkipTarget("aiserver is not runnable yet: missing " + ", ".join(os.path.relpath(p, ROOT) for p in missing)
                         + " (run `make install` for .venv)")
    os.makedirs(tmp, exist_ok=True)
    port = free_port()
    env = aiserver_env(fake_url, port, tmp, **(extra_env or {}))
    if migrate:
        flask_command(["db-upgrade"], env, os.path.join(log_dir, f"{name}-db-upgrade.log"))
    headers = dict(headers or {})
    if client_key:
        out = flask_command(["keys", "create", "bench"], env, os.path.join(log_dir, f"{name}-key.log"))
        key = next(line[5:].strip() for line in out.splitlines() if line.startswith("key: "))
        headers["Authorization"] = f"Bearer {key}"
    argv = [gunicorn, "--config", "gunicorn.conf.py", "app.wsgi:app"]
    proc = spawn(name, argv, env, ROOT, log_dir, cpus)
    try:
        wait_port(proc, port, 60)
        target = Target(name, "aiserver /v1/chat/completions", f"http://127.0.0.1:{port}", headers=dict(headers or {}),
                        proc=proc, info={"port": port, "cpus": cpus, "command": " ".join(proc.argv),
                                         "env": {k: v for k, v in env.items() if k not in ("PATH", "HOME", "LANG")}})
        smoke(target, chunks, modes=smoke_modes)
    except SkipTarget:
        stop(proc)
        raise
    return target


def start_caddy(log_dir: str, tmp: str, upstreams: list[str], cpus: str | None,
                caddyfile: str = os.path.join(ROOT, "deploy", "Caddyfile.scaled")) -> Target:
    """Caddy on a free port with `caddyfile` (by default the balancing one), in front of `upstreams`
    (HOST:PORT each), its admin endpoint off and its state under `tmp`."""
    caddy = shutil.which("caddy")
    if not caddy:
        raise SkipTarget("caddy is not installed (scripts/install-test-deps installs it)")
    home = os.path.join(tmp, "caddy-home")
    os.makedirs(home, exist_ok=True)
    port = free_port()
    env = base_env(AISERVER_BIND="127.0.0.1", AISERVER_HTTP_PORT=str(port), AISERVER_UPSTREAMS=" ".join(upstreams),
                   AISERVER_UPSTREAM=" ".join(upstreams), CADDY_ADMIN="off", CADDY_LOG_DIR=tmp, HOME=home,
                   XDG_CONFIG_HOME=os.path.join(home, "config"), XDG_DATA_HOME=os.path.join(home, "data"))
    proc = spawn("caddy", [caddy, "run", "--config", caddyfile, "--adapter", "caddyfile"], env, tmp, log_dir, cpus)
    wait_port(proc, port, 30)
    return Target("caddy", f"Caddy ({os.path.basename(caddyfile)})", f"http://127.0.0.1:{port}", proc=proc,
                  info={"port": port, "cpus": cpus, "upstreams": upstreams, "command": " ".join(proc.argv)})


def aiserver_ask(chat: Target, chunks: int) -> Target:
    target = Target("aiserver-ask", "aiserver /v1/ask", chat.url, endpoint="ask", proc=chat.proc, owns_proc=False,
                    headers=dict(chat.headers), info=chat.info)
    smoke(target, chunks)
    return target


def start_litellm(log_dir: str, tmp: str, fake_url: str, cpus: str | None, chunks: int, workers: int = 1,
                  smoke_modes: tuple = (False, True)) -> Target:
    exe = os.path.join(LITELLM_VENV, "bin", "litellm")
    if not os.path.exists(exe):
        raise SkipTarget(f"LiteLLM is not installed: {os.path.relpath(exe, ROOT)} is missing "
                         "(bench/run.sh installs it from bench/requirements-litellm.txt)")
    os.makedirs(tmp, exist_ok=True)
    config = os.path.join(tmp, "litellm.yaml")
    with open(config, "w") as f:
        f.write(
            "model_list:\n"
            "  - model_name: gpt-4o-mini\n"
            "    litellm_params:\n"
            "      model: openai/gpt-4o-mini\n"
            f"      api_base: {fake_url}/v1\n"
            "      api_key: bench\n"
        )
    port = free_port()
    env = base_env(LITELLM_MASTER_KEY=LITELLM_MASTER_KEY, LITELLM_LOCAL_MODEL_COST_MAP="True")
    argv = [exe, "--config", config, "--host", "127.0.0.1", "--port", str(port), "--num_workers", str(workers)]
    proc = spawn("litellm", argv, env, tmp, log_dir, cpus)
    try:
        wait_port(proc, port, 180)
        target = Target("litellm", f"LiteLLM proxy ({workers} worker{'s' if workers > 1 else ''})",
                        f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {LITELLM_MASTER_KEY}"},
                        proc=proc, info={"port": port, "cpus": cpus, "command": " ".join(proc.argv),
                                         "config": open(config).read(), "workers": workers})
        smoke(target, chunks, modes=smoke_modes)
    except SkipTarget:
        stop(proc)
        raise
    return target


def start_portkey(log_dir: str, fake_url: str, cpus: str | None, chunks: int,
                  smoke_modes: tuple = (False, True)) -> Target:
    node = shutil.which("node")
    if not node or not os.path.exists(PORTKEY_SERVER):
        raise SkipTarget("Portkey's gateway is not installed: run `npm ci` in bench/portkey "
                         "(bench/run.sh does) and make sure `node` is on PATH")
    port = free_port()
    argv = [node, PORTKEY_SERVER, f"--port={port}", "--headless"]
    proc = spawn("portkey", argv, base_env(), PORTKEY_DIR, log_dir, cpus)
    try:
        wait_port(proc, port, 60)
        target = Target("portkey", "Portkey gateway", f"http://127.0.0.1:{port}",
                        headers={"x-portkey-provider": "openai", "x-portkey-custom-host": f"{fake_url}/v1",
                                 "Authorization": "Bearer bench"},
                        proc=proc, info={"port": port, "cpus": cpus, "command": " ".join(proc.argv)})
        smoke(target, chunks, modes=smoke_modes)
    except SkipTarget:
        stop(proc)
        raise
    return target


def versions() -> dict:
    """Versions of what was measured, for the report."""
    out = {"python": sys.version.split()[0]}
    try:
        out["node"] = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    try:
        r = subprocess.run([os.path.join(LITELLM_VENV, "bin", "python"), "-c",
                            "import importlib.metadata as m; print(m.version('litellm'))"],
                           capture_output=True, text=True, timeout=60)
        out["litellm"] = r.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        pass
    for pkg, key in (("@portkey-ai/gateway", "portkey_gateway"), ("hono", "hono"),
                     ("@hono/node-server", "hono_node_server")):
        try:
            with open(os.path.join(PORTKEY_DIR, "node_modules", *pkg.split("/"), "package.json")) as f:
                out[key] = json.load(f)["version"]
        except (OSError, ValueError, KeyError):
            pass
    try:
        import importlib.metadata as md
        out["aiohttp"] = md.version("aiohttp")
    except Exception:
        pass
    try:
        r = subprocess.run([os.path.join(ROOT, ".venv", "bin", "python"), "-c",
                            "import importlib.metadata as m; print(m.version('gunicorn'), m.version('gevent'))"],
                           capture_output=True, text=True, timeout=60)
        if r.returncode == 0:
            g, ge = r.stdout.split()
            out["gunicorn"], out["gevent"] = g, ge
    except (OSError, subprocess.TimeoutExpired, ValueError):
        pass
    return out


def machine() -> dict:
    info = {"nproc": os.cpu_count()}
    try:
        info["nproc"] = int(subprocess.run(["nproc"], capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, ValueError, subprocess.TimeoutExpired):
        pass
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout.splitlines():
            if line.lower().startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except (OSError, subprocess.TimeoutExpired):
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    info["memory_gib"] = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    info["os"] = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    info["kernel"] = os.uname().release
    return info


def source_state() -> dict:
    """Which aiserver was measured: the commit, and whether the working tree differed from it."""
    def git(*a):
        try:
            r = subprocess.run(["git", "-C", ROOT, *a], capture_output=True, text=True, timeout=30)
            return r.stdout.strip() if r.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired):
            return None
    head = git("rev-parse", "--short", "HEAD")
    changed = git("status", "--porcelain", "--", "app", "gunicorn.conf.py", "requirements.txt")
    return {"commit": head, "uncommitted_changes": None if changed is None else len(changed.splitlines()),
            "measured_at": time.strftime("%Y-%m-%d %H:%M %Z")}
