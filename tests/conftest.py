"""Shared fixtures: a clean configuration, the app, protocol fakes and a real Gunicorn + gevent server."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests

from app.core.db import migrate, open_database

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent

# Nothing from a developer's shell or .env may leak into a test.
os.environ["DOTENV_PATH"] = os.devnull
for _name in list(os.environ):
    if _name.endswith(("_API_KEY", "_BASE_URL", "_API_BASE", "_TOKEN", "_PAT", "_HOST", "_MODEL_DEFAULT",
                       "_MODEL_FALLBACKS")) or _name in ("DATABASE_URL", "REDIS_URL", "DEFAULT_PROVIDER",
                                                         "PROVIDER_FALLBACKS", "VERIFICATION_SECRET"):
        del os.environ[_name]

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
REDIS_ADDRESS = ("127.0.0.1", 6379)  # REDIS_URL's host and port, for a TcpRelay in front of it


# For a server shared by a module's tests: each test scripts its own upstream failures, so upstream health
# remembered from one test (a cooling upstream) must not steer the next one's routes.
NO_HEALTH_MEMORY = {"UPSTREAM_FAILURES_TO_COOL": 1_000_000}


def base_config(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """A configuration that uses only `tmp_path`, with retries fast enough for tests."""
    config = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'aiserver.db'}",
        "QUEUE_SQLITE_PATH": str(tmp_path / "queue.db"),
        "LOG_DIR": str(tmp_path / "logs"),
        "LOG_LEVEL": "WARNING",
        "SYSTEM_PROMPT_FILE": str(tmp_path / "system_prompt.txt"),
        "RETRY_BACKOFF_S": 0.01,
        "RETRY_MAX_WAIT_S": 1.0,
        "READ_TIMEOUT_S": 5.0,
        "CONNECT_TIMEOUT_S": 2.0,
        "BACKUP_DIR": str(tmp_path / "backups"),
        "BACKUP_KEEP": 0,
        "USAGE_FLUSH_S": 0,
        "KEY_HASH_SECRET_FILE": str(tmp_path / "key_hash_secret"),
        "UPSTREAM_HEALTH_FILE": str(tmp_path / "upstream_health"),
        "MODELS_FILE": str(tmp_path / "models.yaml"),  # absent unless a test writes it
        "TASK_RATE_LIMIT": "1000/hour",  # suites send many rounds for one email; tests/test_keys.py sets its own
        "TASK_SECRET_FAILURE_LIMIT": "1000/hour",  # suites send wrong secrets on purpose; test_ownership sets its own
    }
    config.update(overrides)
    return config


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of `name`'s samples (in a /metrics text) whose labels include `labels`."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == name and labels.items() <= sample.labels.items())


def as_environ(config: dict[str, Any]) -> dict[str, str]:
    """The same configuration as environment variables, for a server process."""
    env = {k: v for k, v in os.environ.items()}
    for key, value in config.items():
        env[key] = ",".join(value) if isinstance(value, list) else str(value)
    return env


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database (on the server at 127.0.0.1:5432), dropped on exit."""
    name = f"aiserver_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    run_on_postgres(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        run_on_postgres(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_on_postgres(statement: str) -> None:
    """Run one statement outside a transaction on a connection of its own (the server may have been
    restarted since the last one)."""
    import psycopg2

    admin = psycopg2.connect(POSTGRES_URL)
    admin.autocommit = True
    try:
        admin.cursor().execute(statement)
    finally:
        admin.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database of this test session's own, dropped at the end."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def fake_openai() -> Iterator[Any]:
    from tests.fakes.openai_api import FakeOpenAI

    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def fake_anthropic() -> Iterator[Any]:
    from tests.fakes.anthropic_api import FakeAnthropic

    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
def fake_gemini() -> Iterator[Any]:
    from tests.fakes.gemini_api import FakeGemini

    with FakeGemini() as fake:
        yield fake


@pytest.fixture
def fake_azure() -> Iterator[Any]:
    """Azure OpenAI with key AZURE_KEY and two deployments (deployment name -> model)."""
    from tests.fakes.azure_openai_api import FakeAzureOpenAI

    with FakeAzureOpenAI(api_key=AZURE_KEY, deployments={"gpt4o-eu": "gpt-4o-2024-08-06",
                                                          "gpt4o-mini-eu": "gpt-4o-mini-2024-07-18"}) as fake:
        yield fake


@pytest.fixture
def fake_bedrock() -> Iterator[Any]:
    """Bedrock's runtime in us-east-1, accepting only requests signed with AWS_KEY_ID / AWS_SECRET."""
    from tests.fakes.bedrock_api import FakeBedrock

    with FakeBedrock(access_key_id=AWS_KEY_ID, secret_access_key=AWS_SECRET, region="us-east-1") as fake:
        yield fake


