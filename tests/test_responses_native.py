"""The Responses API native to OpenAI, through a real Gunicorn + gevent server with the openai SDK:
an OpenAI model receives the body as it came at the fake's `/v1/responses` (built-in tools,
`include`, `truncation`, `text.verbosity`, encrypted reasoning sent back), while the chain stays
this server's (`store: false` upstream, `previous_response_id` resolved here); the same requests for
Claude and Gemini are translated, their Responses-only fields honoured or left out where that is
what they mean; `item_reference` resolved from stored items; streamed `response.incomplete`."""
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

OTHERS = {"anthropic": "claude-sonnet-5-5", "gemini": "gemini-2.5-flash"}
VENDORS = {"openai": "gpt-4o-mini", **OTHERS}
WEATHER = {"type": "function", "name": "get_weather", "description": "Weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture(scope="module")
def fakes():
    with FakeOpenAI() as openai_fake, FakeAnthropic() as anthropic_fake, FakeGemini() as gemini_fake:
        yield {"openai": openai_fake, "anthropic": anthropic_fake, "gemini": gemini_fake}


@pytest.fixture(scope="module")
def server(fakes, tmp_path_factory):
    config = base_config(tmp_path_factory.mktemp("responses_native"), **NO_HEALTH_MEMORY, LOG_LEVEL="INFO",
                         RETRY_ATTEMPTS=0,
                         MODEL_ALIASES=["smart=openai/gpt-4o-mini|anthropic/claude-sonnet-5-5"],
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


def sent(fake) -> dict:
    return fake.requests[-1].json


def events_of(server, **body) -> list[dict]:
    response = requests.post(server.url + "/v1/responses", json={**body, "stream": True}, timeout=10)
    assert response.status_code == 200, response.text
    return [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]


def test_an_openai_model_gets_the_body_as_it_came(client, fakes):
    fakes["openai"].enqueue(Reply(text="Rain in Paris.", prompt_tokens=20, cached_tokens=12))
    response = client.responses.create(
        model="gpt-4o-mini", input="Weather in Paris?", tools=[{"type": "web_search"}, WEATHER], include=[],
        truncation="auto", text={"verbosity": "low"}, service_tier="flex", max_tool_calls=3)
    assert fakes["openai"].requests[-1].path == "/v1/responses"
    assert sent(fakes["openai"]) == {
        "model": "gpt-4o-mini", "input": "Weather in Paris?", "tools": [{"type": "web_search"}, WEATHER],
        "include": [], "truncation": "auto", "text": {"verbosity": "low"}, "service_tier": "flex",
        "max_tool_calls": 3, "store": False}
    assert [item.type for item in response.output] == ["web_search_call", "message"]
    assert response.output_text == "Rain in Paris." and response.store is True
    assert response.usage.input_tokens_details.cached_tokens == 12
    assert client.responses.retrieve(response.id).output_text == "Rain in Paris."


def test_encrypted_reasoning_goes_back_on_the_next_turn(client, fakes):
    fakes["openai"].enqueue(Reply(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}],
                                  reasoning="Look it up."), Reply(text="Sunny."))
    first = client.responses.create(model="gpt-4o-mini", input="Weather in Paris?", tools=[WEATHER],
                                    include=["reasoning.encrypted_content"], reasoning={"effort": "low"})
    reasoning, call = first.output
    assert reasoning.type == "reasoning" and reasoning.encrypted_content
    assert first.usage.output_tokens_details.reasoning_tokens > 0
    second = client.responses.create(
        model="gpt-4o-mini", previous_response_id=first.id, tools=[WEATHER], include=["reasoning.encrypted_content"],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}])
    assert second.output_text == "Sunny." and second.previous_response_id == first.id
    upstream = sent(fakes["openai"])  # the fake refuses reasoning without its encrypted content, with store false
    assert "previous_response_id" not in upstream and upstream["store"] is False
    assert [item.get("type", "message") for item in upstream["input"]] == \
        ["message", "reasoning", "function_call", "function_call_output"]
    assert "id" not in upstream["input"][0]  # our id of the user's message stays ours
    assert upstream["input"][1]["encrypted_content"] == reasoning.encrypted_content


def test_reasoning_without_encrypted_content_is_not_replayed(client, fakes):
    fakes["openai"].enqueue(Reply(text="Hi.", reasoning="Greet."), Reply(text="Bye."))
    first = client.responses.create(model="gpt-4o-mini", input="Hi")
    client.responses.create(model="gpt-4o-mini", input="Bye", previous_response_id=first.id)
    assert [item.get("type", "message") for item in sent(fakes["openai"])["input"]] == ["message", "message", "message"]


