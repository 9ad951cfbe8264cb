"""Stored Responses through the official openai SDK: `store` (default true) keeps a response and its
input, `previous_response_id` continues a stored chain (across a server restart too), `retrieve`,
`delete` and `input_items.list` page as OpenAI documents, `store: false` leaves nothing behind, and a
response belongs to the key that made it. The storage functions also run on PostgreSQL."""
from __future__ import annotations

import sqlite3
import time
from typing import Any

import httpx2
import openai
import pytest
import requests

from app.core.caller import EVERYONE
from app.core.db import database
from app.frontdoors.responses import service as stored
from app.frontdoors.responses.models import InputItem, StoredResponse
from tests.conftest import NO_HEALTH_MEMORY, LiveServer, base_config, provider_config
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.gemini_api import FakeGemini
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.server import Reply
from tests.test_keys import cli_create

VENDORS = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-5-5", "gemini": "gemini-2.5-flash"}
ENGINES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(scope="module")
def fakes():
    with FakeOpenAI() as openai_fake, FakeAnthropic() as anthropic_fake, FakeGemini() as gemini_fake:
        yield {"openai": openai_fake, "anthropic": anthropic_fake, "gemini": gemini_fake}


@pytest.fixture(scope="module")
def server(fakes, tmp_path_factory):
    config = base_config(tmp_path_factory.mktemp("responses_store"),
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
    return sdk(server.url)


def sdk(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)


def ask(client: openai.OpenAI, stream: bool, **params: Any):
    if not stream:
        return client.responses.create(**params)
    with client.responses.stream(**params) as events:
        return events.get_final_response()


def conversation(vendor: str, sent: dict[str, Any]) -> list[tuple[str, str]]:
    """(role, text) of each message a vendor's fake received, in its own wire shape."""
    if vendor == "gemini":
        return [(m["role"], "".join(p.get("text", "") for p in m["parts"])) for m in sent["contents"]]
    if vendor == "openai":  # OpenAI's Responses API: the chain's items, then the input
        given = sent["input"]
        items = [{"role": "user", "content": given}] if isinstance(given, str) else given
        return [(i["role"], i["content"] if isinstance(i["content"], str) else
                 "".join(p.get("text", "") for p in i["content"])) for i in items]
    return [(m["role"], m["content"] if isinstance(m["content"], str) else
             "".join(p.get("text", "") for p in m["content"])) for m in sent["messages"]]


def rows(server: LiveServer, table: str) -> int:
    """Rows in `table` of a live server's SQLite database, read straight from the file."""
    with sqlite3.connect(server.config["DATABASE_URL"].split("sqlite:///", 1)[1]) as db:
        return db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("vendor", VENDORS)
def test_previous_response_id_continues_the_chain(client, fakes, vendor, stream):
    model = VENDORS[vendor]
    fakes[vendor].enqueue(Reply(text="Paris."), Reply(chunks=["About ", "two million."]), Reply(text="Welcome."))
    first = ask(client, stream, model=model, input="Capital of France?", instructions="Answer in one line.")
    assert first.store is True and first.previous_response_id is None
    second = ask(client, stream, model=model, input=[{"role": "user", "content": "Its population?"}],
                 previous_response_id=first.id)
    assert second.previous_response_id == first.id and second.output_text == "About two million."
    third = client.responses.create(model=model, input="Thanks!", previous_response_id=second.id)
    user, assistant = ("user", "model") if vendor == "gemini" else ("user", "assistant")
    assert conversation(vendor, fakes[vendor].requests[-1].json) == [
        (user, "Capital of France?"), (assistant, "Paris."), (user, "Its population?"),
        (assistant, "About two million."), (user, "Thanks!")]  # the first one's instructions are not carried
    assert client.responses.retrieve(third.id).output_text == "Welcome."


def test_previous_response_id_across_a_server_restart(live_server, fake_openai):
    settings = {"RETRY_ATTEMPTS": 0, **provider_config(openai=fake_openai)}
    fake_openai.enqueue(Reply(text="Paris."), Reply(chunks=["About ", "two million."]))
    before = live_server(**settings)
    first = sdk(before.url).responses.create(model="gpt-4o-mini", input="Capital of France?")
    before.stop()
    after = live_server(**settings)  # the same database file
    with sdk(after.url).responses.stream(model="gpt-4o-mini", input="Its population?",
                                         previous_response_id=first.id) as events:
        second = events.get_final_response()
    assert second.output_text == "About two million."
    assert conversation("openai", fake_openai.requests[-1].json) == [
        ("user", "Capital of France?"), ("assistant", "Paris."), ("user", "Its population?")]
    assert sdk(after.url).responses.retrieve(first.id).output_text == "Paris."


def test_retrieve_answers_the_response_as_it_was_created(client, fakes):
    fakes["openai"].enqueue(Reply(text="Hello.", prompt_tokens=9))
    created = client.responses.create(model=VENDORS["openai"], input="Hi", instructions="Be kind.",
                                      temperature=0.5, metadata={"ticket": "42"})
    retrieved = client.responses.retrieve(created.id)
    assert retrieved.model_dump() == created.model_dump()
    assert (retrieved.instructions, retrieved.temperature, retrieved.metadata) == ("Be kind.", 0.5, {"ticket": "42"})
    with pytest.raises(openai.BadRequestError, match="stream"):
        client.responses.retrieve(created.id, stream=True)


def test_delete_removes_the_response_and_its_input(client, server, fakes):
    first = client.responses.create(model=VENDORS["openai"], input="Hi")
    second = client.responses.create(model=VENDORS["openai"], input="Again", previous_response_id=first.id)
    deleted = requests.delete(f"{server.url}/v1/responses/{first.id}", timeout=10)
    assert deleted.json() == {"id": first.id, "object": "response.deleted", "deleted": True}
    for call in (lambda: client.responses.retrieve(first.id), lambda: client.responses.delete(first.id),
                 lambda: client.responses.input_items.list(first.id)):
        with pytest.raises(openai.NotFoundError) as raised:
            call()
        assert raised.value.body["type"] == "not_found_error"
    client.responses.create(model=VENDORS["openai"], input="Last", previous_response_id=second.id)
    assert conversation("openai", fakes["openai"].requests[-1].json) == [
        ("user", "Again"), ("assistant", "Hello from the fake."), ("user", "Last")]  # the chain ends at a deleted one
    client.responses.delete(second.id)
    with pytest.raises(openai.NotFoundError, match="previous_response_id|not found"):
        client.responses.create(model=VENDORS["openai"], input="More", previous_response_id=second.id)


def test_input_items_are_listed_and_paged_as_openai_documents(client):
    given = [{"role": "developer", "content": "Be terse."},
             {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "One"}]},
             {"role": "assistant", "content": "Two"}, {"role": "user", "content": "Three"}]
    response = client.responses.create(model=VENDORS["openai"], input=given)
    newest_first = client.responses.input_items.list(response.id)
    assert [item.content[0].text for item in newest_first.data] == ["Three", "Two", "One", "Be terse."]
    assert newest_first.data[0].type == "message" and newest_first.data[0].id.startswith("msg_")
    assert newest_first.data[1].content[0].type == "output_text" and not newest_first.has_more
    page = client.responses.input_items.list(response.id, order="asc", limit=3)
    assert [item.role for item in page.data] == ["developer", "user", "assistant"] and page.has_more
    assert (page.first_id, page.last_id) == (page.data[0].id, page.data[-1].id)
    rest = client.responses.input_items.list(response.id, order="asc", limit=3, after=page.last_id)
    assert [item.content[0].text for item in rest.data] == ["Three"] and not rest.has_more
    assert [item.id for item in page] == [item.id for item in reversed(newest_first.data)]  # the SDK pages on
    with pytest.raises(openai.BadRequestError, match="after"):
        client.responses.input_items.list(response.id, after="msg_nowhere")
    with pytest.raises(openai.BadRequestError, match="limit"):
        client.responses.input_items.list(response.id, limit=101)


