"""The client matrix (docs/clients.md): each agent framework and SDK, through one real Gunicorn + gevent
server, to each vendor's fake, for a plain answer, a stream, a tool loop, parallel tools, reasoning with
tools, structured output and the framework's own agent loop. Each cell asserts what the client got back
and what the vendor received (the tool results under their call ids, Claude's signed thinking block,
Gemini 3's thought signature, the JSON schema). Python clients run in-process; each Node client is one
`node tests/clients/matrix.mjs CLIENT` process doing all of its cells, whose JSON results and the
requests the fakes recorded meanwhile are kept for that client's cells.

The fakes answer by the cell's id, which every prompt carries (`[client-vendor-feature] ...`): a text,
one or two calls of the tool offered, thinking before the call, or the JSON of the schema asked for;
once the tool's results are back, "The tool said: ..." with them."""
from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest
from pydantic import BaseModel

from tests.conftest import NO_HEALTH_MEMORY, ROOT, LiveServer, base_config, provider_config
from tests.fakes.anthropic_api import FakeAnthropic, signature_of
from tests.fakes.gemini_api import DUMMY_SIGNATURE, SIGNATURE, FakeGemini
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.server import FakeServer, RecordedRequest, Reply

VENDORS = ("openai", "anthropic", "gemini")
FEATURES = ("plain", "stream", "tools", "parallel", "reasoning", "structured", "agent")
# the names README's "Model names for agent frameworks" gives every client: the vendor's own, without `/`
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-5-5", "gemini": "gemini-2.5-flash"}
# reasoning cells: an OpenAI reasoning model, Claude with thinking, Gemini 3 (thought signatures)
REASONING_MODELS = {"openai": "o4-mini", "anthropic": "claude-sonnet-5-5", "gemini": "gemini-3-flash"}
PYTHON_CLIENTS = ("openai-py", "anthropic-py", "langchain-openai", "langchain-anthropic", "pydantic-ai",
                  "openai-agents", "llm", "litellm")
NODE_CLIENTS = ("openai-node", "anthropic-node", "vercel-openai", "vercel-anthropic")
CLIENTS_DIR = ROOT / "tests" / "clients"

# (client, feature) -> why that cell is not generated, for every vendor (docs/clients.md gives the same)
REFUSED: dict[tuple[str, str], str] = {
    ("openai-py", "agent"): "the openai Python SDK has no tool runner (its tool loop is the `tools` cell)",
    ("litellm", "agent"): "litellm's agent API is `completion` with tools: the `tools` cell",
    ("openai-agents", "plain"): "the Agents SDK always runs an agent: the `agent` cell's last turn is it",
    ("openai-agents", "tools"): "the Agents SDK runs tools only in its own loop: the `agent` cell",
}
# (client, vendor) whose reasoning cell passes degraded, the way README documents for a history that lost the
# reasoning state: the client keeps neither `thinking_blocks` nor a tool call's `extra_content`, so Claude's
# next turn runs with thinking off, and Gemini 3's call goes back with Google's placeholder signature
DROPS_STATE = "the client drops the reasoning state of an assistant turn"
DEGRADED: dict[tuple[str, str], str] = {
    ("langchain-openai", "anthropic"): DROPS_STATE + " (`thinking_blocks`): Claude's next turn runs without thinking",
    ("langchain-openai", "gemini"): DROPS_STATE + " (`extra_content`): Gemini gets the placeholder signature",
    ("pydantic-ai", "anthropic"): "pydantic-ai sends Claude's thinking back as `reasoning_content` text, without its "
                                  "signature: Claude's next turn runs without thinking",
    ("llm", "anthropic"): DROPS_STATE + " (`thinking_blocks`): Claude's next turn runs without thinking",
    ("llm", "gemini"): DROPS_STATE + " (`extra_content`): Gemini gets the placeholder signature",
}
THOUGHT = "The user wants the weather: call the tool."
ANSWER = {"city": "Paris", "celsius": 21}
TEXT = "Hello from the fake."
CELL = re.compile(r"\[([a-z-]+)-(openai|anthropic|gemini)-([a-z]+)\]")


class Weather(BaseModel):
    city: str
    celsius: int


WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "celsius": {"type": "integer"}},
                  "required": ["city", "celsius"], "additionalProperties": False}