def test_a_streamed_chain_is_kept_here(client, fakes, server):
    fakes["openai"].enqueue(Reply(chunks=["Hel", "lo."]), Reply(text="Again."))
    with client.responses.stream(model="gpt-4o-mini", input="Hi") as stream:
        first = stream.get_final_response()
    assert first.output_text == "Hello." and first.store is True
    assert client.responses.retrieve(first.id).output_text == "Hello."
    events = events_of(server, model="gpt-4o-mini", input="More", previous_response_id=first.id)
    assert events[-1]["type"] == "response.completed"
    assert {event["response"]["previous_response_id"] for event in events if "response" in event} == {first.id}
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    upstream = sent(fakes["openai"])
    assert [(i.get("role"), i.get("content")) for i in upstream["input"]][-1] == ("user", "More")
    assert len(upstream["input"]) == 3


@pytest.mark.parametrize("vendor", OTHERS)
def test_other_vendors_honour_what_the_agents_sdk_sends(client, fakes, vendor):
    fakes[vendor].enqueue(Reply(text="Hello."))
    response = client.responses.create(model=OTHERS[vendor], input="Hi", include=["reasoning.encrypted_content"],
                                       truncation="disabled", background=False, store=False,
                                       text={"format": {"type": "text"}})
    assert response.output_text == "Hello."
    body = json.dumps(sent(fakes[vendor]))
    assert "include" not in body and "truncation" not in body and "background" not in body


@pytest.mark.parametrize("vendor", OTHERS)
def test_an_empty_include_is_no_400(client, fakes, vendor):
    fakes[vendor].enqueue(Reply(text="Hello."))
    assert client.responses.create(model=OTHERS[vendor], input="Hi", include=[]).output_text == "Hello."


@pytest.mark.parametrize("vendor", OTHERS)
def test_what_other_vendors_cannot_do_is_a_400_naming_it(client, fakes, vendor):
    for params, name in [({"truncation": "auto"}, "truncation"), ({"include": ["message.output_text.logprobs"]},
                                                                   "include"),
                         ({"tools": [{"type": "web_search"}]}, "web_search"), ({"background": True}, "background"),
                         ({"text": {"verbosity": "low"}}, "verbosity")]:
        with pytest.raises(openai.BadRequestError, match=name):
            client.responses.create(model=OTHERS[vendor], input="Hi", **params)
    assert not fakes[vendor].requests


def test_an_alias_falls_back_to_the_translation(client, fakes):
    fakes["openai"].default_reply = Reply(status=500)
    fakes["anthropic"].enqueue(Reply(text="From Claude."))
    raw = client.responses.with_raw_response.create(model="smart", input="Hi", include=[])
    assert raw.headers["X-Provider"] == "anthropic" and raw.parse().output_text == "From Claude."
    assert fakes["openai"].requests[-1].path == "/v1/responses"


def test_what_only_openai_takes_skips_a_fallback_that_cannot(client, fakes):
    fakes["openai"].enqueue(Reply(text="Searched."))
    response = client.responses.create(model="smart", input="News?", tools=[{"type": "web_search"}])
    assert response.output_text == "Searched." and not fakes["anthropic"].requests


@pytest.mark.parametrize("vendor", VENDORS)
def test_an_item_reference_is_a_stored_item(client, fakes, vendor):
    fakes[vendor].enqueue(Reply(text="Paris is sunny."), Reply(text="Yes."))
    first = client.responses.create(model=VENDORS[vendor], input="Weather in Paris?")
    message = first.output[-1]
    client.responses.create(model=VENDORS[vendor], input=[
        {"type": "item_reference", "id": message.id}, {"role": "user", "content": "Sure?"}])
    upstream = json.dumps(sent(fakes[vendor]))
    assert "Paris is sunny." in upstream and "item_reference" not in upstream


def test_an_unknown_item_reference_is_a_400_naming_it(client, fakes):
    with pytest.raises(openai.BadRequestError, match="rs_nowhere") as error:
        client.responses.create(model="claude-sonnet-5-5", input=[{"type": "item_reference", "id": "rs_nowhere"},
                                                                  {"role": "user", "content": "Hi"}])
    assert error.value.body["param"] == "input.0.id"


def test_an_encrypted_reasoning_item_by_reference(client, fakes):
    fakes["openai"].enqueue(Reply(text="Hi.", reasoning="Greet."), Reply(text="Again."))
    first = client.responses.create(model="gpt-4o-mini", input="Hi", include=["reasoning.encrypted_content"])
    client.responses.create(model="gpt-4o-mini", input=[
        {"type": "item_reference", "id": first.output[0].id}, {"role": "user", "content": "Again"}])
    assert sent(fakes["openai"])["input"][0]["encrypted_content"] == first.output[0].encrypted_content


@pytest.mark.parametrize("vendor", VENDORS)
def test_a_stream_at_the_token_limit_ends_incomplete(server, client, fakes, vendor):
    fakes[vendor].enqueue(Reply(chunks=["Once", " upon"], finish_reason="length"))
    events = events_of(server, model=VENDORS[vendor], input="A story", max_output_tokens=2)
    last = events[-1]
    assert last["type"] == "response.incomplete"
    assert last["response"]["status"] == "incomplete"
    assert last["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert client.responses.retrieve(last["response"]["id"]).status == "incomplete"
