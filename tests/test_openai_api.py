"""The OpenAI-compatible API driven by the official openai SDK (and one agent framework) through a
real Gunicorn + gevent server, against the protocol fakes of each vendor: tool loops in both modes,
structured output, reasoning, embeddings, routing headers and the error types the SDK raises."""
from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
import pydantic
import pytest
import requests

from tests.conftest import NO_HEALTH_MEMORY, ROOT, LiveServer, base_config, provider_config
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.gemini_api import SIGNATURE, FakeGemini
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.server import Reply, embedding

PIXEL = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8/5+hHgAHggJ/"
                         "PchI7wAAAABJRU5ErkJggg==")
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                          "required": ["city"]}}},
         {"type": "function", "function": {"name": "get_time", "description": "Time in a zone",
                                           "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}}}]
CALLS = [{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "get_time", "arguments": {"tz": "CET"}}]
QUESTION = [{"role": "user", "content": "Weather and time in Paris?"}]
VENDORS = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-5-5", "gemini": "gemini-3-flash"}


@pytest.fixture(scope="module")
def fakes():
    with FakeOpenAI() as openai_fake, FakeAnthropic() as anthropic_fake, FakeGemini() as gemini_fake:
        yield {"openai": openai_fake, "anthropic": anthropic_fake, "gemini": gemini_fake}


@pytest.fixture(scope="module")
def image_url():
    """A loopback web server with one PNG, for image URLs that Gemini needs fetched."""
    class Image(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(PIXEL)))
            self.end_headers()
            self.wfile.write(PIXEL)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Image)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/pixel.png"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def server(fakes, tmp_path_factory):
    config = base_config(tmp_path_factory.mktemp("openai_api"),
                         **NO_HEALTH_MEMORY, LOG_LEVEL="INFO", RETRY_ATTEMPTS=0, USAGE_FLUSH_S=0.2,
                         PROVIDER_FALLBACKS=["anthropic"], IMAGE_FETCH_ALLOW_HOSTS=["127.0.0.1"],
                         MODEL_ALIASES=["smart=openai/gpt-4o|anthropic/claude-haiku-5-5"],
                         OPENAI_EMBEDDING_MODELS="text-embedding-3-small",
                         GEMINI_EMBEDDING_MODELS="gemini-embedding-001",
                         **provider_config(**fakes))
    config["GEMINI_MODEL_DEFAULT"] = "gemini-3-flash"
    live = LiveServer(config)
    yield live
    live.stop()


@pytest.fixture
def client(server, fakes):
    for fake in fakes.values():
        fake.reset()
        fake.default_reply = Reply()
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def streamed_message(stream) -> tuple[str, list[dict], str, str]:
    """(text, tool calls, finish_reason, reasoning) put together from a stream of chunks, as agents do."""
    text, reasoning, calls, finish = "", "", {}, ""
    for chunk in stream:
        for choice in chunk.choices:
            delta = choice.delta
            text += delta.content or ""
            reasoning += (delta.model_extra or {}).get("reasoning_content") or ""
            for call in delta.tool_calls or ():
                entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": "", "fragments": 0})
                entry.update({"extra_content": call.model_extra["extra_content"]} if call.model_extra else {})
                entry["id"] += call.id or ""
                entry["name"] += (call.function and call.function.name) or ""
                entry["arguments"] += (call.function and call.function.arguments) or ""
                entry["fragments"] += 1
            finish = choice.finish_reason or finish
    return text, [calls[i] for i in sorted(calls)], finish, reasoning


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("vendor", VENDORS)
def test_a_two_step_tool_loop(client, fakes, vendor, stream):
    fake = fakes[vendor]
    fake.enqueue(Reply(tool_calls=CALLS), Reply(text="Sunny in Paris at noon."))
    messages = list(QUESTION)
    first = client.chat.completions.create(model=VENDORS[vendor], messages=messages, tools=TOOLS, stream=stream)
    if stream:
        _, calls, finish, _ = streamed_message(first)
        assert vendor == "gemini" or all(call["fragments"] > 1 for call in calls)  # arguments arrive in pieces
    else:
        message = first.choices[0].message
        calls = [{"id": c.id, "name": c.function.name, "arguments": c.function.arguments, **c.model_extra}
                 for c in message.tool_calls]
        finish = first.choices[0].finish_reason
        assert message.content is None
    assert finish == "tool_calls"
    assert [(c["name"], json.loads(c["arguments"])) for c in calls] == [(c["name"], c["arguments"]) for c in CALLS]
    assert len({c["id"] for c in calls}) == 2 and all(c["id"] for c in calls)

    messages.append({"role": "assistant", "content": None, "tool_calls": [  # as agents keep them, extra_content too
        {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]},
         **({"extra_content": c["extra_content"]} if "extra_content" in c else {})} for c in calls]})
    messages += [{"role": "tool", "tool_call_id": calls[0]["id"], "content": '{"sky": "sunny"}'},
                 {"role": "tool", "tool_call_id": calls[1]["id"], "content": "12:00"}]
    second = client.chat.completions.create(model=VENDORS[vendor], messages=messages, tools=TOOLS, stream=stream)
    text = streamed_message(second)[0] if stream else second.choices[0].message.content
    assert text == "Sunny in Paris at noon."
    assert_history_reached(vendor, fake.requests[-1].json, calls)


