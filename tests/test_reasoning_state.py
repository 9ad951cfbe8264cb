"""Reasoning state that must survive a tool loop, through a real Gunicorn + gevent server, driven by
the official SDKs (openai for chat completions and Responses, anthropic for /v1/messages): Claude's
signed thinking blocks and Gemini 3's thought signatures go out where each API's clients keep them
and come back to the vendor on the next turn; a history without them still works; the parameters
every client sends (temperature, top_p, parallel_tool_calls) are honoured; usage counts reasoning
and Gemini's embeddings. The fakes refuse what the vendors refuse (a lost thinking block, a lost or
altered signature, an id outside Anthropic's pattern), so each second turn answering proves it."""
from __future__ import annotations

import json
import re

import anthropic
import openai
import pytest
import requests

from tests.conftest import NO_HEALTH_MEMORY, LiveServer, base_config, provider_config
from tests.fakes.anthropic_api import FakeAnthropic, signature_of
from tests.fakes.gemini_api import DUMMY_SIGNATURE, SIGNATURE, FakeGemini
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.server import Reply

CLAUDE, GEMINI_3 = "claude-sonnet-5-5", "gemini-3-flash"
THOUGHT = "The user wants the weather; call the tool."
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                          "required": ["city"]}}}]
RESPONSES_TOOLS = [{"type": "function", **TOOLS[0]["function"]}]
MESSAGES_TOOLS = [{"name": "get_weather", "description": "Weather in a city",
                   "input_schema": TOOLS[0]["function"]["parameters"]}]
CALL = [{"name": "get_weather", "arguments": {"city": "Paris"}}]
TWO_CALLS = [*CALL, {"name": "get_weather", "arguments": {"city": "Rome"}}]
QUESTION = [{"role": "user", "content": "Weather in Paris?"}]
SIGNED = {"type": "thinking", "thinking": THOUGHT, "signature": signature_of(THOUGHT)}
ID_RULE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")  # Anthropic's tool id pattern within OpenAI's 40 characters


@pytest.fixture(scope="module")
def fakes():
    with FakeOpenAI() as openai_fake, FakeAnthropic() as anthropic_fake, FakeGemini() as gemini_fake:
        yield {"openai": openai_fake, "anthropic": anthropic_fake, "gemini": gemini_fake}


@pytest.fixture(scope="module")
def server(fakes, tmp_path_factory):
    config = base_config(tmp_path_factory.mktemp("reasoning_state"), **NO_HEALTH_MEMORY, LOG_LEVEL="INFO",
                         RETRY_ATTEMPTS=0, GEMINI_EMBEDDING_MODELS="gemini-embedding-001", **provider_config(**fakes))
    config["GEMINI_MODEL_DEFAULT"] = GEMINI_3
    live = LiveServer(config)
    yield live
    live.stop()


@pytest.fixture
def client(server, fakes):
    for fake in fakes.values():
        fake.reset()
        fake.default_reply = Reply()
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


@pytest.fixture
def claude_client(server, fakes):
    return anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0)


def assistant_turn(completion) -> dict:
    """The assistant message as an agent keeps it for the next turn: the whole message, fields this
    server adds (thinking_blocks, extra_content) included, as the openai SDK's model_dump gives it."""
    return completion.choices[0].message.model_dump(exclude_none=True)


def streamed_turn(stream) -> dict:
    """The assistant message put together from a stream, keeping what LiteLLM-style clients keep:
    reasoning_content, whole thinking_blocks, tool call fragments with their extra_content."""
    message: dict = {"role": "assistant", "content": None}
    calls: dict[int, dict] = {}
    for chunk in stream:
        for choice in chunk.choices:
            extra = choice.delta.model_extra or {}
            message.setdefault("thinking_blocks", []).extend(extra.get("thinking_blocks") or [])
            for call in choice.delta.tool_calls or ():
                entry = calls.setdefault(call.index, {"id": "", "type": "function",
                                                      "function": {"name": "", "arguments": ""}})
                entry["id"] += call.id or ""
                entry["function"]["name"] += (call.function and call.function.name) or ""
                entry["function"]["arguments"] += (call.function and call.function.arguments) or ""
                entry.update({"extra_content": call.model_extra["extra_content"]} if call.model_extra else {})
    message["tool_calls"] = [calls[i] for i in sorted(calls)]
    return message


def ask_chat(client, stream: bool, **params) -> dict:
    if stream:
        return streamed_turn(client.chat.completions.create(stream=True, **params))
    return assistant_turn(client.chat.completions.create(**params))


def tool_results(message: dict) -> list[dict]:
    return [{"role": "tool", "tool_call_id": call["id"], "content": '{"sky": "sunny"}'}
            for call in message["tool_calls"]]


