"""The models file: validation naming lines, endpoints and model groups served through the real SDKs,
`flask models check`, a broken file refused at start, and a reload (HUP) that loses no stream."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import anthropic
import openai
import pytest
import requests

from app.llm.modelsfile import ModelsFileError, parse
from tests.conftest import ROOT, VENV_BIN, as_environ, base_config
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.server import Reply

SECRETS = {"OPENAI_KEY_A": "sk-file-key-a-0001", "OPENAI_KEY_B": "sk-file-key-b-0002",
           "CLAUDE_KEY": "sk-ant-file-key-0003"}


def models_yaml(openai_a: str, openai_b: str, claude: str, weight_b: float = 1) -> str:
    return f"""\
endpoints:
  openai-a: {{kind: openai, api_key: "env:OPENAI_KEY_A", base_url: "{openai_a}"}}
  openai-b: {{kind: openai, api_key: "env:OPENAI_KEY_B", base_url: "{openai_b}"}}
  claude: {{kind: anthropic, api_key: "env:CLAUDE_KEY", base_url: "{claude}"}}
models:
  gpt-5.4:
    upstreams:
      - {{endpoint: openai-a, weight: 1}}
      - {{endpoint: openai-b, model: gpt-5.4-eu, weight: {weight_b}}}
    fallbacks: [claude-sonnet-5-5]
    price: {{input: 2.5, output: 10, cached_input: 0.25}}
  claude-sonnet-5-5:
    upstreams: [claude]
aliases:
  smart: [claude-sonnet-5-5, gpt-5.4]