def assert_history_reached(vendor: str, sent: dict, calls: list[dict]) -> None:
    """The vendor saw the calls and their results in its own format (its fake also refuses a history
    that does not add up, so the second answer already proves it matched)."""
    if vendor == "openai":
        assert [m.get("tool_call_id") for m in sent["messages"][2:]] == [c["id"] for c in calls]
    elif vendor == "anthropic":
        assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]  # both results in one turn
        results = sent["messages"][2]["content"]
        assert [b["tool_use_id"] for b in results] == [c["id"] for c in calls]
        assert sent["messages"][1]["content"][0]["input"] == {"city": "Paris"}
    else:
        model_turn, results = sent["contents"][1], sent["contents"][2]
        assert model_turn["parts"][0]["thoughtSignature"] == SIGNATURE  # returned with the next turn
        assert [p["functionResponse"]["name"] for p in results["parts"]] == ["get_weather", "get_time"]
        assert results["parts"][0]["functionResponse"]["response"] == {"sky": "sunny"}


@pytest.mark.parametrize("vendor", VENDORS)
def test_tool_choice_and_parallel_calls_reach_each_vendor(client, fakes, vendor):
    fakes[vendor].enqueue(Reply(tool_calls=CALLS[:1]))
    client.chat.completions.create(model=VENDORS[vendor], messages=QUESTION, tools=TOOLS,
                                   tool_choice={"type": "function", "function": {"name": "get_weather"}},
                                   **({} if vendor == "gemini" else {"parallel_tool_calls": False}))
    sent = fakes[vendor].requests[-1].json
    if vendor == "openai":
        assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
        assert sent["parallel_tool_calls"] is False
    elif vendor == "anthropic":
        assert sent["tool_choice"] == {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}
    else:
        assert sent["toolConfig"]["functionCallingConfig"] == {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}


class Weather(pydantic.BaseModel):
    city: str
    celsius: int


@pytest.mark.parametrize("vendor", VENDORS)
def test_parse_with_a_pydantic_model(client, fakes, vendor):
    fakes[vendor].enqueue(Reply(text='{"city": "Paris", "celsius": 12}'))
    completion = client.chat.completions.parse(model=VENDORS[vendor], messages=QUESTION, response_format=Weather)
    assert completion.choices[0].message.parsed == Weather(city="Paris", celsius=12)
    sent = fakes[vendor].requests[-1].json
    if vendor == "openai":
        assert sent["response_format"]["json_schema"]["strict"] is True
    elif vendor == "anthropic":
        assert sent["output_config"]["format"]["schema"]["properties"]["celsius"] == {"title": "Celsius",
                                                                                       "type": "integer"}
    else:
        assert sent["generationConfig"]["responseMimeType"] == "application/json"


