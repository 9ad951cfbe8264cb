"""OpenAI's Responses API driven by the official openai SDK through a real Gunicorn + gevent server,
against each vendor's fake: create, the stream helpers, a function-tool loop, structured output,
reasoning, the SDK's typed errors, and the event order on the wire."""
from __future__ import annotations

import json

import openai
import pytest
import requests

from tests.conftest import NO_HEALTH_MEMORY, LiveServer, base_config, provider_config
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.gemini_api import FakeGemini
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.server import Reply

VENDORS = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-5-5", "gemini": "gemini-2.5-flash"}
TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather in a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
         {"type": "function", "name": "get_time", "description": "Time in a zone",
          "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}}]
CALLS = [{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "get_time", "arguments": {"tz": "CET"}}]


@pytest.fixture(scope="module")
def fakes():
    with FakeOpenAI() as openai_fake, FakeAnthropic() as anthropic_fake, FakeGemini() as gemini_fake:
        yield {"openai": openai_fake, "anthropic": anthropic_fake, "gemini": gemini_fake}


@pytest.fixture(scope="module")
def server(fakes, tmp_path_factory):
    config = base_config(tmp_path_factory.mktemp("responses_api"),
                         **NO_HEALTH_MEMORY, LOG_LEVEL="INFO", RETRY_ATTEMPTS=0,
                         **provider_config(**fakes))
    live = LiveServer(config)
    yield live
    live.stop()


@pytest.fixture
def client(server, fakes):
    for fake in fakes.values():
        fake.reset()
        fake.default_reply = Reply()
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


@pytest.mark.parametrize("vendor", VENDORS)
def test_create_with_a_string_and_instructions(client, fakes, vendor):
    fakes[vendor].enqueue(Reply(text="Hello there.", prompt_tokens=7))
    response = client.responses.create(model=VENDORS[vendor], input="Hi", instructions="Be brief.",
                                       max_output_tokens=100)
    assert response.object == "response" and response.status == "completed"
    assert response.output_text == "Hello there."
    assert response.usage.input_tokens == 7 and response.usage.total_tokens > 7
    sent = fakes[vendor].requests[-1].json
    if vendor == "openai":  # OpenAI's own Responses API, the body as it came (the chain is ours)
        assert fakes[vendor].requests[-1].path == "/v1/responses"
        assert sent == {"model": "gpt-4o-mini", "input": "Hi", "instructions": "Be brief.", "max_output_tokens": 100,
                        "store": False}
    elif vendor == "anthropic":
        assert (sent["system"], sent["max_tokens"]) == ("Be brief.", 100)
    else:
        assert sent["systemInstruction"]["parts"][0]["text"] == "Be brief."


@pytest.mark.parametrize("vendor", VENDORS)
def test_stream_helpers_work_unchanged(client, fakes, vendor):
    fakes[vendor].enqueue(Reply(chunks=["Hel", "lo ", "there."]))
    with client.responses.stream(model=VENDORS[vendor], input="Hi") as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert deltas == ["Hel", "lo ", "there."]
    assert final.output_text == "Hello there." and final.status == "completed"
    assert final.usage.output_tokens > 0


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("vendor", VENDORS)
def test_a_function_tool_loop(client, fakes, vendor, stream):
    fakes[vendor].enqueue(Reply(tool_calls=CALLS), Reply(text="Sunny in Paris at noon."))
    items: list = [{"role": "user", "content": "Weather and time in Paris?"}]
    first = ask(client, stream, model=VENDORS[vendor], input=items, tools=TOOLS)
    calls = [item for item in first.output if item.type == "function_call"]
    assert [(call.name, json.loads(call.arguments)) for call in calls] == [(c["name"], c["arguments"]) for c in CALLS]
    items += [call.model_dump() for call in calls]
    items += [{"type": "function_call_output", "call_id": calls[0].call_id, "output": '{"sky": "sunny"}'},
              {"type": "function_call_output", "call_id": calls[1].call_id, "output": "12:00"}]
    second = ask(client, stream, model=VENDORS[vendor], input=items, tools=TOOLS)
    assert second.output_text == "Sunny in Paris at noon."
    sent = fakes[vendor].requests[-1].json
    if vendor == "openai":
        assert [i["call_id"] for i in sent["input"] if i.get("type") == "function_call_output"] == \
            [call.call_id for call in calls]
    elif vendor == "anthropic":
        assert [b["tool_use_id"] for b in sent["messages"][2]["content"]] == [call.call_id for call in calls]


def ask(client, stream: bool, **params):
    if not stream:
        return client.responses.create(**params)
    with client.responses.stream(**params) as events:
        return events.get_final_response()


@pytest.mark.parametrize("vendor", VENDORS)
def test_structured_output_and_reasoning(client, fakes, vendor):
    fakes[vendor].default_reply = Reply(text='{"city": "Paris"}', reasoning="Think of Paris.")
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
              "additionalProperties": False}
    response = client.responses.create(
        model=VENDORS[vendor], input="Which city?", max_output_tokens=4000, reasoning={"effort": "low"},
        text={"format": {"type": "json_schema", "name": "city", "schema": schema, "strict": True}})
    assert json.loads(response.output_text) == {"city": "Paris"}
    assert [item.type for item in response.output] == ["reasoning", "message"]
    assert response.output[0].summary[0].text == "Think of Paris."


def test_a_parameter_a_vendor_cannot_take_is_a_400_naming_it(client, fakes):
    with pytest.raises(openai.BadRequestError, match="web_search"):
        client.responses.create(model="claude-sonnet-5-5", input="Hi", tools=[{"type": "web_search"}])
    with pytest.raises(openai.BadRequestError, match="truncation"):
        client.responses.create(model="gemini-2.5-flash", input="Hi", truncation="auto")
    assert not fakes["anthropic"].requests and not fakes["gemini"].requests


def test_errors_are_the_sdks_typed_errors(client, fakes):
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="no-such-model", input="Hi")
    fakes["openai"].default_reply = Reply(status=429, retry_after=1)
    with pytest.raises(openai.RateLimitError):
        client.responses.create(model="gpt-4o-mini", input="Hi")


@pytest.mark.parametrize("vendor", VENDORS)
def test_the_event_order_on_the_wire(server, fakes, vendor, client):
    fakes[vendor].enqueue(Reply(chunks=["Let me look. "], tool_calls=CALLS[:1]))
    response = requests.post(server.url + "/v1/responses", timeout=10, json={
        "model": VENDORS[vendor], "input": "Weather in Paris?", "tools": TOOLS, "stream": True})
    events = []
    for chunk in response.text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in chunk.splitlines())
        events.append(json.loads(lines["data"]))
        assert lines["event"] == events[-1]["type"]
    names = [event["type"] for event in events]
    runs = [name for i, name in enumerate(names) if i == 0 or name != names[i - 1]]
    assert runs == ["response.created", "response.in_progress",
                    "response.output_item.added", "response.content_part.added", "response.output_text.delta",
                    "response.output_text.done", "response.content_part.done", "response.output_item.done",
                    "response.output_item.added", "response.function_call_arguments.delta",
                    "response.function_call_arguments.done", "response.output_item.done", "response.completed"]
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    assert len({event["response"]["id"] for event in events if "response" in event}) == 1
    assert [item["type"] for item in events[-1]["response"]["output"]] == ["message", "function_call"]
