"""Prompt caching through every front door, driven by the official openai and anthropic SDKs through a
real Gunicorn + gevent server against the vendor fakes (which cache as each vendor documents):
Anthropic's `cache_control` marks reach Claude from /v1/chat/completions, /v1/responses and
/v1/messages; a vendor that caches by itself (OpenAI, Gemini) is sent no marks and says so in
X-Dropped-Params; cached reads and writes come back in each API's own usage shape, whole and
streamed, and reach the usage rows, /usage, /v1/key/info and the cost, at the cached rates."""
from __future__ import annotations

import json
import time

import anthropic
import openai
import pytest
import requests

from app import create_app
from app.core.db import database, migrate
from app.keys import service
from app.keys.models import UsageRecord
from app.keys.prices import Price, PriceTable, parse_overrides
from app.keys.secret import hash_secret
from app.llm.providers.base import CompletionRequest
from tests.conftest import NO_HEALTH_MEMORY, LiveServer, base_config, provider_config
from tests.fakes.anthropic_api import FakeAnthropic, cache_segments
from tests.fakes.gemini_api import FakeGemini
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.server import PromptCache, Reply
from tests.test_upstream_kinds import MODELS, build

CLAUDE, GPT, GEMINI = "claude-sonnet-5-5", "gpt-4o-mini", "gemini-2.5-flash"
# USD per million tokens: prompt / completion / cache read / cache write (Claude Sonnet's published rates)
# and 1-hour cache write
RATES = {CLAUDE: (3.0, 15.0, 0.3, 3.75, 6.0), GPT: (0.15, 0.6, 0.075, 0.15 * 1.25, 0.3)}
EPHEMERAL = {"type": "ephemeral"}
ONE_HOUR = {"type": "ephemeral", "ttl": "1h"}
TOOL = {"type": "function", "function": {"name": "lookup", "description": "Look a term up in the manual",
                                         "parameters": {"type": "object", "properties": {"term": {"type": "string"}}}}}


def manual(tag: str) -> str:
    """A system prompt long enough to be cached (over 1,024 tokens at four characters a token)."""
    return f"[{tag}] " + "Every answer follows the house manual, section by section. " * 100


@pytest.fixture(scope="module")
def fakes():
    with FakeOpenAI() as openai_fake, FakeAnthropic() as anthropic_fake, FakeGemini() as gemini_fake:
        yield {"openai": openai_fake, "anthropic": anthropic_fake, "gemini": gemini_fake}


@pytest.fixture(scope="module")
def stack(fakes, tmp_path_factory):
    """The live server, and the app whose database it shares (to make keys and read rows)."""
    overrides = [f"{model}={'/'.join(map(str, rates))}" for model, rates in RATES.items()]
    config = base_config(tmp_path_factory.mktemp("prompt_cache"), **NO_HEALTH_MEMORY, RETRY_ATTEMPTS=0,
                         LOG_LEVEL="INFO", USAGE_FLUSH_S=0.05, PRICE_OVERRIDES=overrides, **provider_config(**fakes))
    app = create_app(config)
    migrate(app.extensions["database"])
    live = LiveServer(config)
    yield live, app
    live.stop()


@pytest.fixture
def key(stack, fakes):
    """A new key's id and secret, so each test reads only its own usage; the fakes start afresh."""
    for fake in fakes.values():
        fake.reset()
        fake.default_reply = Reply(text="Noted.", prompt_tokens=9, completion_tokens=4)
    _, app = stack
    with database.connection_context():
        row, secret = service.create_key(service.KeySpec(f"cache-{time.monotonic_ns()}", monthly_budget_usd=1.0),
                                         hash_secret(app.config))
    return row.id, secret


@pytest.fixture
def oa(stack, key):
    live, _ = stack
    return openai.OpenAI(base_url=live.url + "/v1", api_key=key[1], max_retries=0)


@pytest.fixture
def claude(stack, key):
    live, _ = stack
    return anthropic.Anthropic(base_url=live.url, api_key=key[1], max_retries=0)