@pytest.mark.parametrize("vendor", VENDORS)
def test_reasoning_reaches_the_client_whole_and_streamed(client, fakes, vendor):
    model = VENDORS[vendor] if vendor != "gemini" else "gemini-2.5-flash"
    fakes[vendor].default_reply = Reply(text="42", reasoning="Six times seven.")
    completion = client.chat.completions.create(model=model, messages=QUESTION, reasoning_effort="low")
    assert completion.choices[0].message.model_extra["reasoning_content"] == "Six times seven."
    assert completion.choices[0].message.content == "42"
    assert completion.usage.completion_tokens_details.reasoning_tokens > 0
    stream = client.chat.completions.create(model=model, messages=QUESTION, reasoning_effort="low", stream=True,
                                            stream_options={"include_usage": True})
    text, _, finish, reasoning = streamed_message(stream)
    assert (text, reasoning, finish) == ("42", "Six times seven.", "stop")
    sent = fakes[vendor].requests[-1].json
    if vendor == "anthropic":
        assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    elif vendor == "gemini":
        assert sent["generationConfig"]["thinkingConfig"] == {"include_thoughts": True, "thinking_budget": 1024}
    else:
        assert sent["reasoning_effort"] == "low"


@pytest.mark.parametrize("vendor, model", [("openai", "text-embedding-3-small"),
                                           ("gemini", "gemini/gemini-embedding-001")])
@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_embeddings(client, server, vendor, model, encoding):
    result = client.embeddings.create(model=model, input=["first text", "second text"], dimensions=4,
                                      encoding_format=encoding)
    vectors = [item.embedding for item in result.data]
    if encoding == "base64":  # the SDK leaves our base64 strings to the caller
        vectors = [list(memoryview(base64.b64decode(v)).cast("f")) for v in vectors]
    assert vectors == [pytest.approx(embedding(text, 4), abs=1e-6) for text in ("first text", "second text")]
    single = client.embeddings.create(model=model, input="one", encoding_format="float")
    assert len(single.data) == 1 and single.data[0].embedding
    assert wait_for(lambda: f'provider="{vendor}"' in requests.get(server.url + "/metrics", timeout=5).text)


def test_models_list_and_retrieve(client):
    ids = [m.id for m in client.models.list()]
    assert "smart" in ids and "openai/text-embedding-3-small" in ids and "gemini/gemini-embedding-001" in ids
    assert client.models.retrieve("anthropic/claude-haiku-5-5").owned_by == "anthropic"
    assert client.models.retrieve("gpt-4o-mini").owned_by == "openai"
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("nobody/nothing")
    assert caught.value.body["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=QUESTION)


@pytest.mark.parametrize("vendor, param, value", [("anthropic", "presence_penalty", 0.2), ("anthropic", "seed", 7),
                                                  ("gemini", "logit_bias", {"50256": -100}),
                                                  ("anthropic", "store", True), ("gemini", "user", "u-1")])
def test_a_parameter_the_vendor_cannot_take_is_a_400_naming_it(client, fakes, vendor, param, value):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=VENDORS[vendor], messages=QUESTION, extra_body={param: value})
    assert caught.value.body["param"] == param and param in caught.value.message
    assert fakes[vendor].requests == []


def test_openai_receives_every_parameter_and_unknown_fields_as_they_came(client, fakes):
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "developer", "content": "Be brief."},
                                                                  {"role": "user", "content": "hi", "name": "ann"}],
                                   seed=7, temperature=0.3, presence_penalty=0.5, logit_bias={"50256": -100},
                                   user="u-1", metadata={"team": "a"}, extra_body={"store": True, "verbosity": "low"})
    sent = fakes["openai"].requests[-1].json
    assert sent["messages"][0] == {"role": "developer", "content": "Be brief."}
    assert sent["messages"][1]["name"] == "ann"
    assert (sent["seed"], sent["temperature"], sent["presence_penalty"], sent["store"], sent["verbosity"]) == (
        7, 0.3, 0.5, True, "low")
    assert (sent["logit_bias"], sent["user"], sent["metadata"]) == ({"50256": -100}, "u-1", {"team": "a"})


def test_logprobs_come_back_from_openai(client, fakes):
    logprobs = {"content": [{"token": "Hi", "logprob": -0.1, "bytes": None, "top_logprobs": []}], "refusal": None}
    fake = fakes["openai"]
    original = fake.completion
    fake.completion = lambda reply, model, request: {**original(reply, model, request), "choices": [
        {**original(reply, model, request)["choices"][0], "logprobs": logprobs}]}
    try:
        completion = client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, logprobs=True)
    finally:
        del fake.completion
    assert completion.choices[0].logprobs.content[0].token == "Hi"
    assert fake.requests[-1].json["logprobs"] is True