# -- Claude's thinking through a tool loop -----------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_claude_thinking_survives_a_chat_completions_tool_loop(client, fakes, stream):
    fakes["anthropic"].enqueue(Reply(reasoning=THOUGHT, tool_calls=CALL), Reply(text="Sunny in Paris."))
    params = {"model": CLAUDE, "tools": TOOLS, "reasoning_effort": "low"}
    first = ask_chat(client, stream, messages=QUESTION, **params)
    assert first["thinking_blocks"] == [SIGNED]
    second = client.chat.completions.create(messages=[*QUESTION, first, *tool_results(first)], **params)
    assert second.choices[0].message.content == "Sunny in Paris."
    sent = fakes["anthropic"].requests[-1].json
    assert sent["thinking"]["type"] == "enabled" and sent["messages"][1]["content"][0] == SIGNED


def test_thinking_blocks_sent_as_content_parts_come_back_too(client, fakes):
    """The OpenAI Agents SDK sends Claude's thinking blocks back as parts of the assistant's content."""
    fakes["anthropic"].enqueue(Reply(reasoning=THOUGHT, tool_calls=CALL), Reply(text="Sunny in Paris."))
    params = {"model": CLAUDE, "tools": TOOLS, "reasoning_effort": "low"}
    first = assistant_turn(client.chat.completions.create(messages=QUESTION, **params))
    first["content"] = first.pop("thinking_blocks")
    second = client.chat.completions.create(messages=[*QUESTION, first, *tool_results(first)], **params)
    assert second.choices[0].message.content == "Sunny in Paris."
    assert fakes["anthropic"].requests[-1].json["messages"][1]["content"][0] == SIGNED


def test_a_history_without_its_thinking_blocks_turns_thinking_off_for_that_turn(client, fakes):
    fakes["anthropic"].enqueue(Reply(reasoning=THOUGHT, tool_calls=CALL), Reply(text="Sunny in Paris."))
    params = {"model": CLAUDE, "tools": TOOLS, "reasoning_effort": "low"}
    first = assistant_turn(client.chat.completions.create(messages=QUESTION, **params))
    kept = {key: first[key] for key in ("role", "content", "tool_calls") if key in first}  # a client that drops them
    second = client.chat.completions.create(messages=[*QUESTION, kept, *tool_results(kept)], **params)
    assert second.choices[0].message.content == "Sunny in Paris."
    assert "thinking" not in fakes["anthropic"].requests[-1].json


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_claude_thinking_survives_a_responses_tool_loop(client, fakes, stream):
    fakes["anthropic"].enqueue(Reply(reasoning=THOUGHT, tool_calls=CALL), Reply(text="Sunny in Paris."))
    params = {"model": CLAUDE, "tools": RESPONSES_TOOLS, "reasoning": {"effort": "low"}, "store": False}
    first = ask_responses(client, stream, input=QUESTION, **params)
    assert [item.type for item in first.output] == ["reasoning", "function_call"]
    assert first.output[0].encrypted_content and first.output[0].summary[0].text == THOUGHT
    call = first.output[1]
    items = [*QUESTION, *(item.model_dump(exclude_none=True) for item in first.output),
             {"type": "function_call_output", "call_id": call.call_id, "output": '{"sky": "sunny"}'}]
    second = ask_responses(client, stream, input=items, **params)
    assert second.output_text == "Sunny in Paris."
    assert fakes["anthropic"].requests[-1].json["messages"][1]["content"][0] == SIGNED


def test_claude_thinking_survives_a_stored_responses_chain(client, fakes):
    fakes["anthropic"].enqueue(Reply(reasoning=THOUGHT, tool_calls=CALL), Reply(text="Sunny in Paris."))
    params = {"model": CLAUDE, "tools": RESPONSES_TOOLS, "reasoning": {"effort": "low"}}
    first = client.responses.create(input=QUESTION, **params)
    call = next(item for item in first.output if item.type == "function_call")
    second = client.responses.create(previous_response_id=first.id, **params, input=[
        {"type": "function_call_output", "call_id": call.call_id, "output": '{"sky": "sunny"}'}])
    assert second.output_text == "Sunny in Paris."
    assert fakes["anthropic"].requests[-1].json["messages"][1]["content"][0] == SIGNED


def ask_responses(client, stream: bool, **params):
    if not stream:
        return client.responses.create(**params)
    with client.responses.stream(**params) as events:
        return events.get_final_response()


def test_claude_thinking_survives_a_messages_tool_loop(claude_client, fakes, client):
    fakes["anthropic"].enqueue(Reply(reasoning=THOUGHT, tool_calls=CALL), Reply(text="Sunny in Paris."))
    params = {"model": CLAUDE, "max_tokens": 4000, "tools": MESSAGES_TOOLS,
              "thinking": {"type": "enabled", "budget_tokens": 2048}}
    first = claude_client.messages.create(messages=QUESTION, **params)
    use = next(block for block in first.content if block.type == "tool_use")
    messages = [*QUESTION, {"role": "assistant", "content": [block.model_dump() for block in first.content]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]}]
    second = claude_client.messages.create(messages=messages, **params)
    assert second.content[-1].text == "Sunny in Paris."
    assert fakes["anthropic"].requests[-1].json["messages"][1]["content"][0] == SIGNED