def get_weather(city: str) -> str:
    """Current weather in a city."""
    return f"sunny in {city}"


def cells() -> list[tuple[str, str, str]]:
    return [(client, vendor, feature) for client in (*PYTHON_CLIENTS, *NODE_CLIENTS) for vendor in VENDORS
            for feature in FEATURES if (client, feature) not in REFUSED]


def model_for(vendor: str, feature: str) -> str:
    return (REASONING_MODELS if feature == "reasoning" else MODELS)[vendor]


def prompt_for(cell_id: str) -> str:
    return f"[{cell_id}] What is the weather in Paris?"


# -- the fakes' answers, chosen by the cell's id -------------------------------------------------------


def scripted(fake: FakeServer, vendor: str) -> Callable[[RecordedRequest], Reply]:
    def reply(request: RecordedRequest) -> Reply:
        found = CELL.search(json.dumps(request.json))
        feature = found.group(3) if found else "plain"
        result = fake.tool_result(request)
        tools = fake.offered_tools(request)
        if result is not None:
            return Reply(text=f"The tool said: {result}")
        if feature == "structured":
            if tools:  # a framework asking for its output as a tool call
                return Reply(tool_calls=[{"name": tools[0][0], "arguments": ANSWER}])
            return Reply(text=json.dumps(ANSWER))
        if not tools or feature not in ("tools", "agent", "parallel", "reasoning"):
            return Reply(text=TEXT)
        calls = [{"name": tools[0][0], "arguments": {"city": city}}
                 for city in (("Paris", "Rome") if feature == "parallel" else ("Paris",))]
        thinks = feature == "reasoning" and (vendor != "openai" or request.path == "/v1/responses")
        return Reply(tool_calls=calls, reasoning=THOUGHT if thinks else None)

    return reply


# -- what a vendor received ------------------------------------------------------------------------------


def tool_results(vendor: str, body: dict) -> list[tuple[str | None, str]]:
    """(call id, text) of every tool result in a request's history."""
    if vendor == "openai" and "input" in body:
        items = body["input"] if isinstance(body["input"], list) else []
        return [(i["call_id"], _text(i["output"])) for i in items if i.get("type") == "function_call_output"]
    if vendor == "openai":
        return [(m.get("tool_call_id"), _text(m.get("content"))) for m in body["messages"] if m.get("role") == "tool"]
    if vendor == "anthropic":
        return [(b["tool_use_id"], _text(b.get("content"))) for m in body["messages"]
                if isinstance(m.get("content"), list) for b in m["content"] if b.get("type") == "tool_result"]
    return [(p["functionResponse"].get("id"), json.dumps(p["functionResponse"].get("response")))
            for c in body.get("contents") or () for p in c.get("parts") or () if "functionResponse" in p]


def tool_calls(vendor: str, body: dict) -> list[dict]:
    """Every tool call in a request's history, as the vendor's own shape."""
    if vendor == "openai" and "input" in body:
        items = body["input"] if isinstance(body["input"], list) else []
        return [i for i in items if i.get("type") == "function_call"]
    if vendor == "openai":
        return [c for m in body["messages"] if m.get("role") == "assistant" for c in m.get("tool_calls") or ()]
    if vendor == "anthropic":
        return [b for m in body["messages"] if m.get("role") == "assistant" and isinstance(m.get("content"), list)
                for b in m["content"] if b.get("type") == "tool_use"]
    return [p for c in body.get("contents") or () for p in c.get("parts") or () if "functionCall" in p]


def call_id(vendor: str, call: dict) -> str | None:
    return {"openai": call.get("call_id") or call.get("id"), "anthropic": call.get("id"),
            "gemini": call.get("functionCall", {}).get("id")}[vendor]


def schema_sent(vendor: str, body: dict) -> dict | None:
    """The JSON schema a request asks the answer to follow, as an output format or as the only tool's."""
    formats = {"openai": ((body.get("response_format") or {}).get("json_schema") or {}).get("schema")
               or ((body.get("text") or {}).get("format") or {}).get("schema"),
               "anthropic": ((body.get("output_config") or {}).get("format") or {}).get("schema"),
               "gemini": next((config[k] for k in ("responseJsonSchema", "response_json_schema", "responseSchema")
                               if (config := body.get("generationConfig") or {}).get(k)), None)}
    if formats[vendor]:
        return formats[vendor]
    tools = {"openai": [(t.get("function") or t).get("parameters") for t in body.get("tools") or ()],
             "anthropic": [t.get("input_schema") for t in body.get("tools") or ()],
             "gemini": [d.get("parametersJsonSchema") or d.get("parameters_json_schema") or d.get("parameters")
                        for t in body.get("tools") or ()
                        for d in t.get("functionDeclarations") or ()]}[vendor]
    return tools[0] if len(tools) == 1 else None