"""


@pytest.mark.parametrize("text, line, says", [
    ("endpoints:\n  a:\n    kind: openai\n    api_key: sk-in-the-file\n", 4, "env:VARIABLE"),
    ("endpoints:\n  a: {kind: openai, api_key: 'env:NOT_SET_ANYWHERE'}\n", 2, "NOT_SET_ANYWHERE is not set"),
    ("endpoints:\n  a: {kind: openai}\nmodels:\n  m:\n    upstreams:\n      - {endpoint: b}\n", 6,
     "no endpoint named 'b'"),
    ("endpoints:\n  a: {kind: telepathy}\n", 2, "Must be one of"),
    ("endpoints:\n  a: {kind: openai}\nmodels:\n  m:\n    upstreams: [a]\n    weigth: 2\n", 6, "Unknown field"),
    ("models:\n  m: [unclosed\n", 3, "not valid YAML"),
    ("endpoints:\n  a: {kind: openai}\nmodels:\n  m:\n    upstreams:\n      - {endpoint: a, weight: 0}\n", 6,
     "greater than 0"),
])
def test_a_broken_file_is_refused_naming_the_line(text, line, says):
    with pytest.raises(ModelsFileError) as caught:
        parse(text, "models.yaml", {})
    assert f"models.yaml:{line}:" in str(caught.value) and says in str(caught.value)


def test_secrets_are_read_from_the_environment_and_never_shown():
    checked = parse("endpoints:\n  a: {kind: anthropic, api_key: 'env:CLAUDE_KEY'}\n", "m.yaml", SECRETS)
    assert checked.endpoints["a"]["api_key"] == SECRETS["CLAUDE_KEY"]
    with pytest.raises(ModelsFileError) as caught:
        parse("endpoints:\n  a: {kind: anthropic, api_key: 'env:CLAUDE_KEY'}\nmodels:\n  m: {upstreams: [b]}\n",
              "m.yaml", SECRETS)
    assert SECRETS["CLAUDE_KEY"] not in str(caught.value)


@pytest.fixture
def fakes():
    with FakeOpenAI(api_key=SECRETS["OPENAI_KEY_A"]) as a, FakeOpenAI(api_key=SECRETS["OPENAI_KEY_B"]) as b, \
            FakeAnthropic(api_key=SECRETS["CLAUDE_KEY"]) as claude:
        yield a, b, claude


def test_an_unknown_fallback_is_refused_at_start_naming_the_line(tmp_path, make_app, fakes):
    a, b, claude = fakes
    path = tmp_path / "models.yaml"
    path.write_text(models_yaml(a.base_url, b.base_url, claude.base_url).replace("[claude-sonnet-5-5]",
                                                                                   "[mistral-huge]"))
    with pytest.raises(ModelsFileError, match=r"models.yaml:10: models.gpt-5.4.fallbacks.0: The model 'mistral-huge'"):
        make_app(MODELS_FILE=str(path), **SECRETS)


def test_endpoints_models_and_aliases_through_the_openai_and_anthropic_sdks(tmp_path, live_server, fakes):
    a, b, claude = fakes
    path = tmp_path / "models.yaml"
    path.write_text(models_yaml(a.base_url, b.base_url, claude.base_url))
    server = live_server(MODELS_FILE=str(path), **SECRETS)
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    ids = [model.id for model in client.models.list().data]
    assert {"gpt-5.4", "claude-sonnet-5-5", "smart"} <= set(ids)
    for _ in range(40):
        answer = client.chat.completions.create(model="gpt-5.4", messages=[{"role": "user", "content": "hi"}])
        assert answer.choices[0].message.content
    assert len(a.requests) >= 8 and len(b.requests) >= 8  # both upstreams of the model serve it
    assert {r.json["model"] for r in b.requests} == {"gpt-5.4-eu"}  # each upstream's own model name
    assert {r.headers["authorization"] for r in a.requests} == {f"Bearer {SECRETS['OPENAI_KEY_A']}"}
    claude.enqueue(Reply(chunks=["From", " Claude"]))
    messages = anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0)
    reply = messages.messages.create(model="smart", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    assert reply.content[0].text == "From Claude" and claude.requests[-1].json["model"] == "claude-sonnet-5-5"
    # one upstream of gpt-5.4 failing: the other answers, then the fallback model when both fail
    a.default_reply = Reply(status=503)
    for _ in range(5):
        client.chat.completions.create(model="gpt-5.4", messages=[{"role": "user", "content": "hi"}])
    b.default_reply = Reply(status=500)
    claude.enqueue(Reply(text="Claude takes over"))
    answer = client.chat.completions.with_raw_response.create(model="gpt-5.4",
                                                               messages=[{"role": "user", "content": "hi"}])
    assert answer.parse().choices[0].message.content == "Claude takes over"
    assert "openai-b/gpt-5.4-eu" in answer.headers["X-Fallbacks"] or "openai-a/gpt-5.4" in answer.headers["X-Fallbacks"]
    upstreams = requests.get(server.url + "/health", timeout=5).json()["upstreams"]  # an open server
    by_name = {row["upstream"]: row for row in upstreams}
    assert by_name["openai-b/gpt-5.4-eu"]["served_as"] == ["gpt-5.4"] and by_name["openai-a/gpt-5.4"]["weight"] == 1
    assert by_name["openai-a/gpt-5.4"]["consecutive_failures"] >= 1
    assert server.log_path.read_text().count(SECRETS["OPENAI_KEY_A"]) == 0


def flask_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "flask"), "--app", "app.wsgi", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_flask_models_check(tmp_path, fakes):
    a, b, claude = fakes
    path = tmp_path / "models.yaml"
    path.write_text(models_yaml(a.base_url, b.base_url, claude.base_url))
    env = as_environ(base_config(tmp_path, MODELS_FILE=str(path), **SECRETS))
    good = flask_cli("models", "check", env=env)
    assert good.returncode == 0 and "valid: 2 models, 3 upstreams, 1 aliases" in good.stdout
    path.write_text(path.read_text().replace("openai-a, weight: 1}", "openai-a, weight: -3}"))
    bad = flask_cli("models", "check", env=env)
    assert bad.returncode == 1 and "models.yaml:8: models.gpt-5.4.upstreams.0.weight" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_gunicorn_refuses_to_start_on_a_broken_file_naming_the_line(tmp_path):
    path = tmp_path / "models.yaml"
    path.write_text("endpoints:\n  a:\n    kind: openai\n    api_key: sk-written-in-the-file\n")
    env = as_environ(base_config(tmp_path, MODELS_FILE=str(path), HOST="127.0.0.1", PORT="0", WEB_WORKERS="1"))
    started = subprocess.run([str(VENV_BIN / "gunicorn"), "--config", "gunicorn.conf.py", "app.wsgi:app"], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=60)
    assert started.returncode != 0
    assert "models.yaml:4: endpoints.a.api_key: write the secret as env:VARIABLE" in started.stderr
    assert "sk-written-in-the-file" not in started.stderr


def stream_whole(url: str, results: list, index: int) -> None:
    body = {"model": "gpt-5.4", "stream": True, "messages": [{"role": "user", "content": "count"}]}
    text = []
    with requests.post(url + "/v1/chat/completions", json=body, stream=True, timeout=30) as response:
        for line in response.iter_lines():
            if line.startswith(b"data: {"):
                import json

                choices = json.loads(line[6:])["choices"]
                text += [c["delta"].get("content") or "" for c in choices]
    results[index] = "".join(text)


def test_a_reload_takes_the_new_file_without_losing_a_stream_and_keeps_the_last_good_one(tmp_path, live_server,
                                                                                         fakes):
    a, b, claude = fakes
    path = tmp_path / "models.yaml"
    path.write_text(models_yaml(a.base_url, b.base_url, claude.base_url, weight_b=1))
    server = live_server(workers=2, MODELS_FILE=str(path), **SECRETS)
    words = [f"w{i} " for i in range(12)]
    a.default_reply = b.default_reply = Reply(chunks=words, chunk_delay=0.25)
    results: list = [None] * 6
    streams = [threading.Thread(target=stream_whole, args=(server.url, results, i)) for i in range(6)]
    for thread in streams:
        thread.start()
    assert a.wait_until(lambda: len(a.requests) + len(b.requests) >= 6, timeout=10)
    path.write_text(models_yaml(a.base_url, b.base_url, claude.base_url).replace("  smart:", "  quick:"))
    os.kill(server.process.pid, signal.SIGHUP)
    for thread in streams:
        thread.join(timeout=30)
    assert results == ["".join(words)] * 6  # every stream open during the reload finished whole
    a.default_reply = b.default_reply = Reply(text="after the reload")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "quick" not in model_ids(server.url):
        time.sleep(0.2)
    assert "quick" in model_ids(server.url) and "smart" not in model_ids(server.url)
    path.write_text("endpoints: [this is not right\n")
    os.kill(server.process.pid, signal.SIGHUP)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "models file refused" not in server.log_path.read_text():
        time.sleep(0.2)
    assert "models.yaml:2: not valid YAML" in server.log_path.read_text()
    time.sleep(1.5)  # the reload's new workers are up
    assert "quick" in model_ids(server.url)  # still served with the file last found valid
    assert requests.post(server.url + "/v1/chat/completions", timeout=10, json={
        "model": "gpt-5.4", "messages": [{"role": "user", "content": "hi"}]}).status_code == 200


def model_ids(url: str) -> set[str]:
    return {model["id"] for model in requests.get(url + "/v1/models", timeout=30).json()["data"]}


def test_no_models_file_leaves_the_environment_routing_alone(tmp_path):
    env = as_environ(base_config(tmp_path, MODELS_FILE=str(Path(tmp_path) / "absent.yaml")))
    result = flask_cli("models", "check", env=env)
    assert result.returncode == 0 and "No models file" in result.stdout


def test_azure_bedrock_and_vertex_endpoints_through_the_server(tmp_path, live_server, fake_azure, fake_bedrock,
                                                               fake_vertex):
    from tests.conftest import AWS_KEY_ID, AWS_SECRET, AZURE_KEY, VERTEX_PROJECT, VERTEX_TOKEN

    path = tmp_path / "models.yaml"
    path.write_text(f"""\