@pytest.mark.parametrize("vendor", VENDORS)
def test_image_urls_and_developer_messages(client, fakes, image_url, vendor):
    content = [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": image_url}}]
    client.chat.completions.create(model=VENDORS[vendor], messages=[{"role": "developer", "content": "Be brief."},
                                                                    {"role": "user", "content": content}])
    sent = fakes[vendor].requests[-1].json
    if vendor == "openai":
        assert sent["messages"][1]["content"][1] == {"type": "image_url", "image_url": {"url": image_url}}
    elif vendor == "anthropic":
        assert sent["system"] == "Be brief."
        assert sent["messages"][0]["content"][1]["source"] == {"type": "url", "url": image_url}
    else:
        assert sent["systemInstruction"]["parts"] == [{"text": "Be brief."}]
        assert base64.urlsafe_b64decode(sent["contents"][0]["parts"][1]["inlineData"]["data"]) == PIXEL


def test_an_image_url_that_is_not_an_image_is_a_400(client, server):
    content = [{"type": "image_url", "image_url": {"url": server.url + "/ping"}}]
    with pytest.raises(openai.BadRequestError, match="not an image"):
        client.chat.completions.create(model="gemini-3-flash", messages=[{"role": "user", "content": content}])


def test_every_route_rate_limited_is_a_429_with_the_shortest_wait(client, fakes):
    fakes["openai"].default_reply = Reply(status=429, retry_after=7)
    fakes["openai"].set_model_reply("gpt-4o", Reply(status=429, retry_after=3))
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION)
    assert caught.value.response.headers["Retry-After"] == "3"
    assert fakes["anthropic"].requests == []  # a pinned model never crosses to another vendor
    assert [r.json["model"] for r in fakes["openai"].requests] == ["gpt-4o-mini", "gpt-4o"]


def test_a_pinned_model_falls_back_within_its_provider_only(client, fakes, server):
    fakes["openai"].set_model_reply("gpt-4o-mini", Reply(status=500, error_message="down"))
    fakes["openai"].set_model_reply("gpt-4o", Reply(text="from the same vendor"))
    raw = client.chat.completions.with_raw_response.create(model="openai/gpt-4o-mini", messages=QUESTION)
    assert raw.parse().choices[0].message.content == "from the same vendor"
    assert (raw.headers["X-Provider"], raw.headers["X-Model"]) == ("openai", "gpt-4o")
    assert raw.headers["X-Fallbacks"] == "openai/gpt-4o-mini"
    fakes["openai"].set_model_reply("gpt-4o", Reply(status=500, error_message="down too"))
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=QUESTION)
    assert fakes["anthropic"].requests == []


def test_an_alias_chain_crosses_vendors_in_order_and_says_so(client, fakes):
    fakes["openai"].default_reply = Reply(status=503, error_message="overloaded")
    fakes["anthropic"].enqueue(Reply(chunks=["from ", "claude"]))
    raw = client.chat.completions.with_raw_response.create(model="smart", messages=QUESTION, stream=True)
    assert (raw.headers["X-Provider"], raw.headers["X-Model"]) == ("anthropic", "claude-haiku-5-5")
    assert raw.headers["X-Fallbacks"] == "openai/gpt-4o"
    assert streamed_message(raw.parse())[0] == "from claude"
    assert [r.json["model"] for r in fakes["openai"].requests] == ["gpt-4o"]