def chat_messages(tag: str, question: str) -> list[dict]:
    """A marked system prompt (1-hour breakpoint on its part) and a user message marked as a whole."""
    return [{"role": "system", "content": [{"type": "text", "text": manual(tag), "cache_control": ONE_HOUR}]},
            {"role": "user", "content": question, "cache_control": EPHEMERAL}]


def rows_of(key_id: str, count: int) -> list[UsageRecord]:
    """The key's `ok` usage rows, once `count` of them are written (bounded wait)."""
    deadline = time.monotonic() + 10
    while True:
        with database.connection_context():
            rows = list(UsageRecord.select().where((UsageRecord.key_id == key_id) & (UsageRecord.status == "ok"))
                        .order_by(UsageRecord.id))
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def hand_cost(model: str, prompt: int, completion: int, read: int, write: int, hour: int = 0) -> float:
    """USD for the tokens, `read` and `write` of the prompt's, `hour` of the writes kept for an hour."""
    rate_in, rate_out, rate_read, rate_write, rate_hour = RATES[model]
    return ((prompt - read - write) * rate_in + read * rate_read + (write - hour) * rate_write + hour * rate_hour
            + completion * rate_out) / 1e6


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_chat_completions_carry_cache_control_to_claude_and_report_reads_and_writes(oa, fakes, key, stack, stream):
    tag = f"chat-{stream}"
    usages = []
    for question in ("First question?", "Second question?"):
        messages = chat_messages(tag, question)
        tools = [{**TOOL, "cache_control": EPHEMERAL}]
        if stream:
            chunks = list(oa.chat.completions.create(model=CLAUDE, messages=messages, tools=tools, stream=True,
                                                     stream_options={"include_usage": True}))
            usages.append(chunks[-1].usage)
        else:
            usages.append(oa.chat.completions.create(model=CLAUDE, messages=messages, tools=tools).usage)
    marks = fakes["anthropic"].received_marks
    assert marks[0] == [("tools.0", EPHEMERAL), ("system.0", ONE_HOUR), ("messages.0.content.0", EPHEMERAL)]
    sent = fakes["anthropic"].requests[0].json
    assert sent["system"] == [{"type": "text", "text": manual(tag), "cache_control": ONE_HOUR}]
    assert sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": "First question?",
                                                              "cache_control": EPHEMERAL}]}]
    first, second = usages
    written = first.prompt_tokens_details.model_extra["cache_creation_tokens"]
    assert written > 1024 and first.prompt_tokens_details.cached_tokens == 0
    assert first.prompt_tokens == 9 + written  # OpenAI's count: the cache writes included
    # the second call reads the tools and system prompt (unchanged), writes its new question
    read = second.prompt_tokens_details.cached_tokens
    assert 1024 < read < written
    assert second.prompt_tokens == 9 + read + second.prompt_tokens_details.model_extra["cache_creation_tokens"]
    rows = rows_of(key[0], 2)
    assert [(r.cached_read_tokens, r.cache_write_tokens) for r in rows] == [
        (0, written), (read, second.prompt_tokens - 9 - read)]
    # the first call wrote the tools and system prompt for an hour (their mark's ttl), its question for 5 minutes
    hour = PromptCache.tokens([block for _, block, _ in cache_segments(sent)[:2]])
    assert hour == read
    first_row, second_row = rows
    assert first_row.cost_usd == pytest.approx(hand_cost(CLAUDE, first_row.prompt_tokens, first_row.completion_tokens,
                                                         0, written, hour))
    assert second_row.cost_usd == pytest.approx(hand_cost(CLAUDE, second_row.prompt_tokens,
                                                          second_row.completion_tokens, read,
                                                          second_row.cache_write_tokens))


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_responses_carry_cache_control_to_claude_and_report_cached_tokens(oa, fakes, stream):
    tool = {"type": "function", "name": "lookup", "parameters": {"type": "object"}, "cache_control": EPHEMERAL}
    usages = []
    for question in ("One?", "Two?"):
        given = [{"role": "developer", "content": [{"type": "input_text", "text": manual(f"responses-{stream}"),
                                                    "cache_control": EPHEMERAL}]},
                 {"role": "user", "content": [{"type": "input_text", "text": question}]}]
        if stream:
            events = list(oa.responses.create(model=CLAUDE, input=given, tools=[tool], stream=True))
            usages.append(events[-1].response.usage)
        else:
            usages.append(oa.responses.create(model=CLAUDE, input=given, tools=[tool]).usage)
    assert fakes["anthropic"].received_marks[1] == [("tools.0", EPHEMERAL), ("system.0", EPHEMERAL)]
    first, second = usages
    assert first.input_tokens_details.cached_tokens == 0 and first.input_tokens > 1024
    assert second.input_tokens_details.cached_tokens == first.input_tokens - 9  # what the first call wrote
    assert second.input_tokens == 9 + second.input_tokens_details.cached_tokens


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_messages_pass_cache_control_to_claude_as_it_came_with_anthropics_usage(claude, fakes, key, stream):
    system = [{"type": "text", "text": "You answer briefly."},
              {"type": "text", "text": manual(f"messages-{stream}"), "cache_control": EPHEMERAL}]
    usages = []
    for question in ("A?", "B?"):
        params = dict(model=CLAUDE, max_tokens=50, system=system, messages=[{"role": "user", "content": question}])
        if stream:
            with claude.messages.stream(**params) as events:
                usages.append(events.get_final_message().usage)
        else:
            usages.append(claude.messages.create(**params).usage)
    assert fakes["anthropic"].requests[0].json["system"] == system
    assert fakes["anthropic"].received_marks[0] == [("system.1", EPHEMERAL)]
    first, second = usages
    assert first.input_tokens == 9 and first.cache_read_input_tokens == 0 and first.cache_creation_input_tokens > 1024
    assert (second.cache_read_input_tokens, second.cache_creation_input_tokens) == (
        first.cache_creation_input_tokens, 0)
    rows = rows_of(key[0], 2)
    assert [(r.prompt_tokens, r.cached_read_tokens, r.cache_write_tokens) for r in rows] == [
        (9 + first.cache_creation_input_tokens, 0, first.cache_creation_input_tokens),
        (9 + second.cache_read_input_tokens, second.cache_read_input_tokens, 0)]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_openai_caches_by_itself_the_marks_are_dropped_and_named(stack, key, fakes, stream):
    live, _ = stack
    body = {"model": GPT, "messages": chat_messages(f"openai-{stream}", "Same question?"), "tools": [TOOL]}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    answers = [requests.post(live.url + "/v1/chat/completions", json=body, timeout=30,
                             headers={"Authorization": f"Bearer {key[1]}"}) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].headers["X-Dropped-Params"] == "cache_control"
    assert "cache_control" not in fakes["openai"].requests[0].body.decode()
    usages = [a.json()["usage"] if not stream else
              next(chunk for chunk in sse_data(a.text) if chunk.get("usage"))["usage"] for a in answers]
    assert "prompt_tokens_details" not in usages[0]  # nothing cached yet
    cached = usages[1]["prompt_tokens_details"]["cached_tokens"]
    assert cached >= 1024 and cached % 128 == 0 and usages[1]["prompt_tokens"] > cached
    rows = rows_of(key[0], 2)
    assert [r.cached_read_tokens for r in rows] == [0, cached]
    assert rows[1].cost_usd == pytest.approx(hand_cost(GPT, rows[1].prompt_tokens, rows[1].completion_tokens,
                                                       cached, 0))