def streamed(vendor: str, request: RecordedRequest) -> bool:
    return "streamGenerateContent" in request.path if vendor == "gemini" else bool(request.json.get("stream"))


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else json.dumps(content)


# -- the server, the fakes, and a cell's run -------------------------------------------------------------


@dataclass
class Outcome:
    """What a cell's client got back (`text`, `parsed`, `error`) and what its vendor received."""

    text: str = ""
    parsed: Any = None
    error: str | None = None
    requests: list[RecordedRequest] = field(default_factory=list)


@pytest.fixture(scope="module")
def fakes():
    with FakeOpenAI() as openai_fake, FakeAnthropic() as anthropic_fake, FakeGemini() as gemini_fake:
        found = {"openai": openai_fake, "anthropic": anthropic_fake, "gemini": gemini_fake}
        for vendor, fake in found.items():
            fake.default_reply = scripted(fake, vendor)
        yield found


@pytest.fixture(scope="module")
def server(fakes, tmp_path_factory):
    config = base_config(tmp_path_factory.mktemp("clients_matrix"), **NO_HEALTH_MEMORY, RETRY_ATTEMPTS=0,
                         LOG_LEVEL="INFO", READ_TIMEOUT_S=20.0, **provider_config(**fakes))
    live = LiveServer(config)
    yield live
    live.stop()


def run_cell(fakes, vendor: str, cell_id: str, run: Callable[[], Outcome]) -> Outcome:
    """Run one in-process cell on reset fakes; its vendor's requests that carry the cell's id."""
    for fake in fakes.values():
        fake.reset()
    try:
        outcome = run()
    except Exception as error:  # the cell's assertions report it, with what the fake saw
        outcome = Outcome(error=f"{type(error).__name__}: {error}")
    outcome.requests = [r for r in fakes[vendor].requests if r.json and cell_id in json.dumps(r.json)]
    return outcome


_node_runs: dict[str, tuple[dict, dict[str, list[RecordedRequest]]]] = {}


def node_outcome(client: str, vendor: str, feature: str, server, fakes) -> Outcome:
    """A Node client's cell, from that client's one `node` run (made on its first cell)."""
    if client not in _node_runs:
        for fake in fakes.values():
            fake.reset()
        todo = [{"id": f"{client}-{v}-{f}", "vendor": v, "feature": f, "model": model_for(v, f),
                 "prompt": prompt_for(f"{client}-{v}-{f}")} for c, v, f in cells() if c == client]
        node = shutil.which("node") or "node"
        done = subprocess.run([node, str(CLIENTS_DIR / "matrix.mjs"), client, server.url, json.dumps(todo)],
                              capture_output=True, text=True, timeout=240, cwd=CLIENTS_DIR)
        assert done.returncode == 0, done.stderr[-3000:]
        seen = {v: fakes[v].requests for v in VENDORS}
        _node_runs[client] = (json.loads(done.stdout.strip().splitlines()[-1]), seen)
    results, seen = _node_runs[client]
    cell_id = f"{client}-{vendor}-{feature}"
    got = results.get(cell_id) or {"error": "no result"}
    return Outcome(text=got.get("text") or "", parsed=got.get("parsed"), error=got.get("error"),
                   requests=[r for r in seen[vendor] if r.json and cell_id in json.dumps(r.json)])


# -- the assertions of each feature ------------------------------------------------------------------------


