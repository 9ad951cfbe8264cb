"""What a user meets on a freshly started server (a real `gunicorn -k gevent`, `live_server`): the three
log files, the client address its access log believes, and a configured model whose provider has no
key, seen through the official openai SDK."""
from __future__ import annotations

import json
import time
from pathlib import Path

import openai
import pytest
import requests

LOG_FILES = ("app.log", "error.log", "debug.log")


def access_line(log_dir: Path, request_id: str, within: float = 10.0) -> dict:
    """The JSON access line of the request `request_id`, written when its response closed: just after
    the client has read it, so it is waited for (at most `within` seconds)."""
    deadline = time.monotonic() + within
    while True:
        for line in (log_dir / "app.log").read_text().splitlines():
            entry = json.loads(line)
            if entry["logger"] == "aiserver.access" and entry["request_id"] == request_id:
                return entry
        if time.monotonic() > deadline:
            raise AssertionError(f"no access line for {request_id}")
        time.sleep(0.05)


def test_all_three_log_files_exist_from_the_start(live_server, tmp_path):
    log_dir = tmp_path / "fresh-logs"
    live_server(workers=2, LOG_DIR=str(log_dir))
    assert {name: (log_dir / name).is_file() for name in LOG_FILES} == dict.fromkeys(LOG_FILES, True)
    assert (log_dir / "error.log").read_text() == ""  # nothing has gone wrong, and `tail -f` has a file


@pytest.mark.parametrize("trusted, believed", [(1, "203.0.113.9"), (2, "198.51.100.66"), (0, "127.0.0.1")])
def test_the_access_log_believes_only_the_trusted_proxies_hops(live_server, tmp_path, trusted, believed):
    server = live_server(TRUSTED_PROXIES=trusted, LOG_FORMAT="json")
    # The client wrote 192.0.2.1 itself; a CDN saw 198.51.100.66; the proxy next to us saw 203.0.113.9.
    forwarded = "192.0.2.1, 198.51.100.66, 203.0.113.9"
    response = requests.get(server.url + "/ping", headers={"X-Forwarded-For": forwarded, "X-Request-ID": "xff-1"},
                            timeout=5)
    assert response.ok
    assert access_line(tmp_path / "logs", "xff-1")["client"] == believed


def test_a_configured_model_without_its_key_is_a_503_naming_the_variable(live_server):
    server = live_server(OPENAI_MODEL_DEFAULT="team-finetune", OPENAI_COMPATIBLE=["vllm"],
                         VLLM_MODEL_DEFAULT="qwen-local", OLLAMA_MODEL_DEFAULT="llama3.2")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    messages = [{"role": "user", "content": "hi"}]
    for model, variable in [("team-finetune", "OPENAI_API_KEY"), ("gpt-5.4-nano", "OPENAI_API_KEY"),
                            ("anthropic/claude-haiku-5-5", "ANTHROPIC_API_KEY"), ("gemini-3.5-flash", "GEMINI_API_KEY"),
                            ("llama3.2", "OLLAMA_HOST"), ("qwen-local", "VLLM_API_BASE")]:
        with pytest.raises(openai.InternalServerError) as raised:
            client.chat.completions.create(model=model, messages=messages)
        assert raised.value.status_code == 503, model
        assert variable in raised.value.message and model.split("/")[-1] in raised.value.message
        assert raised.value.body == {"message": raised.value.body["message"], "type": "service_unavailable",
                                     "code": "not_configured", "param": "model"}
    with pytest.raises(openai.NotFoundError):  # a model no known provider claims stays a 404
        client.chat.completions.create(model="team-finetune-2", messages=messages)
