"""Each provider module drives its vendor's real SDK against the protocol fake: the same interface,
the same failures, whichever vendor answers."""
from __future__ import annotations

import json
import time

import pytest

from app.llm.providers.anthropic_messages import AnthropicProvider
from app.llm.providers.base import (
    CallerFault,
    CompletionRequest,
    ModelUnavailable,
    ProviderRejected,
    StreamEnd,
    TransientFailure,
    UpstreamTimedOut,
)
from app.llm.providers.google_gemini import GeminiProvider
from app.llm.providers.openai_compatible import OpenAICompatibleProvider
from tests.fakes.server import Reply

VENDORS = ["openai", "anthropic", "gemini"]
HELLO = CompletionRequest([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}])


def make_provider(vendor: str, fake, read_timeout: float = 5.0):
    common = {"default_model": "model-a", "fallback_models": ["model-b"], "connect_timeout": 2.0,
              "read_timeout": read_timeout}
    if vendor == "openai":
        return OpenAICompatibleProvider("openai", api_key="k-openai-secret", base_url=fake.base_url, **common)
    if vendor == "anthropic":
        return AnthropicProvider(api_key="k-anthropic-secret", base_url=fake.base_url, max_tokens=256, **common)
    return GeminiProvider(api_key="k-gemini-secret", base_url=fake.base_url, **common)


@pytest.fixture(params=VENDORS)
def vendor(request):
    return request.param


@pytest.fixture
def fake(vendor, request):
    return request.getfixturevalue(f"fake_{vendor}")


@pytest.fixture
def provider(vendor, fake):
    return make_provider(vendor, fake)


def test_complete_returns_text_model_and_usage(provider, fake):
    fake.enqueue(Reply(text="Hello there, friend.", prompt_tokens=7, completion_tokens=4))
    result = provider.complete(HELLO, "model-a")
    assert result.text == "Hello there, friend."
    assert result.model.endswith("model-a")
    assert result.finish_reason == "stop"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (7, 4)
    sent = json.dumps(fake.requests[-1].json)
    assert "Be brief." in sent and "Say hello" in sent


def test_stream_yields_every_delta_then_the_end(provider, fake):
    fake.enqueue(Reply(chunks=["Hel", "lo", " wor", "ld"], prompt_tokens=5, finish_reason="length"))
    items = list(provider.stream(HELLO, "model-a"))
    assert items[:-1] == ["Hel", "lo", " wor", "ld"]
    end = items[-1]
    assert isinstance(end, StreamEnd)
    assert end.finish_reason == "length"
    assert end.usage.prompt_tokens == 5 and end.usage.completion_tokens == 4


@pytest.mark.parametrize("status, failure", [(429, TransientFailure), (500, TransientFailure),
                                             (503, TransientFailure), (401, ProviderRejected),
                                             (404, ModelUnavailable), (400, CallerFault)])
def test_status_errors_map_to_one_failure_family(provider, fake, status, failure):
    fake.enqueue(Reply(status=status, error_message="scripted failure", retry_after=3 if status == 429 else None))
    with pytest.raises(failure) as caught:
        provider.complete(HELLO, "model-a")
    assert caught.value.status == status
    assert "scripted failure" in caught.value.message
    if status == 429:
        assert caught.value.retry_after == pytest.approx(3, abs=0.01)


def test_stream_errors_before_the_first_delta_raise_on_first_item(provider, fake):
    fake.enqueue(Reply(status=500, error_message="down"))
    with pytest.raises(TransientFailure):
        next(provider.stream(HELLO, "model-a"))


def test_read_timeout_is_a_retryable_timeout(vendor, fake):
    provider = make_provider(vendor, fake, read_timeout=0.5)
    fake.enqueue(Reply(hang=3))
    started = time.monotonic()
    with pytest.raises(UpstreamTimedOut):
        provider.complete(HELLO, "model-a")
    assert time.monotonic() - started < 2.5