def sse_data(text: str) -> list[dict]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]


def test_gemini_implicit_caching_reaches_the_chat_and_anthropic_shapes(oa, claude, fakes):
    messages = [{"role": "system", "content": manual("gemini")}, {"role": "user", "content": "Hello?"}]
    oa.chat.completions.create(model=GEMINI, messages=messages)
    again = oa.chat.completions.create(model=GEMINI, messages=messages)
    assert again.usage.prompt_tokens_details.cached_tokens >= 1024
    via_messages = claude.messages.create(model=GEMINI, max_tokens=20, system=manual("gemini"),
                                          messages=[{"role": "user", "content": "Hello?"}])
    usage = via_messages.usage
    assert usage.cache_read_input_tokens >= 1024 and usage.cache_creation_input_tokens == 0
    assert usage.input_tokens == again.usage.prompt_tokens - usage.cache_read_input_tokens
    marked = oa.chat.completions.with_raw_response.create(model=GEMINI, messages=chat_messages("gemini", "Hi?"))
    assert marked.headers["X-Dropped-Params"] == "cache_control"
    assert b"cache_control" not in fakes["gemini"].requests[-1].body


def test_usage_and_key_info_sum_cached_tokens_and_the_budget_pays_the_cached_price(claude, stack, key):
    live, _ = stack
    system = [{"type": "text", "text": manual("budget"), "cache_control": EPHEMERAL}]
    for question in ("x?", "y?", "z?"):
        claude.messages.create(model=CLAUDE, max_tokens=20, system=system,
                               messages=[{"role": "user", "content": question}])
    rows = rows_of(key[0], 3)
    read = sum(r.cached_read_tokens for r in rows)
    written = sum(r.cache_write_tokens for r in rows)
    assert written > 1024 and read == 2 * written
    cost = sum(hand_cost(CLAUDE, r.prompt_tokens, r.completion_tokens, r.cached_read_tokens, r.cache_write_tokens)
               for r in rows)
    full_price = sum(r.prompt_tokens * 3.0 + r.completion_tokens * 15.0 for r in rows) / 1e6
    assert cost < full_price
    headers = {"Authorization": f"Bearer {key[1]}"}
    summed = requests.get(live.url + "/usage?group_by=model", headers=headers, timeout=10).json()["rows"]
    assert [(r["model"], r["cached_read_tokens"], r["cache_write_tokens"]) for r in summed] == [
        (CLAUDE, read, written)]
    assert summed[0]["cost_usd"] == pytest.approx(cost)
    info = requests.get(live.url + "/v1/key/info", headers=headers, timeout=10).json()["usage"]
    assert (info["cached_read_tokens_this_month"], info["cache_write_tokens_this_month"]) == (read, written)
    assert info["cost_this_month_usd"] == pytest.approx(cost, abs=1e-6)
    assert info["monthly_budget_left_usd"] == pytest.approx(1.0 - cost, abs=1e-6)


