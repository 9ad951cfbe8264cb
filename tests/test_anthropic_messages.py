"""Anthropic's Messages API driven by the official anthropic SDK through a real Gunicorn + gevent
server, for a Claude model (the body passed to Anthropic as it came) and for an OpenAI and a Gemini
model (translated): create, the stream helpers, a two-step tool loop, thinking, count_tokens, the
SDK's typed errors, and the exact event order of the stream on the wire."""
from __future__ import annotations

import json

import anthropic
import pytest
import requests

from tests.conftest import NO_HEALTH_MEMORY, LiveServer, base_config, provider_config
from tests.fakes.anthropic_api import FakeAnthropic, counted_tokens
from tests.fakes.gemini_api import FakeGemini
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.server import Reply

VENDORS = {"anthropic": "claude-sonnet-5-5", "openai": "gpt-4o-mini", "gemini": "gemini-2.5-flash"}
TOOLS = [{"name": "get_weather", "description": "Weather in a city",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
         {"name": "get_time", "description": "Time in a zone",
          "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}}}}]
CALLS = [{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "get_time", "arguments": {"tz": "CET"}}]
QUESTION = [{"role": "user", "content": "Weather and time in Paris?"}]


@pytest.fixture(scope="module")
def fakes():
    with FakeOpenAI() as openai_fake, FakeAnthropic() as anthropic_fake, FakeGemini() as gemini_fake:
        yield {"openai": openai_fake, "anthropic": anthropic_fake, "gemini": gemini_fake}


@pytest.fixture(scope="module")
def server(fakes, tmp_path_factory):
    config = base_config(tmp_path_factory.mktemp("anthropic_api"),
                         **NO_HEALTH_MEMORY, LOG_LEVEL="INFO", RETRY_ATTEMPTS=0,
                         MODEL_ALIASES=["smart=anthropic/claude-sonnet-5-5|openai/gpt-4o"], **provider_config(**fakes))
    live = LiveServer(config)
    yield live
    live.stop()


@pytest.fixture(params=["", "/anthropic"], ids=["root", "prefixed"])
def client(request, server, fakes):
    for fake in fakes.values():
        fake.reset()
        fake.default_reply = Reply()
    return anthropic.Anthropic(base_url=server.url + request.param, api_key="unused", max_retries=0)


@pytest.mark.parametrize("vendor", VENDORS)
def test_create_answers_in_anthropic_shape(client, fakes, vendor):
    fakes[vendor].enqueue(Reply(text="Hello there.", prompt_tokens=7))
    user = {} if vendor == "gemini" else {"metadata": {"user_id": "u-1"}}  # Gemini has no user field
    message = client.messages.create(model=VENDORS[vendor], max_tokens=100, system="Be brief.", messages=QUESTION,
                                     stop_sequences=["END"], **user)
    assert message.type == "message" and message.role == "assistant"
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == "Hello there."
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == 7 and message.usage.output_tokens > 0
    sent = fakes[vendor].requests[-1].json
    if vendor == "anthropic":  # as it came, but for the SDK's own framing
        assert {k: sent[k] for k in ("system", "messages", "stop_sequences", "metadata", "max_tokens")} == {
            "system": "Be brief.", "messages": QUESTION, "stop_sequences": ["END"], "metadata": {"user_id": "u-1"},
            "max_tokens": 100}
    elif vendor == "openai":
        assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
        assert (sent["stop"], sent["user"]) == (["END"], "u-1")
    else:
        assert sent["systemInstruction"]["parts"][0]["text"] == "Be brief."


@pytest.mark.parametrize("vendor", VENDORS)
def test_stream_helpers_work_unchanged(client, fakes, vendor):
    fakes[vendor].enqueue(Reply(chunks=["Hel", "lo ", "there."]))
    with client.messages.stream(model=VENDORS[vendor], max_tokens=100, messages=QUESTION) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == "Hello there."
    assert final.content[0].text == "Hello there." and final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("vendor", VENDORS)
def test_a_two_step_tool_loop(client, fakes, vendor, stream):
    fakes[vendor].enqueue(Reply(tool_calls=CALLS), Reply(text="Sunny in Paris at noon."))
    messages: list = list(QUESTION)
    first = ask(client, stream, model=VENDORS[vendor], max_tokens=200, messages=messages, tools=TOOLS)
    uses = [block for block in first.content if block.type == "tool_use"]
    assert first.stop_reason == "tool_use"
    assert [(use.name, use.input) for use in uses] == [(call["name"], call["arguments"]) for call in CALLS]
    messages.append({"role": "assistant", "content": [block.model_dump() for block in first.content]})
    messages.append({"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": uses[0].id, "content": '{"sky": "sunny"}'},
        {"type": "tool_result", "tool_use_id": uses[1].id, "content": [{"type": "text", "text": "12:00"}]}]})
    second = ask(client, stream, model=VENDORS[vendor], max_tokens=200, messages=messages, tools=TOOLS)
    assert second.content[0].text == "Sunny in Paris at noon."
    sent = fakes[vendor].requests[-1].json
    if vendor == "openai":
        assert [m.get("tool_call_id") for m in sent["messages"][2:]] == [use.id for use in uses]
    elif vendor == "gemini":
        assert [p["functionResponse"]["name"] for p in sent["contents"][2]["parts"]] == ["get_weather", "get_time"]


def ask(client, stream: bool, **params):
    """The whole message, asked for at once or put together by the SDK's stream helper."""
    if not stream:
        return client.messages.create(**params)
    with client.messages.stream(**params) as events:
        return events.get_final_message()


@pytest.mark.parametrize("vendor", VENDORS)
def test_thinking_blocks_whole_and_streamed(client, fakes, vendor):
    fakes[vendor].default_reply = Reply(text="42", reasoning="Six times seven.")
    params = {"model": VENDORS[vendor], "max_tokens": 4000, "messages": QUESTION,
              "thinking": {"type": "enabled", "budget_tokens": 2048}}
    message = client.messages.create(**params)
    assert [block.type for block in message.content] == ["thinking", "text"]
    assert (message.content[0].thinking, message.content[1].text) == ("Six times seven.", "42")
    with client.messages.stream(**params) as stream:
        thoughts = [event.thinking for event in stream if event.type == "thinking"]
        final = stream.get_final_message()
    assert "".join(thoughts) == "Six times seven." and final.content[1].text == "42"
    if vendor == "anthropic":  # Claude's signature comes back, so the thinking can be sent back in a tool loop
        assert final.content[0].signature.startswith("sig_")


def test_claude_receives_what_this_server_does_not_know(client, fakes):
    """Pass-through: fields, blocks and beta headers the front door never heard of reach Anthropic."""
    message = client.messages.create(
        model="claude-sonnet-5-5", max_tokens=50, extra_body={"top_k": 5}, service_tier="auto",
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user",
                   "content": [{"type": "text", "text": "Hi", "cache_control": {"type": "ephemeral"}}]}],
        extra_headers={"anthropic-beta": "some-beta-2025"})
    assert message.content[0].text == "Hello from the fake."
    request = fakes["anthropic"].requests[-1]
    assert (request.json["top_k"], request.json["service_tier"]) == (5, "auto")
    assert request.json["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert request.headers["anthropic-beta"] == "some-beta-2025"


def test_a_field_only_claude_takes_is_a_400_naming_it_for_gemini(client, fakes):
    with pytest.raises(anthropic.BadRequestError, match="top_k"):
        client.messages.create(model="gemini-2.5-flash", max_tokens=50, extra_body={"top_k": 5}, messages=QUESTION)
    with pytest.raises(anthropic.BadRequestError, match="document"):
        client.messages.create(model="gpt-4o-mini", max_tokens=50, messages=[{"role": "user", "content": [
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}]}])
    assert not fakes["gemini"].requests and not fakes["openai"].requests