def test_connection_reset_mid_stream_raises_after_the_text_received(provider, fake):
    fake.enqueue(Reply(chunks=["one ", "two ", "three ", "four"], reset_after=2, chunk_delay=0.05))
    received = []
    with pytest.raises(TransientFailure):
        for item in provider.stream(HELLO, "model-a"):
            received.append(item)
    assert received == ["one ", "two "]


def test_closing_a_stream_closes_the_upstream_request(provider, fake):
    fake.enqueue(Reply(chunks=[f"w{i} " for i in range(50)], chunk_delay=0.05))
    stream = provider.stream(HELLO, "model-a")
    assert next(stream) == "w0 "
    stream.close()
    assert fake.wait_for_disconnect(3)


def test_unreachable_provider_is_a_transient_failure(vendor):
    class Nowhere:
        base_url = "http://127.0.0.1:9/v1" if vendor == "openai" else "http://127.0.0.1:9"

    with pytest.raises(TransientFailure):
        make_provider(vendor, Nowhere).complete(HELLO, "model-a")


def test_check_lists_models_without_spending_tokens(provider, fake):
    provider.check()
    assert all(r.method == "GET" for r in fake.requests)


def test_wrong_key_fails_the_check(vendor, request):
    fake_class = type(request.getfixturevalue(f"fake_{vendor}"))
    with fake_class(api_key="the-right-key") as guarded:
        with pytest.raises(ProviderRejected):
            make_provider(vendor, guarded).check()


def test_structured_output_asks_each_vendor_its_own_way(vendor, provider, fake):
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    fake.enqueue(Reply(text='{"answer": "42"}'))
    request = CompletionRequest([{"role": "user", "content": "?"}], json_schema={"name": "result", "schema": schema})
    assert json.loads(provider.complete(request, "model-a").text) == {"answer": "42"}
    body = fake.requests[-1].json
    if vendor == "openai":
        assert body["response_format"]["json_schema"]["schema"] == schema
    elif vendor == "anthropic":
        assert body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    else:
        assert body["generationConfig"]["responseMimeType"] == "application/json"


def test_images_reach_the_vendor_in_its_own_format(vendor, provider, fake):
    pixel = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8/5+hHgAHggJ/PchI7wAAAABJRU5ErkJggg=="
    request = CompletionRequest([{"role": "user", "content": [
        {"type": "text", "text": "What is this?"}, {"type": "image", "media_type": "image/png", "data": pixel}]}])
    provider.complete(request, "model-a")
    sent = json.dumps(fake.requests[-1].json)
    assert pixel[:40] in sent


FIRST_CALL = """
import gc, json, sys
import app.wsgi
built = {"openai": "openai" in sys.modules, "anthropic": "anthropic" in sys.modules,
         "frozen": gc.get_freeze_count(), "gc": gc.isenabled()}
from app.core.db import migrate
migrate(app.wsgi.app.extensions["database"])
client = app.wsgi.app.test_client()
answers = [client.post("/v1/chat/completions", json={"model": "openai/gpt-5.4-mini",
                       "messages": [{"role": "user", "content": "hi"}]}) for _ in range(2)]
provider = app.wsgi.app.extensions["providers"].get("openai")
print(json.dumps({**built, "statuses": [a.status_code for a in answers], "texts": [a.get_json()["choices"][0]
                  ["message"]["content"] for a in answers], "after": "openai" in sys.modules,
                  "one_client": provider.client is provider.client}))
"""