@pytest.mark.parametrize("body, problem", [
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "x"}}]}]},
     "cache_control must be"),
    ({"messages": [{"role": "user", "content": "hi", "cache_control": {"type": "ephemeral", "ttl": "2h"}}]},
     "cache_control.ttl"),
])
def test_a_malformed_mark_is_a_400_naming_it(stack, key, body, problem):
    live, _ = stack
    answer = requests.post(live.url + "/v1/chat/completions", json={"model": CLAUDE, **body}, timeout=10,
                           headers={"Authorization": f"Bearer {key[1]}"})
    assert answer.status_code == 400 and problem in answer.json()["error"]["message"]


def test_prices_charge_cached_reads_and_writes_at_their_rates():
    table = PriceTable.from_config({})
    sonnet = table.price("claude-sonnet-4-5-20250929")
    assert sonnet == Price(3.0, 15.0, 0.3, 3.75, 6.0)
    # 1,000 uncached + 10,000 read + 2,000 written prompt tokens, 500 completion tokens
    assert table.cost("claude-sonnet-4-5", 13_000, 500, 10_000, 2_000) == pytest.approx(
        (1_000 * 3.0 + 10_000 * 0.3 + 2_000 * 3.75 + 500 * 15.0) / 1e6)
    assert table.cost("claude-sonnet-4-5", 3_000, 0, 0, 3_000, 1_000) == pytest.approx(
        (2_000 * 3.75 + 1_000 * 6.0) / 1e6)  # 1,000 of the writes kept an hour
    assert table.cost("gpt-4o", 2_000, 0, 1_024) == pytest.approx((976 * 2.5 + 1_024 * 1.25) / 1e6)
    bare = parse_overrides(["m=2/8"])["m"]  # no cached rates: reads at the prompt rate, writes 1.25x, 1-hour 2x
    assert bare.cost(1_000, 0, 400, 100, 40) == pytest.approx((500 * 2 + 400 * 2 + 60 * 2.5 + 40 * 4) / 1e6)
    assert parse_overrides(["m=2/8/0.2/2.5"])["m"] == Price(2.0, 8.0, 0.2, 2.5)
    assert PriceTable.from_config({}, {"mine": {"input": 1.0, "output": 2.0, "cached_input": 0.1,
                                                "cache_write_input": 1.25}}).price("mine") == Price(1.0, 2.0, 0.1, 1.25)