def test_a_tool_loop_keeps_its_function_items(client, fakes):
    tools = [{"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}]
    fakes["gemini"].enqueue(Reply(tool_calls=[{"name": "get_weather", "arguments": {}}]), Reply(text="Sunny."))
    first = client.responses.create(model=VENDORS["gemini"], input="Weather?", tools=tools)
    call = next(item for item in first.output if item.type == "function_call")
    second = client.responses.create(model=VENDORS["gemini"], tools=tools, previous_response_id=first.id,
                                     input=[{"type": "function_call_output", "call_id": call.call_id,
                                             "output": "sunny"}])
    assert second.output_text == "Sunny."
    contents = fakes["gemini"].requests[-1].json["contents"]
    assert [kind for content in contents for part in content["parts"]
            for kind in ("text", "functionCall", "functionResponse") if kind in part] == [
        "text", "functionCall", "functionResponse"]
    items = client.responses.input_items.list(second.id).data
    assert [(item.type, item.call_id, item.id.startswith("fco_")) for item in items] == [
        ("function_call_output", call.call_id, True)]


def test_store_false_leaves_nothing_behind(client, server, fakes):
    before = (rows(server, "stored_response"), rows(server, "response_input_item"))
    whole = client.responses.create(model=VENDORS["openai"], input="Hi", store=False)
    streamed = ask(client, True, model=VENDORS["gemini"], input="Hi", store=False)
    assert whole.store is False and streamed.store is False
    assert (rows(server, "stored_response"), rows(server, "response_input_item")) == before
    for response_id in (whole.id, streamed.id):
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(response_id)


def test_a_failed_stream_is_stored_failed_and_a_cut_one_incomplete(client, server, fakes):
    fakes["openai"].enqueue(Reply(chunks=["Half ", "an ", "answer"], reset_after=1))
    with client.responses.stream(model=VENDORS["openai"], input="Hi") as events:
        failed = [event for event in events if event.type == "response.failed"][0].response
    kept = client.responses.retrieve(failed.id)
    assert kept.status == "failed" and kept.error is not None and kept.output[0].content[0].text == "Half "
    fakes["anthropic"].enqueue(Reply(chunks=["Slow ", "words ", "here"], chunk_delay=2))
    with requests.post(f"{server.url}/v1/responses", json={"model": VENDORS["anthropic"], "input": "Hi",
                                                           "stream": True}, stream=True, timeout=10) as cut:
        created = next(line for line in cut.iter_lines() if line.startswith(b"data: "))
    response_id = openai.types.responses.ResponseCreatedEvent.model_validate_json(created[6:]).response.id
    assert wait_for(lambda: stored_status(client, response_id)) == "incomplete"


def stored_status(client: openai.OpenAI, response_id: str) -> str | None:
    try:
        return client.responses.retrieve(response_id).status
    except openai.NotFoundError:
        return None


def wait_for(read, timeout: float = 15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = read()
        if value is not None:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_responses_belong_to_the_key_that_made_them(make_app, fake_openai):
    app = make_app(**provider_config(openai=fake_openai))
    admin, a, b = (cli_create(app, "admin", "--admin"), cli_create(app, "a"), cli_create(app, "b"))

    def as_key(key: str) -> openai.OpenAI:
        return openai.OpenAI(api_key=key, base_url="http://testserver/v1", max_retries=0,
                             http_client=httpx2.Client(transport=httpx2.WSGITransport(app=app)))

    mine = as_key(a).responses.create(model="gpt-4o-mini", input="Mine")
    for call in (lambda: as_key(b).responses.retrieve(mine.id), lambda: as_key(b).responses.delete(mine.id),
                 lambda: as_key(b).responses.input_items.list(mine.id),
                 lambda: as_key(b).responses.create(model="gpt-4o-mini", input="x", previous_response_id=mine.id)):
        with pytest.raises(openai.NotFoundError):
            call()
    assert len(fake_openai.requests) == 1  # the refused continuation never reached the provider
    assert as_key(admin).responses.retrieve(mine.id).id == mine.id
    assert as_key(a).responses.create(model="gpt-4o-mini", input="On", previous_response_id=mine.id).id
    as_key(a).responses.delete(mine.id)


@pytest.fixture(params=ENGINES)
def store_app(request, make_app, tmp_path):
    """The app on an empty response store, on SQLite or PostgreSQL (shared by this session's tests)."""
    url = f"sqlite:///{tmp_path / 'store.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    app = make_app(DATABASE_URL=url)
    with database.connection_context():
        InputItem.delete().execute()
        StoredResponse.delete().execute()
    return app


def response(response_id: str, previous: str | None = None, text: str = "ok") -> dict[str, Any]:
    return {"id": response_id, "object": "response", "created_at": 1700000000, "model": "m", "status": "completed",
            "previous_response_id": previous, "instructions": None, "usage": {"total_tokens": 3},
            "output": [{"type": "message", "id": f"msg_{response_id}", "role": "assistant", "status": "completed",
                        "content": [{"type": "output_text", "text": text, "annotations": []}]}],
            "tools": [], "store": True, "provider": "openai"}


def user(item_id: str, text: str) -> dict[str, Any]:
    return {"id": item_id, "type": "message", "role": "user", "status": "completed",
            "content": [{"type": "input_text", "text": text}]}


def test_the_storage_functions(store_app):
    stored.save(response("resp_1"), [user("a1", "Q1"), user("a2", "Q2")], owner="key_a")
    stored.save(response("resp_2", previous="resp_1", text="A2"), [user("b1", "Q3")], owner="key_a")
    assert stored.get("resp_2", "key_a") == response("resp_2", previous="resp_1", text="A2")
    chain = stored.chain_items("resp_2", "key_a")
    assert [item["id"] for item in chain] == ["a1", "a2", "msg_resp_1", "b1", "msg_resp_2"]
    page = stored.input_items("resp_1", "key_a", limit=1, order="desc", after=None)
    assert ([i["id"] for i in page["data"]], page["has_more"]) == (["a2"], True)
    page = stored.input_items("resp_1", "key_a", limit=1, order="desc", after="a2")
    assert ([i["id"] for i in page["data"]], page["first_id"], page["has_more"]) == (["a1"], "a1", False)
    assert stored.get("resp_1", EVERYONE)["id"] == "resp_1"
    for read in (lambda: stored.get("resp_1", "key_b"), lambda: stored.get("resp_1", None),
                 lambda: stored.chain_items("resp_2", "key_b"), lambda: stored.delete("resp_1", "key_b")):
        with pytest.raises(stored.ResponseNotFound):
            read()
    stored.delete("resp_1", "key_a")
    assert [item["id"] for item in stored.chain_items("resp_2", "key_a")] == ["b1", "msg_resp_2"]
    with database.connection_context():
        assert InputItem.select().where(InputItem.response == "resp_1").count() == 0