def check(vendor: str, feature: str, outcome: Outcome, degraded: bool = False) -> None:
    assert outcome.error is None, outcome.error
    sent = outcome.requests
    assert sent, "the vendor received nothing carrying the cell's id"
    last = sent[-1].json
    if feature == "plain":
        assert outcome.text == TEXT
    elif feature == "stream":
        assert outcome.text == TEXT and streamed(vendor, sent[-1])
    elif feature == "structured":
        assert outcome.parsed == ANSWER
        assert schema_sent(vendor, sent[0].json)["properties"].keys() == {"city", "celsius"}
    else:
        cities = ("Paris", "Rome") if feature == "parallel" else ("Paris",)
        calls, results = tool_calls(vendor, last), tool_results(vendor, last)
        assert len(calls) == len(results) == len(cities), (calls, results)
        assert all(f"sunny in {city}" in text for (_, text), city in zip(results, cities)), results
        if vendor != "gemini":  # Gemini's calls have no ids: its results answer them by name and order
            assert [i for i, _ in results] == [call_id(vendor, c) for c in calls]
        assert outcome.text.startswith("The tool said:") and "sunny in" in outcome.text, outcome.text
        if feature == "reasoning":
            check_reasoning(vendor, sent, degraded)


def check_reasoning(vendor: str, sent: list[RecordedRequest], degraded: bool) -> None:
    first, last = sent[0].json, sent[-1].json
    if degraded and vendor == "anthropic":
        assert sent[0].json.get("thinking") and not last.get("thinking")
    elif degraded:
        assert tool_calls(vendor, last)[0].get("thoughtSignature") == DUMMY_SIGNATURE
    elif vendor == "anthropic":
        assert (last.get("thinking") or {}).get("type") in ("enabled", "adaptive"), last.get("thinking")
        turn = next(m for m in last["messages"] if m["role"] == "assistant")
        assert turn["content"][0] == {"type": "thinking", "thinking": THOUGHT, "signature": signature_of(THOUGHT)}
    elif vendor == "gemini":
        assert tool_calls(vendor, last)[0].get("thoughtSignature") == SIGNATURE
    else:
        effort = first.get("reasoning_effort") or (first.get("reasoning") or {}).get("effort")
        assert effort, "no reasoning effort reached OpenAI"


# -- the Python clients: one function per client, doing any of its features ---------------------------------


CHAT_TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
MESSAGES_TOOLS = [{"name": "get_weather", "description": "Current weather in a city",
                   "input_schema": CHAT_TOOLS[0]["function"]["parameters"]}]


def openai_py(url: str, vendor: str, feature: str, model: str, prompt: str) -> Outcome:
    import openai

    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    messages: list[dict] = [{"role": "user", "content": prompt}]
    if feature == "plain":
        return Outcome(text=client.chat.completions.create(model=model, messages=messages).choices[0].message.content)
    if feature == "stream":
        chunks = client.chat.completions.create(model=model, messages=messages, stream=True)
        return Outcome(text="".join(c.choices[0].delta.content or "" for c in chunks if c.choices))
    if feature == "structured":
        parsed = client.chat.completions.parse(model=model, messages=messages, response_format=Weather)
        return Outcome(parsed=parsed.choices[0].message.parsed.model_dump())
    params = {"reasoning_effort": "low"} if feature == "reasoning" else {}
    while True:
        message = client.chat.completions.create(model=model, messages=messages, tools=CHAT_TOOLS,
                                                 **params).choices[0].message
        messages.append(message.model_dump(exclude_none=True))  # the whole turn, reasoning state included
        if not message.tool_calls:
            return Outcome(text=message.content)
        messages += [{"role": "tool", "tool_call_id": call.id,
                      "content": get_weather(**json.loads(call.function.arguments))} for call in message.tool_calls]


def anthropic_py(url: str, vendor: str, feature: str, model: str, prompt: str) -> Outcome:
    import anthropic

    client = anthropic.Anthropic(base_url=url, api_key="unused", max_retries=0)
    messages: list[dict] = [{"role": "user", "content": prompt}]
    if feature == "plain":
        return Outcome(text=client.messages.create(model=model, max_tokens=2048, messages=messages).content[0].text)
    if feature == "stream":
        with client.messages.stream(model=model, max_tokens=2048, messages=messages) as stream:
            return Outcome(text="".join(stream.text_stream))
    if feature == "structured":
        parsed = client.messages.parse(model=model, max_tokens=2048, messages=messages, output_format=Weather)
        return Outcome(parsed=parsed.parsed_output.model_dump())
    params: dict = {"thinking": {"type": "enabled", "budget_tokens": 1024}} if feature == "reasoning" else {}
    if feature == "agent":
        runner = client.beta.messages.tool_runner(model=model, max_tokens=2048, messages=messages,
                                                  tools=[anthropic.beta_tool(get_weather)], thread=False)
        return Outcome(text=[b.text for b in runner.until_done().content if b.type == "text"][0])
    while True:
        answer = client.messages.create(model=model, max_tokens=2048, messages=messages, tools=MESSAGES_TOOLS,
                                        **params)
        messages.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in answer.content]})
        calls = [b for b in answer.content if b.type == "tool_use"]
        if not calls:
            return Outcome(text="".join(b.text for b in answer.content if b.type == "text"))
        messages.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": b.id,
                                                      "content": get_weather(**b.input)} for b in calls]})