def test_the_fake_prompt_cache_keeps_only_long_prefixes():
    cache = PromptCache()
    assert cache.store(["short"]) == 0 and cache.hit(["short"]) == 0
    long = ["x" * 4200]
    assert cache.store([long]) == PromptCache.tokens(long) and cache.hit([["other"], long]) == PromptCache.tokens(long)


@pytest.mark.parametrize("kind", ["bedrock", "vertex-claude"])
def test_claude_on_bedrock_and_vertex_takes_the_marks_and_reports_the_cache(kind, request):
    fake = request.getfixturevalue("fake_" + kind.partition("-")[0])
    provider = build(kind, fake)
    marked = CompletionRequest([{"role": "system", "content": [{"type": "text", "text": manual(kind),
                                                                "cache_control": EPHEMERAL}]},
                                {"role": "user", "content": "Hi?"}])
    fake.enqueue(Reply(prompt_tokens=5), Reply(prompt_tokens=5))
    first = provider.complete(marked, MODELS[kind]).usage
    assert fake.requests[-1].json["system"] == [{"type": "text", "text": manual(kind), "cache_control": EPHEMERAL}]
    second = list(provider.stream(marked, MODELS[kind]))[-1].usage
    assert first.cache_write_tokens > 1024 and first.cached_tokens == 0
    assert (second.cached_tokens, second.cache_write_tokens) == (first.cache_write_tokens, 0)
    assert second.prompt_tokens == 5 + second.cached_tokens


def test_responses_to_openai_itself_go_without_the_marks_and_read_its_automatic_cache(oa, fakes):
    given = [{"role": "developer", "content": [{"type": "input_text", "text": manual("native"),
                                                "cache_control": EPHEMERAL}]},
             {"role": "user", "content": "Again?"}]
    tool = {"type": "function", "name": "lookup", "parameters": {"type": "object"}, "cache_control": EPHEMERAL}
    answers = [oa.responses.with_raw_response.create(model=GPT, input=given, tools=[tool]) for _ in range(2)]
    assert [a.headers.get("X-Dropped-Params") for a in answers] == ["cache_control", "cache_control"]
    sent = fakes["openai"].requests[-1]
    assert sent.path == "/v1/responses" and b"cache_control" not in sent.body  # OpenAI refuses the field
    assert sent.json["input"][0]["content"][0]["text"] == manual("native")
    first, second = (a.parse().usage for a in answers)
    assert first.input_tokens_details.cached_tokens == 0
    assert second.input_tokens_details.cached_tokens >= 1024


def test_messages_to_another_vendor_name_the_marks_they_leave_out(claude, fakes):
    system = [{"type": "text", "text": manual("translated"), "cache_control": EPHEMERAL}]
    tools = [{"name": "lookup", "input_schema": {"type": "object"}, "cache_control": EPHEMERAL}]
    answers = [claude.messages.with_raw_response.create(model=GPT, max_tokens=20, system=system, tools=tools,
                                                        messages=[{"role": "user", "content": "Hi?"}])
               for _ in range(2)]
    assert answers[0].headers["X-Dropped-Params"] == "cache_control"
    assert b"cache_control" not in fakes["openai"].requests[-1].body
    usage = answers[1].parse().usage
    # what OpenAI answered the second call (asked again of the fake: its cache already holds the prompt)
    prompt, cached = fakes["openai"].prompt_counts(Reply(prompt_tokens=9), fakes["openai"].requests[-1])
    assert cached >= 1024 and (usage.cache_read_input_tokens, usage.input_tokens) == (cached, prompt - cached)