# -- Gemini 3's thought signatures ------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_gemini_signatures_ride_in_extra_content_and_survive_a_rewritten_id(client, fakes, stream):
    fakes["gemini"].enqueue(Reply(tool_calls=CALL), Reply(text="Sunny in Paris."))
    first = ask_chat(client, stream, model=GEMINI_3, messages=QUESTION, tools=TOOLS)
    call = first["tool_calls"][0]
    assert ID_RULE.match(call["id"])  # short, and valid for every vendor
    assert call["extra_content"] == {"google": {"thought_signature": SIGNATURE}}
    call["id"] = "toolu_01rewritten"  # a client that mints its own ids (langchain-anthropic's rewrite)
    second = client.chat.completions.create(model=GEMINI_3, tools=TOOLS,
                                            messages=[*QUESTION, first, *tool_results(first)])
    assert second.choices[0].message.content == "Sunny in Paris."
    assert fakes["gemini"].requests[-1].json["contents"][1]["parts"][0]["thoughtSignature"] == SIGNATURE


def test_a_client_that_keeps_only_the_id_gets_the_dummy_signature(client, fakes):
    fakes["gemini"].enqueue(Reply(tool_calls=CALL), Reply(text="Sunny in Paris."))
    first = assistant_turn(client.chat.completions.create(model=GEMINI_3, messages=QUESTION, tools=TOOLS))
    for call in first["tool_calls"]:
        call.pop("extra_content")
    second = client.chat.completions.create(model=GEMINI_3, tools=TOOLS,
                                            messages=[*QUESTION, first, *tool_results(first)])
    assert second.choices[0].message.content == "Sunny in Paris."
    assert fakes["gemini"].requests[-1].json["contents"][1]["parts"][0]["thoughtSignature"] == DUMMY_SIGNATURE


def test_a_tool_call_gemini_did_not_make_gets_the_dummy_signature(client, fakes):
    """A history moved from another model (Claude's tool_use id) continues on Gemini 3."""
    fakes["gemini"].enqueue(Reply(text="Sunny in Paris."))
    moved = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "toolu_01A09q90qw90lq917835lq9", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]}
    answer = client.chat.completions.create(model=GEMINI_3, tools=TOOLS,
                                            messages=[*QUESTION, moved, *tool_results(moved)])
    assert answer.choices[0].message.content == "Sunny in Paris."
    assert fakes["gemini"].requests[-1].json["contents"][1]["parts"][0]["thoughtSignature"] == DUMMY_SIGNATURE


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_gemini_signatures_survive_a_responses_tool_loop(client, fakes, stream):
    fakes["gemini"].enqueue(Reply(tool_calls=CALL), Reply(text="Sunny in Paris."))
    first = ask_responses(client, stream, model=GEMINI_3, input=QUESTION, tools=RESPONSES_TOOLS, store=False)
    call = next(item for item in first.output if item.type == "function_call")
    assert ID_RULE.match(call.call_id)
    items = [*QUESTION, *(item.model_dump(exclude_none=True) for item in first.output),
             {"type": "function_call_output", "call_id": call.call_id, "output": '{"sky": "sunny"}'}]
    second = ask_responses(client, stream, model=GEMINI_3, input=items, tools=RESPONSES_TOOLS, store=False)
    assert second.output_text == "Sunny in Paris."
    assert fakes["gemini"].requests[-1].json["contents"][1]["parts"][0]["thoughtSignature"] == SIGNATURE


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_gemini_signatures_survive_a_messages_tool_loop(claude_client, fakes, client, stream):
    fakes["gemini"].enqueue(Reply(tool_calls=CALL), Reply(text="Sunny in Paris."))
    params = {"model": GEMINI_3, "max_tokens": 400, "tools": MESSAGES_TOOLS}
    if stream:
        with claude_client.messages.stream(messages=QUESTION, **params) as events:
            first = events.get_final_message()
    else:
        first = claude_client.messages.create(messages=QUESTION, **params)
    use = next(block for block in first.content if block.type == "tool_use")
    assert ID_RULE.match(use.id)
    messages = [*QUESTION, {"role": "assistant", "content": [block.model_dump() for block in first.content]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]}]
    second = claude_client.messages.create(messages=messages, **params)
    assert second.content[-1].text == "Sunny in Paris."
    assert fakes["gemini"].requests[-1].json["contents"][1]["parts"][0]["thoughtSignature"] == SIGNATURE