def langchain(url: str, vendor: str, feature: str, model: str, prompt: str, *, flavour: str) -> Outcome:
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool

    if flavour == "openai":
        from langchain_openai import ChatOpenAI

        extra = {"reasoning_effort": "low"} if feature == "reasoning" else {}
        chat = ChatOpenAI(model=model, base_url=url + "/v1", api_key="unused", max_retries=0, **extra)
    else:
        from langchain_anthropic import ChatAnthropic

        extra = {"thinking": {"type": "adaptive"}} if feature == "reasoning" else {}
        chat = ChatAnthropic(model=model, base_url=url, api_key="unused", max_retries=0, max_tokens=2048, **extra)
    if feature == "plain":
        return Outcome(text=chat.invoke(prompt).text)
    if feature == "stream":
        return Outcome(text="".join(chunk.text for chunk in chat.stream(prompt)))
    if feature == "structured":
        return Outcome(parsed=chat.with_structured_output(Weather).invoke(prompt).model_dump())
    weather = tool(get_weather)
    if feature == "agent":
        from langchain.agents import create_agent

        state = create_agent(chat, tools=[weather]).invoke({"messages": [HumanMessage(prompt)]})
        return Outcome(text=state["messages"][-1].text)
    bound, messages = chat.bind_tools([weather]), [HumanMessage(prompt)]
    while True:
        message = bound.invoke(messages)
        messages.append(message)
        if not message.tool_calls:
            return Outcome(text=message.text)
        messages += [ToolMessage(weather.invoke(call["args"]), tool_call_id=call["id"]) for call in message.tool_calls]


def pydantic_ai(url: str, vendor: str, feature: str, model: str, prompt: str) -> Outcome:
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    chat = OpenAIChatModel(model, provider=OpenAIProvider(base_url=url + "/v1", api_key="unused"))
    settings: dict = {"openai_reasoning_effort": "low"} if feature == "reasoning" else {}
    if feature == "structured":
        return Outcome(parsed=Agent(chat, output_type=Weather).run_sync(prompt).output.model_dump())
    tools = [get_weather] if feature not in ("plain", "stream") else []
    agent = Agent(chat, tools=tools, model_settings=settings)
    if feature == "stream":
        async def stream() -> str:
            async with agent.run_stream(prompt) as run:
                return "".join([piece async for piece in run.stream_text(delta=True)])

        return Outcome(text=asyncio.run(stream()))
    return Outcome(text=agent.run_sync(prompt).output)


def openai_agents(url: str, vendor: str, feature: str, model: str, prompt: str) -> Outcome:
    import agents
    from openai import AsyncOpenAI
    from openai.types.shared import Reasoning

    client = AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    chat = agents.OpenAIResponsesModel(model=model, openai_client=client)
    settings = agents.ModelSettings(reasoning=Reasoning(effort="low")) if feature == "reasoning" else None
    tools = [agents.function_tool(get_weather)] if feature in ("agent", "parallel", "reasoning") else []
    agent = agents.Agent(name="matrix", model=chat, tools=tools, model_settings=settings or agents.ModelSettings(),
                         output_type=Weather if feature == "structured" else None)
    config = agents.RunConfig(tracing_disabled=True)
    if feature == "stream":
        async def stream() -> str:
            run = agents.Runner.run_streamed(agent, prompt, run_config=config)
            pieces = [e.data.delta async for e in run.stream_events()
                      if e.type == "raw_response_event" and e.data.type == "response.output_text.delta"]
            return "".join(pieces)

        return Outcome(text=asyncio.run(stream()))
    result = agents.Runner.run_sync(agent, prompt, run_config=config)
    if feature == "structured":
        return Outcome(parsed=result.final_output.model_dump())
    return Outcome(text=result.final_output)