def test_an_alias_falls_back_from_claude_to_another_vendor(client, fakes):
    fakes["anthropic"].set_model_reply("claude-sonnet-5-5", Reply(status=529))
    fakes["anthropic"].set_model_reply("claude-haiku-5-5", Reply(status=529))
    fakes["openai"].enqueue(Reply(text="From OpenAI."))
    response = client.messages.with_raw_response.create(model="smart", max_tokens=50, messages=QUESTION)
    assert response.parse().content[0].text == "From OpenAI."
    assert response.headers["X-Provider"] == "openai"


@pytest.mark.parametrize("vendor", VENDORS)
def test_count_tokens(client, fakes, vendor):
    body = {"model": VENDORS[vendor], "messages": QUESTION, "system": "Be brief.", "tools": TOOLS}
    response = client.messages.with_raw_response.count_tokens(**body)
    counted = response.parse()
    if vendor == "anthropic":
        assert counted.input_tokens == counted_tokens({**body, "model": None})
        assert "X-Token-Count" not in response.headers
    else:
        assert counted.input_tokens > 0 and counted.model_extra["estimated"] is True
        assert response.headers["X-Token-Count"] == "estimate"


@pytest.mark.parametrize("status, error", [(429, anthropic.RateLimitError), (400, anthropic.BadRequestError),
                                           (529, anthropic.InternalServerError)])
@pytest.mark.parametrize("vendor", ["anthropic", "openai"])
def test_upstream_failures_are_the_sdks_typed_errors(client, fakes, vendor, status, error):
    fakes[vendor].default_reply = Reply(status=status, error_message="upstream said no")
    with pytest.raises(error) as raised:
        client.messages.create(model=VENDORS[vendor], max_tokens=50, messages=QUESTION)
    assert raised.value.body["type"] == "error" and "upstream said no" in raised.value.body["error"]["message"]