endpoints:
  azure-eu: {{kind: azure, base_url: "{fake_azure.url}", api_key: "env:AZ_KEY", api_version: "2024-10-21"}}
  bedrock-us: {{kind: bedrock, region: us-east-1, base_url: "{fake_bedrock.url}",
               aws_access_key_id: "env:AWS_ID", aws_secret_access_key: "env:AWS_SECRET_KEY"}}
  vertex-gemini: {{kind: vertex, project: {VERTEX_PROJECT}, location: us-east5, base_url: "{fake_vertex.url}",
                  access_token: "env:VERTEX_OAUTH"}}
  vertex-claude: {{kind: vertex, project: {VERTEX_PROJECT}, location: us-east5, base_url: "{fake_vertex.url}",
                  access_token: "env:VERTEX_OAUTH"}}
models:
  gpt-4o:
    upstreams: [{{endpoint: azure-eu, model: gpt4o-eu}}]
  claude-on-bedrock:
    upstreams: [{{endpoint: bedrock-us, model: anthropic.claude-sonnet-4-5-v1:0}}]
  gemini-on-vertex:
    upstreams: [{{endpoint: vertex-gemini, model: gemini-2.5-flash}}]
  claude-on-vertex:
    upstreams: [{{endpoint: vertex-claude, model: claude-sonnet-4-5}}]
""")
    server = live_server(MODELS_FILE=str(path), AZ_KEY=AZURE_KEY, AWS_ID=AWS_KEY_ID, AWS_SECRET_KEY=AWS_SECRET,
                         VERTEX_OAUTH=VERTEX_TOKEN)
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    weather = [{"type": "function", "function": {"name": "weather", "description": "The weather in a city.",
                                                 "parameters": {"type": "object",
                                                                "properties": {"city": {"type": "string"}}}}}]
    for model, fake in [("gpt-4o", fake_azure), ("claude-on-bedrock", fake_bedrock),
                        ("gemini-on-vertex", fake_vertex), ("claude-on-vertex", fake_vertex)]:
        fake.enqueue(Reply(chunks=["Hello", " from ", model]))
        streamed = client.chat.completions.create(model=model, stream=True,
                                                  messages=[{"role": "user", "content": "hi"}])
        assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == f"Hello from {model}"
        fake.enqueue(Reply(tool_calls=[{"name": "weather", "arguments": {"city": "Oslo"}}]))
        answer = client.chat.completions.create(model=model, tools=weather,
                                                messages=[{"role": "user", "content": "Weather in Oslo?"}])
        call = answer.choices[0].message.tool_calls[0]
        assert (call.function.name, json.loads(call.function.arguments)) == ("weather", {"city": "Oslo"})
        fake.enqueue(Reply(text="It is mild."))
        final = client.chat.completions.create(model=model, tools=weather, messages=[
            {"role": "user", "content": "Weather in Oslo?"}, answer.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "12 C"}])
        assert final.choices[0].message.content == "It is mild."
    assert fake_bedrock.signatures_verified >= 3
    assert {r.path.split("?")[0] for r in fake_azure.requests} == {"/openai/deployments/gpt4o-eu/chat/completions"}
    assert any("publishers/anthropic/models/claude-sonnet-4-5" in r.path for r in fake_vertex.requests)
    assert any("publishers/google/models/gemini-2.5-flash" in r.path for r in fake_vertex.requests)