def litellm_client(url: str, vendor: str, feature: str, model: str, prompt: str) -> Outcome:
    import litellm

    common = {"model": f"openai/{model}", "api_base": url + "/v1", "api_key": "unused"}
    messages: list[dict] = [{"role": "user", "content": prompt}]
    if feature == "plain":
        return Outcome(text=litellm.completion(messages=messages, **common).choices[0].message.content)
    if feature == "stream":
        chunks = litellm.completion(messages=messages, stream=True, **common)
        return Outcome(text="".join(c.choices[0].delta.content or "" for c in chunks if c.choices))
    if feature == "structured":
        answer = litellm.completion(messages=messages, response_format=Weather, **common)
        return Outcome(parsed=json.loads(answer.choices[0].message.content))
    params = {"reasoning_effort": "low"} if feature == "reasoning" else {}
    while True:
        message = litellm.completion(messages=messages, tools=CHAT_TOOLS, **common, **params).choices[0].message
        messages.append(message.model_dump(exclude_none=True))
        if not message.tool_calls:
            return Outcome(text=message.content)
        messages += [{"role": "tool", "tool_call_id": call.id,
                      "content": get_weather(**json.loads(call.function.arguments))} for call in message.tool_calls]


def llm_client(url: str, vendor: str, feature: str, model: str, prompt: str) -> Outcome:
    """The `llm` CLI's own Python API (what `llm prompt`, `llm -T` and `llm --schema` call), configured by
    its `extra-openai-models.yaml` as README says."""
    import llm

    chat = llm.get_model(f"matrix-{model}")
    if feature == "plain":
        return Outcome(text=chat.prompt(prompt, stream=False).text())
    if feature == "stream":
        return Outcome(text="".join(chat.prompt(prompt)))
    if feature == "structured":
        return Outcome(parsed=json.loads(chat.prompt(prompt, schema=Weather).text()))
    options = {"reasoning_effort": "low"} if feature == "reasoning" else {}
    return Outcome(text=chat.chain(prompt, tools=[get_weather], options=options).text())


PYTHON_DRIVERS: dict[str, Callable[..., Outcome]] = {
    "openai-py": openai_py, "anthropic-py": anthropic_py,
    "langchain-openai": lambda *a: langchain(*a, flavour="openai"),
    "langchain-anthropic": lambda *a: langchain(*a, flavour="anthropic"),
    "pydantic-ai": pydantic_ai, "openai-agents": openai_agents, "llm": llm_client, "litellm": litellm_client,
}


@pytest.fixture(scope="module")
def llm_config(server, tmp_path_factory):
    """`llm`'s user directory with one model per vendor model, pointed at the server."""
    home = tmp_path_factory.mktemp("llm_user")
    entries = [{"model_id": f"matrix-{name}", "model_name": name, "api_base": server.url + "/v1",
                "api_key_name": "matrix", "supports_tools": True, "supports_schema": True,
                "reasoning": name in REASONING_MODELS.values()}
               for name in {*MODELS.values(), *REASONING_MODELS.values()}]
    (home / "extra-openai-models.yaml").write_text(json.dumps(entries))
    (home / "keys.json").write_text(json.dumps({"matrix": "unused"}))
    saved = os.environ.get("LLM_USER_PATH")
    os.environ["LLM_USER_PATH"] = str(home)
    yield home
    if saved is None:
        os.environ.pop("LLM_USER_PATH", None)
    else:
        os.environ["LLM_USER_PATH"] = saved


@pytest.mark.parametrize("client,vendor,feature", cells(), ids=["-".join(c) for c in cells()])
def test_cell(client, vendor, feature, server, fakes, llm_config):
    cell_id = f"{client}-{vendor}-{feature}"
    if client in NODE_CLIENTS:
        outcome = node_outcome(client, vendor, feature, server, fakes)
    else:
        driver = PYTHON_DRIVERS[client]
        model, prompt = model_for(vendor, feature), prompt_for(cell_id)
        outcome = run_cell(fakes, vendor, cell_id, lambda: driver(server.url, vendor, feature, model, prompt))
    check(vendor, feature, outcome, degraded=feature == "reasoning" and (client, vendor) in DEGRADED)