def test_the_readme_tool_example_works_with_each_vendor(server, fakes, capsys):
    """The README's example, run as written (but for the server's address) against the echo fakes."""
    readme = (ROOT / "README.md").read_text()
    example = readme.split("<!-- example:tools -->\n```python\n", 1)[1].split("```", 1)[0]
    for fake in fakes.values():
        fake.reset()
        fake.default_reply = fake.echo_reply
    exec(compile(example.replace("http://127.0.0.1:5001", server.url), "README.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" -> ")[0] for line in lines] == ["gpt-4o-mini", "claude-sonnet-5-5", "gemini-2.5-flash"]
    for line in lines:
        said = json.loads(line.split("The tool said: ", 1)[1])
        assert said == {"city": "What is the weather in Paris?", "sky": "sunny", "celsius": 21}


def test_langchain_agent_calls_a_tool_through_each_vendor(server, fakes):
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def get_weather(city: str) -> str:
        """Weather in a city."""
        return f"Sunny in {city}"

    for vendor, model in VENDORS.items():
        fakes[vendor].enqueue(Reply(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}]),
                              Reply(text="It is sunny."))
        llm = ChatOpenAI(model=model, base_url=server.url + "/v1", api_key="unused", max_retries=0)
        agent = llm.bind_tools([get_weather])
        messages = [HumanMessage("Weather in Paris?")]
        first = agent.invoke(messages)
        assert [(c["name"], c["args"]) for c in first.tool_calls] == [("get_weather", {"city": "Paris"})]
        messages += [first, ToolMessage(get_weather.invoke(first.tool_calls[0]["args"]),
                                        tool_call_id=first.tool_calls[0]["id"])]
        assert agent.invoke(messages).content == "It is sunny.", vendor


# -- in-process: parameters, message shapes and the retry budget -----------------------------------


def test_drop_unsupported_params_drops_and_names_them(make_app, fake_openai, fake_anthropic):
    client = make_app(**provider_config(openai=fake_openai, anthropic=fake_anthropic),
                      DROP_UNSUPPORTED_PARAMS=True).test_client()
    response = client.post("/v1/chat/completions", json={"model": "claude-sonnet-5-5", "messages": QUESTION,
                                                          "presence_penalty": 0.2, "seed": 3, "stop": ["END"]})
    assert response.status_code == 200 and response.headers["X-Dropped-Params"] == "seed, presence_penalty"
    sent = fake_anthropic.requests[-1].json
    assert "presence_penalty" not in sent and "seed" not in sent and sent["stop_sequences"] == ["END"]


def test_a_fallback_that_cannot_honour_the_request_is_not_tried(make_app, fake_openai, fake_anthropic):
    client = make_app(**provider_config(openai=fake_openai, anthropic=fake_anthropic), RETRY_ATTEMPTS=0,
                      MODEL_ALIASES=["smart=openai/gpt-4o|anthropic/claude-haiku-5-5"]).test_client()
    fake_openai.default_reply = Reply(status=503)
    response = client.post("/v1/chat/completions", json={"model": "smart", "messages": QUESTION, "seed": 1})
    assert response.status_code == 503 and fake_anthropic.requests == []
    assert client.post("/chat/claude", json={"messages": QUESTION, "temperature": 0.5}).status_code == 200
    assert fake_anthropic.requests[-1].json["temperature"] == 0.5  # /chat's temperature reaches Claude too


@pytest.mark.parametrize("message, param", [
    ({"role": "tool", "content": "42"}, "tool_call_id"),
    ({"role": "user", "content": None}, "content"),
    ({"role": "user", "content": "x", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{}"}}]},
     "tool_calls"),
    ({"role": "function", "content": "x"}, "role"),
    ({"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}, "content"),
])
def test_malformed_agent_messages_are_400s_naming_the_field(client_in_process, message, param):
    response = client_in_process.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": [message]})
    assert response.status_code == 400
    assert param in response.get_json()["error"]["message"]


@pytest.mark.parametrize("body, param", [
    ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools"),
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ({"reasoning_effort": "extreme"}, "reasoning_effort"),
    ({"logprobs": True, "stream": True}, "logprobs"),
])
def test_malformed_parameters_are_400s_naming_them(client_in_process, body, param):
    response = client_in_process.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": QUESTION,
                                                                    **body})
    assert response.status_code == 400 and response.get_json()["error"]["param"] == param


def test_a_malformed_tool_call_argument_is_a_400_not_a_fallback(make_app, fake_openai, fake_anthropic):
    client = make_app(**provider_config(openai=fake_openai, anthropic=fake_anthropic)).test_client()
    history = [*QUESTION, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{not json"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"}]
    response = client.post("/v1/chat/completions", json={"model": "claude-sonnet-5-5", "messages": history})
    assert response.status_code == 400 and "arguments" in response.get_json()["error"]["message"]
    assert fake_anthropic.requests == [] and fake_openai.requests == []


@pytest.fixture
def client_in_process(make_app, fake_openai):
    return make_app(**provider_config(openai=fake_openai)).test_client()


def test_several_choices_from_openai(client, fakes):
    response = client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, n=2)
    assert [(c.index, c.message.content) for c in response.choices] == [
        (0, "Hello from the fake. (0)"), (1, "Hello from the fake. (1)")]
    assert fakes["openai"].requests[-1].json["n"] == 2