def test_an_old_id_carrying_its_signature_still_works_and_reaches_claude_valid(client, fakes):
    """Ids of the older form (the signature inside) still give Gemini its signature, and reach Claude
    (a fallback mid-loop) as an id within Anthropic's pattern."""
    old = f"call_{'a' * 24}__thought__{SIGNATURE}"
    history = [*QUESTION, {"role": "assistant", "content": None, "tool_calls": [
        {"id": old, "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": old, "content": "sunny"}]
    for model, fake in ((GEMINI_3, "gemini"), (CLAUDE, "anthropic")):
        fakes[fake].enqueue(Reply(text="Sunny in Paris."))
        answer = client.chat.completions.create(model=model, tools=TOOLS, messages=history)
        assert answer.choices[0].message.content == "Sunny in Paris."
    assert fakes["gemini"].requests[-1].json["contents"][1]["parts"][0]["thoughtSignature"] == SIGNATURE
    sent = fakes["anthropic"].requests[-1].json["messages"]
    assert sent[1]["content"][0]["id"] == sent[2]["content"][0]["tool_use_id"] != old


# -- parameters every client sends ----------------------------------------------------------------------


def test_temperature_and_top_p_reach_claude_on_chat_and_responses(client, fakes):
    client.chat.completions.create(model=CLAUDE, messages=QUESTION, temperature=0.2, top_p=0.9)
    assert (fakes["anthropic"].requests[-1].json["temperature"], fakes["anthropic"].requests[-1].json["top_p"]) \
        == (0.2, 0.9)
    client.responses.create(model=CLAUDE, input="Hi", temperature=0.3, top_p=0.8)
    assert (fakes["anthropic"].requests[-1].json["temperature"], fakes["anthropic"].requests[-1].json["top_p"]) \
        == (0.3, 0.8)


def test_a_temperature_claude_refuses_while_thinking_is_a_400_naming_it(client, fakes):
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.chat.completions.create(model=CLAUDE, messages=QUESTION, temperature=0.2, reasoning_effort="low")
    assert fakes["anthropic"].requests == []
    client.chat.completions.create(model=CLAUDE, messages=QUESTION, temperature=1, top_p=0.95, reasoning_effort="low")
    assert fakes["anthropic"].requests[-1].json["temperature"] == 1


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_parallel_tool_calls_false_on_gemini_keeps_one_call(client, fakes, stream):
    fakes["gemini"].enqueue(Reply(tool_calls=TWO_CALLS))
    first = ask_chat(client, stream, model=GEMINI_3, messages=QUESTION, tools=TOOLS, parallel_tool_calls=False)
    assert [json.loads(call["function"]["arguments"]) for call in first["tool_calls"]] == [{"city": "Paris"}]


def test_disable_parallel_tool_use_on_gemini_through_messages(claude_client, fakes):
    fakes["gemini"].enqueue(Reply(tool_calls=TWO_CALLS))
    message = claude_client.messages.create(model=GEMINI_3, max_tokens=200, messages=QUESTION, tools=MESSAGES_TOOLS,
                                            tool_choice={"type": "auto", "disable_parallel_tool_use": True})
    assert [block.input for block in message.content if block.type == "tool_use"] == [{"city": "Paris"}]


def test_a_refused_parameter_is_named_as_the_messages_client_sent_it(claude_client, fakes):
    with pytest.raises(anthropic.BadRequestError, match="metadata.user_id") as caught:
        claude_client.messages.create(model=GEMINI_3, max_tokens=50, messages=QUESTION, metadata={"user_id": "u-1"})
    assert "'user'" not in caught.value.message


# -- usage -----------------------------------------------------------------------------------------------


def test_gemini_embeddings_count_tokens_and_say_they_are_estimated(server, client):
    raw = requests.post(server.url + "/v1/embeddings", timeout=10,
                        json={"model": "gemini/gemini-embedding-001", "input": ["one two three", "four"]})
    assert raw.json()["usage"] == {"prompt_tokens": 5, "total_tokens": 5}  # four characters a token
    assert raw.headers["X-Token-Count"] == "estimate"


def test_claude_reasoning_tokens_are_in_usage_on_every_front_door(client, claude_client, fakes):
    fakes["anthropic"].default_reply = Reply(text="42", reasoning=THOUGHT)
    stream = client.chat.completions.create(model=CLAUDE, messages=QUESTION, reasoning_effort="low", stream=True,
                                            stream_options={"include_usage": True})
    usage = [chunk.usage for chunk in stream if chunk.usage][-1]
    assert usage.completion_tokens_details.reasoning_tokens > 0
    response = client.responses.create(model=CLAUDE, input="Hi", reasoning={"effort": "low"})
    assert response.usage.output_tokens_details.reasoning_tokens > 0
