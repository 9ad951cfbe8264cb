"""The fakes are faithful: the official SDKs, pointed at them, parse every answer and fault."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import anthropic
import httpx2
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from tests.fakes import FakeAnthropic, FakeGemini, FakeOpenAI, FakeServer, Reply

KEY = "test-key"
PROMPT = "Say hello"
PIECES = ["Hello", " from", " the", " fake."]
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Outcome:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    model: str | None = None


class OpenAIDriver:
    fake_class = FakeOpenAI
    rate_limit_error, server_error, auth_error = (
        openai.RateLimitError, openai.InternalServerError, openai.AuthenticationError)
    timeout_error, reset_error = openai.APITimeoutError, openai.APIConnectionError
    finish_reasons = {"stop": "stop", "length": "length"}
    auth_header = ("authorization", f"Bearer {KEY}")
    messages = [{"role": "user", "content": PROMPT}]
    # an overload reported inside a stream that began with a 200: the status the fake is told, what the SDK
    # raises, and the kind of error the vendor names in the event
    overloaded_status, stream_error, overloaded_kind = 503, openai.APIError, "server_error"

    def error_kind(self, raised: Exception) -> str:
        return raised.body["type"]  # the SDK keeps the event's `error` object

    def client(self, fake: FakeServer, key: str = KEY, timeout: float = 5.0) -> openai.OpenAI:
        return openai.OpenAI(api_key=key, base_url=fake.base_url, max_retries=0, timeout=timeout)

    def complete(self, client: openai.OpenAI, model: str) -> Outcome:
        r = client.chat.completions.create(model=model, messages=self.messages)
        choice, usage = r.choices[0], r.usage
        return Outcome(choice.message.content, choice.finish_reason, usage.prompt_tokens, usage.completion_tokens,
                       r.model)

    def stream(self, client: openai.OpenAI, model: str, on_piece: Callable[[str], None]) -> Outcome:
        stream = client.chat.completions.create(
            model=model, messages=self.messages, stream=True, stream_options={"include_usage": True}
        )
        finish = usage = None
        for chunk in stream:
            if chunk.usage:
                usage = chunk.usage
            for choice in chunk.choices:
                if choice.delta.content:
                    on_piece(choice.delta.content)
                finish = choice.finish_reason or finish
        return Outcome("", finish, usage.prompt_tokens, usage.completion_tokens, chunk.model)

    def read_one_then_close(self, client: openai.OpenAI, model: str) -> None:
        stream = client.chat.completions.create(model=model, messages=self.messages, stream=True)
        next(chunk for chunk in stream if chunk.choices and chunk.choices[0].delta.content)
        stream.close()

    def models(self, client: openai.OpenAI) -> list[str]:
        return [model.id for model in client.models.list()]


class AnthropicDriver(OpenAIDriver):
    fake_class = FakeAnthropic
    rate_limit_error, server_error, auth_error = (
        anthropic.RateLimitError, anthropic.InternalServerError, anthropic.AuthenticationError)
    # The Anthropic SDK does not wrap transport errors raised while iterating a stream.
    timeout_error, reset_error = anthropic.APITimeoutError, httpx2.ReadError
    finish_reasons = {"stop": "end_turn", "length": "max_tokens"}
    auth_header = ("authorization", f"Bearer {KEY}")  # 2.x sends the API key as a bearer token, not x-api-key
    overloaded_status, stream_error, overloaded_kind = 529, anthropic.APIStatusError, "overloaded_error"  # status 200

    def error_kind(self, raised: Exception) -> str:
        return raised.body["error"]["type"]

    def client(self, fake: FakeServer, key: str = KEY, timeout: float = 5.0) -> anthropic.Anthropic:
        return anthropic.Anthropic(api_key=key, base_url=fake.base_url, max_retries=0, timeout=timeout)

    def complete(self, client: anthropic.Anthropic, model: str) -> Outcome:
        r = client.messages.create(model=model, max_tokens=64, messages=self.messages)
        return Outcome(r.content[0].text, r.stop_reason, r.usage.input_tokens, r.usage.output_tokens, r.model)

    def stream(self, client: anthropic.Anthropic, model: str, on_piece: Callable[[str], None]) -> Outcome:
        with client.messages.stream(model=model, max_tokens=64, messages=self.messages) as stream:
            for piece in stream.text_stream:
                on_piece(piece)
            m = stream.get_final_message()
        return Outcome(m.content[0].text, m.stop_reason, m.usage.input_tokens, m.usage.output_tokens, m.model)

    def read_one_then_close(self, client: anthropic.Anthropic, model: str) -> None:
        stream = client.messages.create(model=model, max_tokens=64, messages=self.messages, stream=True)
        next(event for event in stream if event.type == "content_block_delta")
        stream.close()


class GeminiDriver(OpenAIDriver):
    fake_class = FakeGemini
    # google-genai has no class per status: 4xx raise ClientError, 5xx ServerError.
    rate_limit_error = auth_error = genai_errors.ClientError
    server_error = genai_errors.ServerError
    # google-genai raises httpx2's own exceptions for transport failures.
    timeout_error, reset_error = httpx2.ReadTimeout, httpx2.ReadError
    finish_reasons = {"stop": "STOP", "length": "MAX_TOKENS"}
    auth_header = ("x-goog-api-key", KEY)
    overloaded_status, stream_error, overloaded_kind = 503, genai_errors.ServerError, "UNAVAILABLE"  # by its `code`

    def error_kind(self, raised: Exception) -> str:
        return raised.status

    def client(self, fake: FakeServer, key: str = KEY, timeout: float = 5.0) -> genai.Client:
        options = genai_types.HttpOptions(
            base_url=fake.url,
            api_version="v1beta",
            timeout=int(timeout * 1000),  # milliseconds
            retry_options=genai_types.HttpRetryOptions(attempts=1),
        )
        return genai.Client(api_key=key, http_options=options)

    def complete(self, client: genai.Client, model: str) -> Outcome:
        r = client.models.generate_content(model=model, contents=PROMPT)
        usage = r.usage_metadata
        return Outcome(r.text, r.candidates[0].finish_reason.value, usage.prompt_token_count,
                       usage.candidates_token_count, r.model_version)

    def stream(self, client: genai.Client, model: str, on_piece: Callable[[str], None]) -> Outcome:
        for chunk in client.models.generate_content_stream(model=model, contents=PROMPT):
            on_piece(chunk.text)
        usage = chunk.usage_metadata
        return Outcome("", chunk.candidates[0].finish_reason.value, usage.prompt_token_count,
                       usage.candidates_token_count, chunk.model_version)

    def read_one_then_close(self, client: genai.Client, model: str) -> None:
        chunks = client.models.generate_content_stream(model=model, contents=PROMPT)
        next(chunks)
        chunks.close()

    def models(self, client: genai.Client) -> list[str]:
        return [model.name.removeprefix("models/") for model in client.models.list()]


DRIVERS = {"openai": OpenAIDriver(), "anthropic": AnthropicDriver(), "gemini": GeminiDriver()}


@pytest.fixture(params=list(DRIVERS))
def vendor(request):
    """(driver, running fake) for each protocol."""
    driver = DRIVERS[request.param]
    with driver.fake_class(api_key=KEY) as fake:
        yield driver, fake


def test_complete(vendor):
    driver, fake = vendor
    client = driver.client(fake)
    got = driver.complete(client, "model-a")
    assert got == Outcome("Hello from the fake.", driver.finish_reasons["stop"], 11, 4, "model-a")
    fake.enqueue(Reply(text="Other", model="served-model", prompt_tokens=3, completion_tokens=7))
    expected = Outcome("Other", driver.finish_reasons["stop"], 3, 7, "served-model")
    assert driver.complete(client, "model-a") == expected
    request = fake.requests[0]
    assert request.method == "POST" and PROMPT in json.dumps(request.json)
    name, value = driver.auth_header
    assert request.headers[name] == value


def test_stream(vendor):
    driver, fake = vendor
    fake.enqueue(Reply(finish_reason="length"))
    pieces = []
    got = driver.stream(driver.client(fake), "model-a", pieces.append)
    assert pieces == PIECES
    assert (got.finish_reason, got.prompt_tokens, got.completion_tokens, got.model) == (
        driver.finish_reasons["length"], 11, 4, "model-a")
    assert fake.wait_until(lambda: fake.completed_streams == 1, 2) and fake.disconnects == 0


def test_chunks_arrive_paced_and_unbuffered(vendor):
    driver, fake = vendor
    fake.enqueue(Reply(chunks=["a", "b", "c"], first_byte_delay=0.2, chunk_delay=0.15))
    start, arrivals = time.monotonic(), []
    driver.stream(driver.client(fake), "model-a", lambda piece: arrivals.append(time.monotonic() - start))
    assert arrivals[0] >= 0.2
    assert all(0.12 <= later - earlier < 0.5 for earlier, later in zip(arrivals, arrivals[1:]))


def test_models_list_includes_scripted_models(vendor):
    driver, fake = vendor
    fake.set_model_reply("scripted-model", Reply())
    listed = driver.models(driver.client(fake))
    assert set(fake.default_models) < set(listed) and "scripted-model" in listed


def test_rate_limit_carries_retry_after(vendor):
    driver, fake = vendor
    fake.enqueue(Reply(status=429, retry_after=3, error_message="slow down"))
    with pytest.raises(driver.rate_limit_error, match="slow down") as caught:
        driver.complete(driver.client(fake), "model-a")
    assert caught.value.response.status_code == 429
    assert caught.value.response.headers["retry-after"] == "3"


def test_server_error(vendor):
    driver, fake = vendor
    fake.set_model_reply("broken", Reply(status=500))
    client = driver.client(fake)
    for _ in range(2):  # sticky: every request for the model fails
        with pytest.raises(driver.server_error):
            driver.complete(client, "broken")
    assert driver.complete(client, "fine").text == "Hello from the fake."


def test_wrong_api_key_is_refused(vendor):
    driver, fake = vendor
    with pytest.raises(driver.auth_error):
        driver.complete(driver.client(fake, key="wrong"), "model-a")
    assert len(fake.requests) == 1


def test_hang_triggers_client_timeout(vendor):
    driver, fake = vendor
    fake.enqueue(Reply(hang=10))
    start = time.monotonic()
    with pytest.raises(driver.timeout_error):
        driver.complete(driver.client(fake, timeout=0.3), "model-a")
    assert time.monotonic() - start < 2


def test_reset_mid_stream(vendor):
    driver, fake = vendor
    fake.enqueue(Reply(reset_after=2, chunk_delay=0.02))
    pieces = []
    with pytest.raises(driver.reset_error):
        driver.stream(driver.client(fake), "model-a", pieces.append)
    assert pieces == PIECES[:2]


def test_a_reset_comes_after_every_byte_written_before_it():
    """An abortive close discards what the kernel has not sent yet (Nagle's algorithm holds small
    chunks, a full receive window large ones), so the fake waits until the peer has it all."""
    written = 4_000_000  # more than fits in a socket's buffers while the client reads nothing
    with FakeOpenAI() as fake:
        fake.enqueue(Reply(chunks=["x" * written, "never sent"], reset_after=1))
        body = json.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": PROMPT}]})
        host, port = fake.url.removeprefix("http://").split(":")
        received = b""
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.settimeout(5)
            sock.connect((host, int(port)))
            sock.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(body)}\r\n\r\n{body}".encode())
            time.sleep(0.5)  # the fake has written what its buffers take and is about to reset
            with pytest.raises(ConnectionResetError):
                while chunk := sock.recv(1 << 16):
                    received += chunk
    assert b"x" * written in received and b"never sent" not in received


def test_an_error_event_inside_a_started_stream(vendor):
    driver, fake = vendor
    fake.enqueue(Reply(error_after=2, error_status=driver.overloaded_status, error_message="Overloaded"))
    pieces = []
    with pytest.raises(driver.stream_error, match="Overloaded") as caught:
        driver.stream(driver.client(fake), "model-a", pieces.append)
    assert pieces == PIECES[:2]
    assert driver.error_kind(caught.value) == driver.overloaded_kind


def test_early_close_is_detected(vendor):
    driver, fake = vendor
    fake.enqueue(Reply(chunks=["x"] * 40, chunk_delay=0.05))
    driver.read_one_then_close(driver.client(fake), "model-a")
    assert fake.wait_for_disconnect(2)
    assert fake.completed_streams == 0


def test_queue_is_fifo_then_default():
    with FakeOpenAI() as fake:
        fake.enqueue(Reply(text="first"), Reply(text="second"))
        client = DRIVERS["openai"].client(fake)
        texts = [DRIVERS["openai"].complete(client, "m").text for _ in range(3)]
    assert texts == ["first", "second", "Hello from the fake."]


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_tool_use(stream):
    tool = {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}}
    arguments = {"city": "Paris", "days": [1, 2]}
    with FakeAnthropic() as fake:
        fake.enqueue(Reply(tool_calls=[{"arguments": arguments}]))
        client = AnthropicDriver().client(fake)
        kwargs = dict(model="claude-x", max_tokens=64, messages=[{"role": "user", "content": PROMPT}], tools=[tool])
        if stream:
            with client.messages.stream(**kwargs) as events:
                deltas = [e.delta.type for e in events if e.type == "content_block_delta"]
                message = events.get_final_message()
            assert set(deltas) == {"input_json_delta"} and len(deltas) > 1
        else:
            message = client.messages.create(**kwargs)
    block = message.content[0]
    assert (block.type, block.name, block.input) == ("tool_use", "get_weather", arguments)
    assert message.stop_reason == "tool_use"


def test_stop_ends_hanging_handlers_and_frees_the_port():
    fake = FakeGemini().start()
    port = int(fake.url.rsplit(":", 1)[1])
    fake.enqueue(Reply(hang=30))
    with socket.create_connection(("127.0.0.1", port), timeout=2) as hanging:
        hanging.sendall(b"POST /v1beta/models/m:generateContent HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        idle = http.client.HTTPConnection("127.0.0.1", port, timeout=2)  # kept alive after one answer
        idle.request("GET", "/v1beta/models")
        idle.getresponse().read()
        assert fake.wait_until(lambda: len(fake.requests) == 2, 2)
        start = time.monotonic()
        fake.stop()
        assert time.monotonic() - start < 1
        assert hanging.recv(1) == b"" and idle.sock.recv(1) == b""
        idle.close()
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))


def test_cli_serves_echo_until_interrupted():
    command = [sys.executable, "-m", "tests.fakes", "--openai", "0"]
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as proc:
        try:
            name, base_url = proc.stdout.readline().split(": ")
            body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "ping"}]}).encode()
            headers = {"Content-Type": "application/json"}
            request = urllib.request.Request(base_url.strip() + "/chat/completions", body, headers)
            with urllib.request.urlopen(request, timeout=5) as response:
                answer = json.load(response)
            assert name == "openai" and answer["choices"][0]["message"]["content"] == "You said: ping"
        finally:
            proc.send_signal(signal.SIGINT)  # as Ctrl-C
            assert proc.wait(timeout=5) == 0


def test_openai_chat_refuses_what_the_real_api_refuses():
    with FakeOpenAI() as fake:
        client = openai.OpenAI(base_url=fake.base_url, api_key=KEY, max_retries=0)
        with pytest.raises(openai.BadRequestError, match="Unrecognized request argument supplied: include"):
            client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": PROMPT}],
                                           extra_body={"include": []})
        call = {"id": "call_" + "x" * 40, "type": "function", "function": {"name": "f", "arguments": "{}"}}
        messages = [{"role": "user", "content": PROMPT}, {"role": "assistant", "content": None, "tool_calls": [call]},
                    {"role": "tool", "tool_call_id": call["id"], "content": "ok"}]
        with pytest.raises(openai.BadRequestError, match="maximum length 40") as error:
            client.chat.completions.create(model="gpt-4o", messages=messages)
        assert error.value.code == "string_above_max_length" and error.value.param == "messages[1].tool_calls[0].id"


def test_openai_responses_parse_in_the_sdk_whole_and_streamed():
    with FakeOpenAI() as fake:
        client = openai.OpenAI(base_url=fake.base_url, api_key=KEY, max_retries=0)
        fake.enqueue(Reply(text="Hello.", reasoning="Hmm."), Reply(chunks=PIECES, reasoning="Hmm."))
        whole = client.responses.create(model="gpt-5", input=PROMPT, include=["reasoning.encrypted_content"],
                                        tools=[{"type": "web_search"}])
        assert [item.type for item in whole.output] == ["reasoning", "web_search_call", "message"]
        assert whole.output[0].encrypted_content and whole.output_text == "Hello."
        with client.responses.stream(model="gpt-5", input=PROMPT) as stream:
            kinds = [event.type for event in stream]
            final = stream.get_final_response()
        assert final.output_text == "".join(PIECES) and kinds[-1] == "response.completed"
        assert "response.reasoning_summary_text.delta" in kinds
        with pytest.raises(openai.BadRequestError, match="Unknown parameter: 'nonsense'") as error:
            client.responses.create(model="gpt-5", input=PROMPT, extra_body={"nonsense": 1})
        assert error.value.code == "unknown_parameter"
        with pytest.raises(openai.BadRequestError, match="Items are not persisted"):
            client.responses.create(model="gpt-5", store=False, input=[
                {"type": "reasoning", "id": "rs_1", "summary": []}, {"role": "user", "content": PROMPT}])