def test_several_choices_streamed_keep_their_index(client, fakes):
    texts: dict[int, str] = {}
    finished = set()
    for chunk in client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, n=2, stream=True,
                                                stream_options={"include_usage": True}):
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
            if choice.finish_reason:
                finished.add(choice.index)
    assert texts == {0: "Hello from the fake. (0)", 1: "Hello from the fake. (1)"} and finished == {0, 1}


def test_several_choices_from_gemini_are_its_candidates(client, fakes):
    fakes["gemini"].default_reply = Reply(text="Hello from the fake.", prompt_tokens=5, completion_tokens=3)
    response = client.chat.completions.create(model="gemini-2.5-flash", messages=QUESTION, n=2)
    assert [(c.index, c.message.role, c.message.content, c.finish_reason) for c in response.choices] == [
        (0, "assistant", "Hello from the fake. (0)", "stop"), (1, "assistant", "Hello from the fake. (1)", "stop")]
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (5, 6)  # both candidates' tokens
    assert fakes["gemini"].requests[-1].json["generationConfig"]["candidateCount"] == 2


def test_several_choices_from_gemini_with_tool_calls(client, fakes):
    fakes["gemini"].default_reply = Reply(tool_calls=CALLS[:1])
    response = client.chat.completions.create(model="gemini-2.5-flash", messages=QUESTION, n=2, tools=TOOLS)
    assert [(c.index, c.finish_reason) for c in response.choices] == [(0, "tool_calls"), (1, "tool_calls")]
    for choice in response.choices:
        assert [(call.function.name, json.loads(call.function.arguments)) for call in choice.message.tool_calls] == [
            ("get_weather", {"city": "Paris"})]


def test_several_choices_from_gemini_streamed_keep_their_index(client, fakes):
    fakes["gemini"].default_reply = Reply(text="Hello from the fake.", prompt_tokens=5, completion_tokens=3)
    texts: dict[int, str] = {}
    finished: dict[int, str] = {}
    usage = None
    for chunk in client.chat.completions.create(model="gemini-2.5-flash", messages=QUESTION, n=2, stream=True,
                                                stream_options={"include_usage": True}):
        usage = chunk.usage or usage
        for choice in chunk.choices:
            assert choice.index not in finished  # nothing of a choice after its end
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
            if choice.finish_reason:
                finished[choice.index] = choice.finish_reason
    assert texts == {0: "Hello from the fake. (0)", 1: "Hello from the fake. (1)"}
    assert finished == {0: "stop", 1: "stop"}
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (5, 6)
    assert fakes["gemini"].requests[-1].json["generationConfig"]["candidateCount"] == 2


def test_several_choices_a_gemini_model_refuses_are_its_400(client, fakes):
    with pytest.raises(openai.BadRequestError, match="Multiple candidates is not enabled"):
        client.chat.completions.create(model="gemini-3-flash", messages=QUESTION, n=2)
    with pytest.raises(openai.BadRequestError, match="candidate_count"):
        client.chat.completions.create(model="gemini-2.5-flash", messages=QUESTION, n=9)


def test_several_choices_where_a_vendor_has_none_is_a_400(client, fakes):
    with pytest.raises(openai.BadRequestError, match="'n'"):
        client.chat.completions.create(model="claude-sonnet-5-5", messages=QUESTION, n=2)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("vendor", VENDORS)
def test_a_message_name_is_sent_or_dropped_and_said(client, fakes, vendor, stream):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "name": "alice", "content": "Hi"}]
    raw = client.chat.completions.with_raw_response.create(model=VENDORS[vendor], messages=messages, stream=stream)
    if stream:
        assert streamed_message(raw.parse())[0] == "Hello from the fake."
    else:
        assert raw.parse().choices[0].message.content == "Hello from the fake."
    upstream = json.dumps(fakes[vendor].requests[-1].json)
    if vendor == "openai":
        assert '"name": "alice"' in upstream and "X-Dropped-Params" not in raw.headers
    else:
        assert "alice" not in upstream and raw.headers["X-Dropped-Params"] == "messages.name"