def test_building_the_app_imports_no_vendor_sdk_until_its_first_call(fake_openai, tmp_path):
    """Start-up (docs/performance.md, "Third cut"): the SDK is imported and its client made at the
    provider's first call, then kept; the app's objects are frozen out of the cyclic collector."""
    import os
    import subprocess
    import sys

    (tmp_path / "empty.env").write_text("")
    fake_openai.enqueue(Reply(text="first"))
    fake_openai.enqueue(Reply(text="second"))
    env = {"PATH": os.environ["PATH"], "DOTENV_PATH": str(tmp_path / "empty.env"), "LOG_DIR": str(tmp_path),
           "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite", "QUEUE_SQLITE_PATH": str(tmp_path / "queue.db"),
           "OPENAI_API_KEY": "k-openai-secret", "OPENAI_BASE_URL": fake_openai.base_url,
           "ANTHROPIC_API_KEY": "k-anthropic-secret", "KEY_HASH_SECRET_FILE": str(tmp_path / "secret")}
    run = subprocess.run([sys.executable, "-c", FIRST_CALL],
                         env=env, capture_output=True, text=True, timeout=120,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert run.returncode == 0, run.stderr[-2000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert (seen["openai"], seen["anthropic"]) == (False, False)
    assert seen["frozen"] > 100_000 and seen["gc"]
    assert seen["statuses"] == [200, 200] and seen["texts"] == ["first", "second"]
    assert seen["after"] and seen["one_client"]


def test_a_client_made_on_first_use_is_made_once_when_threads_race_to_it():
    import threading

    from app.llm.providers.base import MadeOnFirstUse

    made: list[object] = []

    def make() -> object:
        time.sleep(0.05)  # long enough for every thread to arrive while the first is still making it
        made.append(object())
        return made[-1]

    lazy = MadeOnFirstUse(make)
    start, got = threading.Barrier(8), []

    def reach() -> None:
        start.wait(timeout=5)
        got.append(lazy.get())

    threads = [threading.Thread(target=reach) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)
    assert len(made) == 1 and got == made * 8


POOLED_CHECKS = """
from gevent import monkey
monkey.patch_all()
import json, socket
import gevent, httpx2
from app.core.http import PooledSocketChecks
from app.llm.providers.base import FirstByteTransport, connection_limits

listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(16)
accepted = []

def serve():
    # each connection answers one request with keep-alive, then the server closes it (as a server does
    # at its limit of requests a connection), so the client's pooled connection is dead when next used
    while True:
        connection, _ = listener.accept()
        accepted.append(connection)
        connection.recv(65536)
        connection.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nConnection: keep-alive\\r\\n\\r\\nok")
        gevent.sleep(0.01)  # after the client read the answer and pooled the connection
        connection.close()

gevent.spawn(serve)
client = httpx2.Client(transport=FirstByteTransport(limits=connection_limits(10)))
url = "http://127.0.0.1:%d/" % listener.getsockname()[1]
answers = []
for _ in range(3):
    answers.append(client.get(url).text)
    gevent.sleep(0.05)  # the server's close arrives; the loop turns

checks = PooledSocketChecks()
near, far = socket.socketpair()
first = checks.check(near)
far.close()
same_turn = checks.check(near)
gevent.sleep(0.001)
next_turn = checks.check(near)
print(json.dumps({"answers": answers, "connections": len(accepted), "checks": [first, same_turn, next_turn]}))
"""


def test_a_pooled_connection_the_server_closed_is_not_reused_and_is_checked_once_a_turn():
    """httpcore2's check of its idle connections (`PooledSocketChecks`, docs/performance.md "Fifth cut"):
    a connection the server closed after its answer is seen as closed at the next request, which opens
    a new one instead of failing; within one turn of gevent's loop a socket is polled once."""
    import os
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", POOLED_CHECKS], capture_output=True, text=True, timeout=60,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert run.returncode == 0, run.stderr[-2000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["answers"] == ["ok"] * 3 and seen["connections"] == 3
    assert seen["checks"] == [False, False, True]


def test_without_gevent_every_pooled_connection_check_polls():
    import socket

    from app.core.http import PooledSocketChecks

    checks = PooledSocketChecks()
    near, far = socket.socketpair()
    try:
        assert checks.check(near) is False
        far.close()
        assert checks.check(near) is True
    finally:
        near.close()