@pytest.fixture
def fake_vertex() -> Iterator[Any]:
    """Vertex AI for project VERTEX_PROJECT in us-east5, accepting the bearer VERTEX_TOKEN."""
    from tests.fakes.vertex_api import FakeVertex

    with FakeVertex(project=VERTEX_PROJECT, location="us-east5", access_token=VERTEX_TOKEN) as fake:
        yield fake


AZURE_KEY = "azure-test-key-0004"
AWS_KEY_ID = "AKIATESTBEDROCK0005"
AWS_SECRET = "bedrock-test-secret-0005"
VERTEX_PROJECT = "aiserver-test"
VERTEX_TOKEN = "ya29.vertex-test-token-0006"


def provider_config(openai=None, anthropic=None, gemini=None) -> dict[str, Any]:
    """Settings that point each given fake's provider at it."""
    config: dict[str, Any] = {}
    if openai is not None:
        config.update(OPENAI_API_KEY="sk-test-openai-key-0001", OPENAI_BASE_URL=openai.base_url,
                      OPENAI_MODEL_DEFAULT="gpt-4o-mini", OPENAI_MODEL_FALLBACKS="gpt-4o")
    if anthropic is not None:
        config.update(ANTHROPIC_API_KEY="sk-ant-test-key-0002", ANTHROPIC_BASE_URL=anthropic.base_url,
                      ANTHROPIC_MODEL_DEFAULT="claude-sonnet-5-5", ANTHROPIC_MODEL_FALLBACKS="claude-haiku-5-5")
    if gemini is not None:
        config.update(GEMINI_API_KEY="gemini-test-key-0003", GEMINI_BASE_URL=gemini.base_url,
                      GEMINI_MODEL_DEFAULT="gemini-2.5-flash", GEMINI_MODEL_FALLBACKS="gemini-2.5-flash-lite")
    return config


@pytest.fixture
def make_app(tmp_path: Path) -> Callable[..., Any]:
    """Build an app on a migrated database in tmp_path; keyword arguments override settings."""
    from app import create_app
    from app.core.db import migrate

    def build(**overrides: Any):
        app = create_app(base_config(tmp_path, **overrides))
        migrate(app.extensions["database"])
        return app

    return build


@pytest.fixture
def app(make_app, fake_openai):
    return make_app(**provider_config(openai=fake_openai))


@pytest.fixture
def client(app):
    return app.test_client()


class LiveServer:
    """A real `gunicorn -k gevent` process serving the app on an ephemeral loopback port."""

    def __init__(self, config: dict[str, Any], workers: int = 1):
        self.config = config
        env = as_environ(dict(config, HOST="127.0.0.1", PORT="0", WEB_WORKERS=str(workers)))
        migrate(open_database(config["DATABASE_URL"]))
        self.log_path = Path(config["LOG_DIR"]) / "gunicorn.out"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen([str(VENV_BIN / "gunicorn"), "--config", "gunicorn.conf.py",
                                         "app.wsgi:app"], cwd=ROOT, env=env, stdout=self.log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        self.url = self._wait_for_url(timeout=30)

    def _wait_for_url(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(r"Listening at: (http://[\d.]+:\d+)", self.log_path.read_text())
            if match:
                url = match.group(1)
                try:
                    if requests.get(url + "/ping", timeout=1).ok:
                        return url
                except requests.RequestException:
                    pass
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"gunicorn did not start:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        self.log.close()


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Start real servers: `live_server(**settings)`; each is stopped after the test."""
    servers: list[LiveServer] = []

    def start(workers: int = 1, **overrides: Any) -> LiveServer:
        server = LiveServer(base_config(tmp_path, LOG_LEVEL="INFO", **overrides), workers=workers)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


class TcpRelay:
    """A loopback TCP relay to `target` (host, port) that can be cut and restored on the same port: a
    service going away (connections in flight reset, new ones refused) and coming back, without
    touching the service itself. Clients are configured with `port` (or `url`) instead of the service's."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        probe = socket.create_server(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.url = f"http://127.0.0.1:{self.port}"
        self.sockets: list[socket.socket] = []
        self.listener: socket.socket | None = None

    def up(self) -> "TcpRelay":
        self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()
        return self

    def down(self) -> None:
        for sock in [self.listener, *self.sockets]:
            if sock is None:
                continue
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        self.sockets.clear()
        self.listener = None

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                return
            self.sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):  # one side closed: close the other, as a direct connection would
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