def test_an_overload_inside_claudes_stream_before_the_answer_falls_back_like_a_529(server, client, fakes):
    """Anthropic reports an overload after `message_start` with an `error` event in a 200 stream: before
    the answer began, the alias moves on to its next route and the client sees one clean message."""
    overloaded = Reply(chunks=["never"], error_after=0, error_status=529, error_message="Overloaded")
    fakes["anthropic"].set_model_reply("claude-sonnet-5-5", overloaded)
    fakes["anthropic"].set_model_reply("claude-haiku-5-5", overloaded)
    fakes["openai"].enqueue(Reply(chunks=["From ", "OpenAI."]), Reply(chunks=["Again ", "OpenAI."]))
    with client.messages.stream(model="smart", max_tokens=50, messages=QUESTION) as stream:
        text = "".join(stream.text_stream)
    events = events_on_the_wire(server.url, {"model": "smart", "max_tokens": 50, "messages": QUESTION})

    assert text == "From OpenAI." and len(fakes["openai"].requests) == 2
    assert [name for name, _ in events].count("message_start") == 1 and events[-1][0] == "message_stop"


@pytest.mark.parametrize("vendor, status, kind", [
    ("anthropic", 529, "overloaded_error"), ("anthropic", 500, "api_error"), ("gemini", 503, "overloaded_error"),
    ("openai", 500, "api_error")])
def test_an_upstream_failure_after_the_answer_began_is_anthropics_error_event(client, fakes, vendor, status, kind):
    """Mid-answer, the words so far reach the client, then Anthropic's `error` event, which the SDK raises:
    `overloaded_error` when the provider said it was overloaded (clients such as Claude Code retry it), else
    `api_error` (OpenAI's error inside a stream carries no status)."""
    fakes[vendor].enqueue(Reply(chunks=["Half ", "never"], error_after=1, error_status=status, error_message="Busy"))
    pieces = []
    with pytest.raises(anthropic.APIStatusError) as raised:
        with client.messages.stream(model=VENDORS[vendor], max_tokens=50, messages=QUESTION) as stream:
            pieces.extend(stream.text_stream)
    assert pieces == ["Half "]
    assert raised.value.body["type"] == "error" and "Busy" in raised.value.body["error"]["message"]
    assert raised.value.body["error"]["type"] == kind


def test_our_own_refusals_are_the_sdks_typed_errors(client):
    with pytest.raises(anthropic.NotFoundError) as raised:
        client.messages.create(model="no-such-model", max_tokens=50, messages=QUESTION)
    assert raised.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError, match="max_tokens"):
        client.post("/v1/messages", cast_to=object, body={"model": "claude-sonnet-5-5", "messages": QUESTION})
    with pytest.raises(anthropic.NotFoundError):
        client.messages.count_tokens(model="no-such-model", messages=QUESTION)


def events_on_the_wire(url: str, body: dict) -> list[tuple[str, dict]]:
    """(event name, data) of each event of a streamed answer, read off the wire."""
    response = requests.post(url + "/v1/messages", json={**body, "stream": True}, timeout=10)
    assert response.headers["Content-Type"].startswith("text/event-stream")
    events = []
    for chunk in response.text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in chunk.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
        assert events[-1][0] == events[-1][1]["type"]
    return events


@pytest.mark.parametrize("vendor", VENDORS)
def test_the_event_order_on_the_wire(server, fakes, vendor, client):
    """Every event named by its `event:` line, in Anthropic's order, Claude's own and translated alike."""
    fakes[vendor].enqueue(Reply(chunks=["Let me look. "], tool_calls=CALLS[:1]))
    events = events_on_the_wire(server.url, {"model": VENDORS[vendor], "max_tokens": 100, "messages": QUESTION,
                                             "tools": TOOLS})
    names = [name for name, _ in events if name != "ping"]
    runs = [name for i, name in enumerate(names) if i == 0 or name != names[i - 1]]  # a run of deltas as one
    assert runs == ["message_start", "content_block_start", "content_block_delta", "content_block_stop",
                    "content_block_start", "content_block_delta", "content_block_stop", "message_delta",
                    "message_stop"]
    blocks = [data["content_block"]["type"] for name, data in events if name == "content_block_start"]
    deltas = [data["delta"]["type"] for name, data in events if name == "content_block_delta"]
    assert blocks == ["text", "tool_use"] and set(deltas) == {"text_delta", "input_json_delta"}
    assert [data["index"] for name, data in events if name == "content_block_start"] == [0, 1]
    final = events[-2][1]
    assert final["delta"]["stop_reason"] == "tool_use" and final["usage"]["output_tokens"] > 0
