"""The response cache (`app.llm.response_cache`) through the official openai and anthropic SDKs against
real servers, on SQLite, PostgreSQL and Redis: a repeat is answered from the cache (the fakes' logs
show no upstream call), in the shape and form (whole or streamed) it asked for, its content equal to
the original's; TTL, `Cache-Control`, per-key namespaces, shared namespaces and two instances."""
from __future__ import annotations

import json
import logging
import socket
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Iterator

import anthropic
import openai
import pytest
import redis

from app import create_app
from app.core.db import migrate, open_database
from app.keys import service
from app.keys.secret import hash_secret
from app.llm.providers.base import StreamEnd, Usage
from app.llm.response_cache import (
    CachedAnswer,
    DatabaseStore,
    RedisStore,
    ResponseCache,
    make_response_cache,
    prune_expired,
)
from tests.conftest import (
    NO_HEALTH_MEMORY,
    REDIS_URL,
    LiveServer,
    base_config,
    fresh_postgres_database,
    provider_config,
)
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.server import RecordedRequest, Reply

TTL_S = 60.0  # the shared servers': a repeat finds its entry however loaded the machine is
SHORT_TTL_S = 3.0  # where a test waits for an entry to expire
GENERATIONS = ("/v1/chat/completions", "/v1/responses", "/v1/messages")
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                          "required": ["city"]}}}]
CLAUDE_TOOLS = [{"name": "get_weather", "description": "Weather in a city",
                 "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


class Numbered:
    """The fakes' default reply: each upstream answer says its own number, so a repeat answered upstream
    differs from the first and one answered from the cache does not."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, request: RecordedRequest) -> Reply:
        self.count += 1
        return Reply(text=f"Answer number {self.count}.")


@dataclass
class Setup:
    server: LiveServer
    keys: dict[str, str]
    config: dict[str, Any]
    fakes: dict[str, Any]

    def openai(self, key: str = "a") -> openai.OpenAI:
        return openai.OpenAI(base_url=self.server.url + "/v1", api_key=self.keys[key], max_retries=0)

    def anthropic(self, key: str = "a") -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.server.url, api_key=self.keys[key], max_retries=0)

    def upstream_calls(self, marker: str) -> int:
        """Generation requests the fakes received whose body holds `marker`."""
        return sum(1 for fake in self.fakes.values() for r in fake.requests
                   if r.path in GENERATIONS and marker in json.dumps(r.json))


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, Any]]:
    with FakeOpenAI() as openai_fake, FakeAnthropic() as anthropic_fake:
        yield {"openai": openai_fake, "anthropic": anthropic_fake}


def cache_settings(fakes: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    return {**provider_config(**fakes), **NO_HEALTH_MEMORY, "RETRY_ATTEMPTS": 0, "RESPONSE_CACHE_TTL_S": TTL_S,
            "KEY_HASH_SECRET": "response-cache-test-secret", "USAGE_FLUSH_S": 0.1, "LOG_LEVEL": "INFO", **overrides}


def make_keys(config: dict[str, Any]) -> dict[str, str]:
    """Keys a and b (each its own cache), c and d (sharing the namespace `team`), off (not cached), and
    claude-only (in `team`, allowed one Claude model)."""
    app = create_app(config)
    migrate(app.extensions["database"])
    secret = hash_secret(config)
    specs = {"a": {}, "b": {}, "c": {"response_cache_namespace": "team"}, "d": {"response_cache_namespace": "team"},
             "off": {"response_cache": False}, "claude-only": {"response_cache_namespace": "team",
                                                              "models": ["claude-sonnet-5-5"]}}
    keys = {name: service.create_key(service.KeySpec(name, **spec), secret)[1] for name, spec in specs.items()}
    app.extensions["database"].close_all()
    return keys


@pytest.fixture(scope="module", params=["sqlite", "postgres", "redis"])
def setup(request, fakes, tmp_path_factory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp(f"response_cache_{request.param}")
    with ExitStack() as stack:
        settings = cache_settings(fakes)
        if request.param == "postgres":
            settings["DATABASE_URL"] = stack.enter_context(fresh_postgres_database())
        elif request.param == "redis":
            settings.update(REDIS_URL=REDIS_URL, QUEUE_NAME=f"response-cache-{uuid.uuid4().hex[:8]}")
        config = base_config(tmp, **settings)
        keys = make_keys(config)
        server = LiveServer(config)
        stack.callback(server.stop)
        yield Setup(server, keys, config, fakes)


@pytest.fixture(autouse=True)
def numbered(fakes) -> None:
    for fake in fakes.values():
        fake.reset()
        fake.default_reply = Numbered()


def question() -> list[dict[str, str]]:
    return [{"role": "user", "content": f"What is the answer? {uuid.uuid4().hex}"}]


def marker_of(messages: list[dict[str, str]]) -> str:
    return messages[-1]["content"].rsplit(" ", 1)[1]


# -- hit and miss ------------------------------------------------------------------------------------


def test_a_repeat_is_answered_from_the_cache_whole_and_streamed(setup):
    client, messages = setup.openai(), question()
    first = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages)
    again = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages)
    assert (first.headers["X-Cache"], again.headers["X-Cache"]) == ("MISS", "HIT")
    assert again.parse().choices[0].message.content == first.parse().choices[0].message.content == \
        "Answer number 1."
    assert again.parse().id != first.parse().id  # a new completion, the same answer
    assert int(again.headers["Age"]) <= TTL_S
    with client.chat.completions.with_streaming_response.create(model="gpt-4o-mini", messages=messages,
                                                                 stream=True) as streamed:
        assert streamed.headers["X-Cache"] == "HIT"  # a whole answer replayed as a stream
        text = "".join(chunk.choices[0].delta.content or "" for chunk in streamed.parse() if chunk.choices)
    assert text == "Answer number 1."
    assert setup.upstream_calls(marker_of(messages)) == 1


def test_a_different_request_or_model_is_a_miss(setup):
    client, messages = setup.openai(), question()
    client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    other_model = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=messages)
    other_parameter = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages,
                                                                       temperature=0.5)
    same_but_user = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages,
                                                                     user="someone-else")
    assert [r.headers["X-Cache"] for r in (other_model, other_parameter, same_but_user)] == ["MISS", "MISS", "HIT"]
    assert setup.upstream_calls(marker_of(messages)) == 3


def test_streamed_replay_has_the_original_text_reasoning_and_tool_calls(setup):
    fake, messages = setup.fakes["openai"], question()
    fake.enqueue(Reply(chunks=["Let me ", "look that up."], reasoning="The user wants the weather in Paris.",
                       tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}]))
    client = setup.openai()

    def streamed() -> tuple[str, list[Any], str]:
        with client.chat.completions.with_streaming_response.create(
                model="gpt-4o-mini", messages=messages, tools=TOOLS, stream=True) as response:
            chunks = [chunk for chunk in response.parse() if chunk.choices]
            return response.headers["X-Cache"], [c.choices[0].delta.model_dump(exclude_none=True) for c in chunks], \
                chunks[-1].choices[0].finish_reason

    first, again = streamed(), streamed()
    assert (first[0], again[0]) == ("MISS", "HIT")
    assert again[1:] == first[1:]  # every delta: text, reasoning_content, tool call pieces; the finish reason
    deltas = first[1]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == "The user wants the weather in Paris."
    assert "".join(d.get("content", "") for d in deltas) == "Let me look that up."
    calls = [call for d in deltas for call in d.get("tool_calls", [])]
    assert calls[0]["function"]["name"] == "get_weather"
    assert json.loads("".join(c["function"]["arguments"] for c in calls)) == {"city": "Paris"}
    assert first[2] == "tool_calls"
    whole = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages, tools=TOOLS)
    assert whole.headers["X-Cache"] == "HIT"  # the stream's parts, assembled
    message = whole.parse().choices[0].message
    assert (message.content, message.tool_calls[0].function.arguments) == ("Let me look that up.",
                                                                           '{"city": "Paris"}')
    assert setup.upstream_calls(marker_of(messages)) == 1


def test_anthropic_messages_stream_with_thinking_and_tools_is_replayed_event_for_event(setup):
    fake, messages = setup.fakes["anthropic"], question()
    fake.enqueue(Reply(chunks=["Checking."], reasoning="Paris weather, then answer.",
                       tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}]))
    client = setup.anthropic()
    options = dict(model="claude-sonnet-5-5", max_tokens=2048, messages=messages, tools=CLAUDE_TOOLS,
                   thinking={"type": "enabled", "budget_tokens": 1024})

    def streamed() -> tuple[str, list[dict[str, Any]]]:
        with client.messages.with_streaming_response.create(**options, stream=True) as response:
            return response.headers["X-Cache"], [event.model_dump() for event in response.parse()]

    first, again = streamed(), streamed()
    assert (first[0], again[0]) == ("MISS", "HIT")

    def content(events: list[dict[str, Any]]) -> list[dict[str, Any]]:  # the message's id is new on a hit
        return [{k: v for k, v in e.items() if k != "message"} for e in events]

    assert content(again[1]) == content(first[1])
    assert again[1][0]["message"]["id"] != first[1][0]["message"]["id"]
    kinds = [e["delta"]["type"] for e in first[1] if e["type"] == "content_block_delta"]
    assert {"thinking_delta", "signature_delta", "text_delta", "input_json_delta"} <= set(kinds)
    whole = client.messages.with_raw_response.create(**options)  # a vendor's own stream: its whole form apart
    assert whole.headers["X-Cache"] == "MISS"
    assert client.messages.with_raw_response.create(**options).headers["X-Cache"] == "HIT"
    assert setup.upstream_calls(marker_of(messages)) == 2


def test_responses_api_hits_are_new_stored_responses(setup):
    client, text = setup.openai(), question()[0]["content"]
    first = client.responses.with_raw_response.create(model="gpt-4o-mini", input=text)
    again = client.responses.with_raw_response.create(model="gpt-4o-mini", input=text)
    assert (first.headers["X-Cache"], again.headers["X-Cache"]) == ("MISS", "HIT")
    assert again.parse().output_text == first.parse().output_text == "Answer number 1."
    assert again.parse().id != first.parse().id
    assert client.responses.retrieve(again.parse().id).output_text == "Answer number 1."
    with client.responses.with_streaming_response.create(model="gpt-4o-mini", input=text, stream=True) as response:
        assert response.headers["X-Cache"] == "MISS"  # OpenAI's own stream is kept apart from its whole form
        list(response.parse())
    with client.responses.with_streaming_response.create(model="gpt-4o-mini", input=text, stream=True) as response:
        assert response.headers["X-Cache"] == "HIT"
        events = list(response.parse())
    done = events[-1].response
    assert done.output_text == "Answer number 2." and done.id != first.parse().id
    assert client.responses.retrieve(done.id).output_text == "Answer number 2."
    assert setup.upstream_calls(text.rsplit(" ", 1)[1]) == 2


# -- Cache-Control, TTL, what is not stored ----------------------------------------------------------


def test_no_cache_fetches_a_fresh_answer_and_keeps_it_no_store_neither_reads_nor_keeps(setup):
    client, messages = setup.openai(), question()

    def ask(**headers: str) -> tuple[str, str]:
        answer = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages,
                                                                  extra_headers=headers)
        return answer.headers.get("X-Cache"), answer.parse().choices[0].message.content

    assert ask() == ("MISS", "Answer number 1.")
    assert ask(**{"Cache-Control": "no-cache"}) == ("MISS", "Answer number 2.")
    assert ask() == ("HIT", "Answer number 2.")
    assert ask(**{"Cache-Control": "no-store"}) == ("BYPASS", "Answer number 3.")
    assert ask() == ("HIT", "Answer number 2.")
    assert setup.upstream_calls(marker_of(messages)) == 3


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def store(request, make_app, postgres_url):
    """Each store, on its real database or Redis (the app binds the database)."""
    if request.param == "postgres":
        make_app(DATABASE_URL=postgres_url)
        return DatabaseStore()
    make_app()
    if request.param == "redis":
        return RedisStore(redis.Redis.from_url(REDIS_URL), f"response-cache-{uuid.uuid4().hex[:8]}")
    return DatabaseStore()


def test_each_store_forgets_an_entry_after_its_ttl(store):
    cache, key = ResponseCache(store, ttl=0.5, max_bytes=10_000), uuid.uuid4().hex * 2
    entry = CachedAnswer("openai", "gpt-4o-mini", items=["Hello", StreamEnd("gpt-4o-mini", "stop", Usage(3, 1))])
    assert cache.put(key, entry)
    found = cache.get(key)
    assert found is not None and found.items == entry.items
    time.sleep(0.7)
    assert cache.get(key) is None
    assert cache.put(key, entry) and cache.get(key) is not None  # kept again over the expired one


def test_errors_and_cut_off_streams_are_not_kept(setup):
    fake, client, messages = setup.fakes["openai"], setup.openai(), question()
    fake.enqueue(Reply(status=400, error_message="Invalid 'messages'."))
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    fake.enqueue(Reply(chunks=["Half ", "an ", "answer"], error_after=1))
    with client.chat.completions.with_streaming_response.create(model="gpt-4o-mini", messages=messages,
                                                                 stream=True) as response:
        assert response.headers["X-Cache"] == "MISS"
        with pytest.raises(openai.APIError):
            list(response.parse())
    whole = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages)
    assert (whole.headers["X-Cache"], whole.parse().choices[0].message.content) == ("MISS", "Answer number 1.")


# -- namespaces ----------------------------------------------------------------------------------------


def test_one_key_never_reads_another_keys_answers(setup):
    messages = question()
    a = setup.openai("a").chat.completions.create(model="gpt-4o-mini", messages=messages)
    b = setup.openai("b").chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages)
    assert b.headers["X-Cache"] == "MISS"
    assert (a.choices[0].message.content, b.parse().choices[0].message.content) == ("Answer number 1.",
                                                                                    "Answer number 2.")
    team = setup.openai("c").chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages)
    assert team.parse().choices[0].message.content == "Answer number 3."  # neither a's nor b's


def test_keys_given_one_namespace_share_their_answers(setup):
    messages = question()
    first = setup.anthropic("c").messages.create(model="claude-sonnet-5-5", max_tokens=100, messages=messages)
    shared = setup.anthropic("d").messages.with_raw_response.create(model="claude-sonnet-5-5", max_tokens=100,
                                                                    messages=messages)
    assert shared.headers["X-Cache"] == "HIT"
    assert shared.parse().content[0].text == first.content[0].text == "Answer number 1."
    assert setup.upstream_calls(marker_of(messages)) == 1


def test_a_shared_answer_is_not_replayed_to_a_key_that_may_not_use_its_model(setup):
    messages = question()
    setup.openai("c").chat.completions.create(model="gpt-4o-mini", messages=messages)
    with pytest.raises(openai.PermissionDeniedError) as refused:
        setup.openai("claude-only").chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert refused.value.body["code"] == "model_not_allowed"


def test_a_key_made_with_the_cache_off_is_never_cached(setup):
    client, messages = setup.openai("off"), question()
    answers = [client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages)
               for _ in range(2)]
    assert [a.headers.get("X-Cache") for a in answers] == [None, None]
    assert [a.parse().choices[0].message.content for a in answers] == ["Answer number 1.", "Answer number 2."]


def test_a_hit_is_a_usage_row_with_no_tokens_and_no_cost(setup):
    client, messages = setup.openai(), question()
    client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    hit = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages)
    request_id = hit.headers["X-Request-ID"]
    db = open_database(setup.config["DATABASE_URL"])
    deadline, rows = time.monotonic() + 10, []
    try:
        while not rows and time.monotonic() < deadline:
            time.sleep(0.1)
            rows = db.execute_sql("SELECT status, prompt_tokens, completion_tokens, cost_usd FROM usage_record "
                                  f"WHERE request_id = {db.param}", (request_id,)).fetchall()
    finally:
        db.close_all()
    assert [tuple(row) for row in rows] == [("cache_hit", 0, 0, 0.0)]
    assert hit.parse().usage.prompt_tokens == 11  # the answer says what it took when it was made


# -- two instances sharing Redis, and configurations of their own ----------------------------------------


def test_two_instances_sharing_redis_share_the_cache_until_it_expires(fakes, tmp_path):
    shared = cache_settings(fakes, REDIS_URL=REDIS_URL, QUEUE_NAME=f"response-cache-{uuid.uuid4().hex[:8]}",
                            RESPONSE_CACHE_TTL_S=SHORT_TTL_S)
    first = LiveServer(base_config(tmp_path / "one", **shared))  # open mode: one namespace, no keys
    try:
        second = LiveServer(base_config(tmp_path / "two", **shared))
        try:
            messages = question()
            one = openai.OpenAI(base_url=first.url + "/v1", api_key="unused", max_retries=0)
            two = openai.OpenAI(base_url=second.url + "/v1", api_key="unused", max_retries=0)
            made = one.chat.completions.create(model="gpt-4o-mini", messages=messages)
            with two.chat.completions.with_streaming_response.create(model="gpt-4o-mini", messages=messages,
                                                                      stream=True) as response:
                assert response.headers["X-Cache"] == "HIT"
                text = "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
            time.sleep(SHORT_TTL_S + 0.5)
            late = one.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages)
            assert (late.headers["X-Cache"], late.parse().choices[0].message.content) == ("MISS", "Answer number 2.")
        finally:
            second.stop()
    finally:
        first.stop()
    assert text == made.choices[0].message.content == "Answer number 1."
    assert sum(1 for r in fakes["openai"].requests if r.path in GENERATIONS) == 2


def test_off_by_default_no_header(make_app, fake_openai):
    client = make_app(**provider_config(openai=fake_openai)).test_client()
    answers = [client.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": question()})
               for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    assert all("X-Cache" not in a.headers for a in answers)


def test_ask_is_cached_apart_from_chat_completions(make_app, fake_openai):
    client = make_app(**provider_config(openai=fake_openai), RESPONSE_CACHE_TTL_S=60).test_client()
    fake_openai.default_reply = Numbered()
    text = question()[0]["content"]
    asked = [client.post("/v1/ask", json={"question": text, "client_id": "eval", "user_id": "me", "stream": stream})
             for stream in (False, True)]
    assert [a.headers["X-Cache"] for a in asked] == ["MISS", "HIT"]
    assert "Answer number 1." in asked[1].get_data(as_text=True)  # the whole answer, replayed as chunks
    chat = client.post("/v1/chat/completions", json={"model": "gpt-4o-mini",
                                                     "messages": [{"role": "user", "content": text}]})
    assert (chat.headers["X-Cache"], chat.json["choices"][0]["message"]["content"]) == ("MISS", "Answer number 2.")


def test_an_answer_over_the_size_cap_is_answered_not_kept(make_app, fake_openai):
    client = make_app(**provider_config(openai=fake_openai), RESPONSE_CACHE_TTL_S=60,
                      RESPONSE_CACHE_MAX_BYTES=400).test_client()
    fake_openai.default_reply = Reply(text="long " * 200)
    messages = question()
    answers = [client.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": messages})
               for _ in range(2)]
    assert [a.headers["X-Cache"] for a in answers] == ["MISS", "MISS"]
    assert answers[1].json["choices"][0]["message"]["content"] == "long " * 200


def test_a_store_that_fails_is_a_miss_and_is_logged(caplog):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cache = make_response_cache({"RESPONSE_CACHE_TTL_S": 60, "RESPONSE_CACHE_MAX_BYTES": 10_000,
                                 "REDIS_URL": f"redis://127.0.0.1:{port}/0", "WEB_WORKER_CONNECTIONS": 10,
                                 "QUEUE_NAME": "down"})
    entry = CachedAnswer("openai", "gpt-4o-mini", answer={"text": "hi"})
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="aiserver.response_cache"):
        assert cache.put("k" * 64, entry) is False and cache.get("k" * 64) is None
        assert cache.get("k" * 64) is None
    assert time.monotonic() - started < 1.0  # no retries with backoff: a miss at once
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["response cache write failed"]  # then quiet


def test_expired_rows_are_pruned_by_the_nightly_job(make_app):
    app = make_app()
    cache = ResponseCache(DatabaseStore(), ttl=0.05, max_bytes=1000)
    for name in "ab":
        assert cache.put(name * 64, CachedAnswer("openai", "gpt-4o-mini", answer={"text": "hi"}))
    time.sleep(0.1)
    cache.ttl = 60
    assert cache.put("c" * 64, CachedAnswer("openai", "gpt-4o-mini", answer={"text": "kept"}))
    assert cache.get("a" * 64) is None  # expired: absent before it is pruned
    assert app.extensions["housekeeping_jobs"]["prune_response_cache"].call_local() == 2
    assert prune_expired() == 0 and cache.get("c" * 64) is not None


def test_keys_are_made_with_the_cache_off_or_in_a_shared_namespace(make_app):
    app = make_app(KEY_HASH_SECRET="response-cache-test-secret")
    runner = app.test_cli_runner()
    admin = runner.invoke(args=["keys", "create", "root", "--admin"], catch_exceptions=False)
    key = admin.output.split("key: ")[1].split()[0]
    client = app.test_client()
    headers = {"Authorization": f"Bearer {key}"}
    made = client.post("/admin/keys", headers=headers,
                       json={"name": "eval", "response_cache": False, "response_cache_namespace": "team"})
    assert made.status_code == 201
    assert (made.json["response_cache"], made.json["response_cache_namespace"]) == (False, "team")
    refused = client.post("/admin/keys", headers=headers, json={"name": "x", "response_cache_namespace": "a b"})
    assert refused.status_code == 400
    cli = runner.invoke(args=["keys", "create", "shared", "--response-cache-namespace", "team"])
    listed = runner.invoke(args=["keys", "list"]).output
    bad = runner.invoke(args=["keys", "create", "bad", "--response-cache-namespace", "no spaces"])
    assert cli.exit_code == 0 and bad.exit_code != 0
    assert "response-cache=off" in listed and "response-cache=team" in listed
