"""Persisted conversations: the endpoints in the older clients' shapes, durability, serialisation, context.

Most tests run on SQLite and on PostgreSQL (a database made for this session and dropped after it);
the ones that must see a real client disconnect or two requests at once go through a real Gunicorn +
gevent server (`live_server`); they take `fake_openai` before `live_server` so that the server stops
before its provider does (a server whose upstream vanished first takes seconds longer to stop).
"""
from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import gevent
import pytest
import requests

from app.conversations import service as conversations
from app.conversations.models import Conversation, Message
from app.conversations.service import ChatBusy, ChatSettings
from app.conversations.system_prompt import DEFAULT_SYSTEM_PROMPT, SystemPrompt
from app.core.db import database
from tests.conftest import provider_config
from tests.fakes.server import Reply

CHAT_ID_RULE_WORDS = "1 to 64 characters"
PIECES = [f"w{i} " for i in range(30)]



ENGINES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=ENGINES)
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'chat.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def app(make_app, fake_openai, database_url):
    """The app on an empty chat store (the PostgreSQL database is shared by this session's tests)."""
    app = make_app(DATABASE_URL=database_url, **provider_config(openai=fake_openai))
    with database.connection_context():
        Message.delete().execute()
        Conversation.delete().execute()
    return app


@pytest.fixture
def client(app):
    return app.test_client()


def new_id() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def sse_events(body: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]


def history_of(client, chat_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/chat/history/{chat_id}")
    assert response.status_code == 200, response.json
    return response.json["history"]["messages"]


# -- the README's walk-through: start, continue, list, view, delete ------------------------------------


def test_start_continue_list_view_delete_with_a_custom_id(client, fake_openai):
    chat_id = new_id()
    fake_openai.enqueue(Reply(text="Jupiter has 95 moons."), Reply(text="Saturn has more."))
    first = client.post("/chat", json={"message": "Tell me a fun fact about space", "chat_id": chat_id})
    assert first.status_code == 200
    assert first.json == {"response": "Jupiter has 95 moons.", "chat_id": chat_id, "provider": "openai",
                          "model": "gpt-4o-mini", "success": True, "message_id": first.json["message_id"],
                          "answer_id": first.json["message_id"] + 1,
                          "reasoning": "", "usage": {"prompt_tokens": 11, "completion_tokens": 4,
                                                     "total_tokens": 15},
                          "cost_usd": pytest.approx((11 * 0.15 + 4 * 0.6) / 1e6)}  # gpt-4o-mini in prices.json
    second = client.post("/chat", json={"message": "And Saturn?", "chat_id": chat_id})
    assert second.json["response"] == "Saturn has more."
    sent = fake_openai.requests[-1].json["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert [m["content"] for m in sent[1:]] == ["Tell me a fun fact about space", "Jupiter has 95 moons.",
                                                "And Saturn?"]

    listed = client.get("/chat/history").json
    assert listed["success"] is True
    summary = listed["chats"][chat_id]
    assert summary["message_count"] == 5
    assert set(summary) >= {"created_at", "last_updated", "message_count"}

    view = client.get(f"/chat/history/{chat_id}").json
    assert view["chat_id"] == chat_id and view["success"] is True
    messages = view["history"]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant"]
    assert messages[2]["content"] == "Jupiter has 95 moons." and messages[2]["status"] == "complete"
    assert all(m["timestamp"] for m in messages)

    deleted = client.delete(f"/chat/delete/{chat_id}")
    assert deleted.status_code == 200
    assert deleted.json == {"message": f"Chat {chat_id} deleted successfully", "success": True}
    assert client.get(f"/chat/history/{chat_id}").status_code == 404
    assert chat_id not in client.get("/chat/history").json["chats"]


def test_a_generated_id_is_a_uuid_and_can_be_continued(client):
    first = client.post("/chat", json={"message": "Hello"})
    chat_id = first.json["chat_id"]
    assert str(uuid.UUID(chat_id)) == chat_id
    assert first.headers["X-Chat-ID"] == chat_id
    client.post("/chat", json={"message": "Again", "chat_id": chat_id})
    assert len(history_of(client, chat_id)) == 5
    assert client.delete(f"/chat/history/{chat_id}").status_code == 200


@pytest.mark.parametrize("bad", ["", "has space", "x" * 65, "caf\u00e9", "a/b", "semi;colon", 42])
def test_a_bad_custom_id_is_a_400_naming_the_rule(client, fake_openai, bad):
    response = client.post("/chat", json={"message": "hi", "chat_id": bad})
    assert response.status_code == 400
    assert CHAT_ID_RULE_WORDS in response.json["error"]["message"]
    assert response.json["error"]["param"] == "chat_id"
    assert fake_openai.requests == []


@pytest.mark.parametrize("method, path", [("get", "/chat/history/{}"), ("delete", "/chat/delete/{}"),
                                          ("delete", "/chat/history/{}")])
def test_paths_check_the_id_and_404_unknown_chats(client, method, path):
    bad = getattr(client, method)(path.format("bad%20id!"))
    assert bad.status_code == 400 and CHAT_ID_RULE_WORDS in bad.json["error"]["message"]
    unknown = getattr(client, method)(path.format(new_id()))
    assert unknown.status_code == 404
    assert unknown.json["success"] is False and "not found" in unknown.json["error"]["message"]


@pytest.mark.parametrize("body, status, words", [
    ({}, 400, '"message"'),
    ({"message": ""}, 400, "empty"),
    ({"message": None}, 400, "null"),
    ({"message": "hi", "stream": "maybe"}, 400, "stream"),
    ({"message": "hi", "temperature": 5}, 400, "temperature"),
    ({"message": "hi", "provider": "nosuch"}, 404, "Unknown provider"),
    ({"message": "hi", "provider": "anthropic"}, 503, "ANTHROPIC_API_KEY"),
])
def test_bad_bodies_are_clear_errors_and_store_nothing(client, body, status, words):
    response = client.post("/chat", json=body)
    assert response.status_code == status
    assert words in response.json["error"]["message"]
    assert client.get("/chat/history").json["chats"] == {}


def test_a_non_json_body_is_a_415(client):
    response = client.post("/chat", data="message=hi", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415 and response.json["success"] is False


def test_the_stateless_shape_still_works_and_stores_nothing(client, fake_openai):
    fake_openai.enqueue(Reply(text="Stateless."))
    response = client.post("/chat", json={"messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 200 and response.json["response"] == "Stateless."
    assert "chat_id" not in response.json
    streamed = client.post("/chat", json={"messages": [{"role": "user", "content": "hi"}], "stream": True})
    assert [e["type"] for e in sse_events(streamed.data.decode())][-1] == "done"
    assert "chat_id" not in sse_events(streamed.data.decode())[-1]
    assert client.get("/chat/history").json["chats"] == {}


# -- history listing ---------------------------------------------------------------------------------


def test_history_pages_newest_first_with_a_cursor(client):
    ids = [new_id() for _ in range(7)]
    for chat_id in ids:
        client.post("/chat", json={"message": f"hello {chat_id}", "chat_id": chat_id})
    client.post("/chat", json={"message": "bump", "chat_id": ids[0]})
    expected = [ids[0], *reversed(ids[1:])]

    seen: list[str] = []
    cursor = None
    for _ in range(5):
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get("/chat/history", query_string=params).json
        assert len(page["chats"]) <= 3
        seen += list(page["chats"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == expected
    everything = client.get("/chat/history").json["chats"]
    assert list(everything) == expected and everything[ids[0]]["message_count"] == 5


@pytest.mark.parametrize("query, words", [("limit=0", "limit"), ("limit=501", "limit"), ("limit=x", "limit"),
                                          ("cursor=nonsense", "cursor")])
def test_bad_history_queries_are_400(client, query, words):
    response = client.get(f"/chat/history?{query}")
    assert response.status_code == 400 and words in response.json["error"]["message"]


# -- streaming and failures ------------------------------------------------------------------------------


def test_a_streamed_chat_ends_with_its_id_and_is_stored_complete(client, fake_openai):
    fake_openai.enqueue(Reply(chunks=["Once", " upon", " a time."]))
    chat_id = new_id()
    response = client.post("/chat", json={"message": "Story?", "chat_id": chat_id, "stream": True})
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    assert response.headers["X-Chat-ID"] == chat_id
    events = sse_events(response.data.decode())
    assert [e["type"] for e in events] == ["start", "delta", "delta", "delta", "done"]
    assert events[-1]["chat_id"] == chat_id
    answer = history_of(client, chat_id)[-1]
    assert answer == {"id": answer["id"], "role": "assistant", "content": "Once upon a time.",
                      "timestamp": answer["timestamp"], "status": "complete", "provider": "openai",
                      "model": "gpt-4o-mini",
                      "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
                      "cost_usd": pytest.approx((11 * 0.15 + 3 * 0.6) / 1e6),  # gpt-4o-mini in prices.json
                      "versions": {"count": 1, "index": 0, "ids": [answer["id"]]}}
    assert events[-1]["cost_usd"] == answer["cost_usd"]
    with database.connection_context():
        row = Message.select().where(Message.conversation == chat_id).order_by(Message.id.desc()).first()
    assert (row.prompt_tokens, row.completion_tokens) == (11, 3)


@pytest.mark.parametrize("stream", [False, True])
def test_a_provider_failing_before_any_text_keeps_the_question(client, fake_openai, stream):
    fake_openai.set_model_reply("gpt-4o-mini", Reply(status=500))
    fake_openai.set_model_reply("gpt-4o", Reply(status=500))
    chat_id = new_id()
    response = client.post("/chat", json={"message": "Are you there?", "chat_id": chat_id, "stream": stream})
    assert response.status_code == 502
    assert response.json["error"]["chat_id"] == chat_id
    messages = history_of(client, chat_id)
    assert [(m["role"], m["status"]) for m in messages] == [("system", "complete"), ("user", "complete"),
                                                            ("assistant", "error")]
    assert messages[1]["content"] == "Are you there?" and messages[2]["content"] == ""
    assert "attempts failed" in messages[2]["error"]

    fake_openai.set_model_reply("gpt-4o-mini", Reply(text="Back now."))
    again = client.post("/chat", json={"message": "Now?", "chat_id": chat_id})
    assert again.status_code == 200, again.json
    sent = fake_openai.requests[-1].json["messages"]
    assert [m["content"] for m in sent[1:]] == ["Are you there?", "Now?"]


def test_a_provider_failing_mid_answer_stores_the_text_so_far_as_error(client, fake_openai):
    fake_openai.enqueue(Reply(chunks=["Half", " an", " answer"], reset_after=2))
    chat_id = new_id()
    response = client.post("/chat", json={"message": "Go", "chat_id": chat_id, "stream": True})
    events = sse_events(response.data.decode())
    assert events[-1]["type"] == "error" and events[-1]["chat_id"] == chat_id
    answer = history_of(client, chat_id)[-1]
    assert (answer["status"], answer["content"]) == ("error", "Half an")
    assert "mid-answer" in answer["error"]


# -- serialisation per chat -------------------------------------------------------------------------------


def test_a_second_turn_on_a_busy_chat_is_refused_until_the_first_ends(app):
    settings = ChatSettings()
    chat_id = new_id()
    with app.app_context():
        turn = conversations.begin_turn(chat_id, "first", "sys", settings)
        with pytest.raises(ChatBusy) as refused:
            conversations.begin_turn(chat_id, "second", "sys", settings)
        assert refused.value.status == 409
        conversations.finish_turn(turn, "answer", "complete")
        conversations.finish_turn(conversations.begin_turn(chat_id, "second", "sys", settings), "again", "complete")
        chat = conversations.get_chat(chat_id)
    assert [m["content"] for m in chat["messages"]] == ["sys", "first", "answer", "second", "again"]
    assert chat["message_count"] == 5


def test_racing_first_messages_on_a_new_id_make_one_turn(app):
    chat_id = new_id()
    barrier = threading.Barrier(6)
    outcomes: list[str] = []

    def first_message(n: int) -> None:
        barrier.wait(timeout=5)
        try:
            turn = conversations.begin_turn(chat_id, f"hello {n}", "sys", ChatSettings())
        except ChatBusy:
            outcomes.append("busy")
        else:
            outcomes.append("turn")
            turn.lease.stop()

    threads = [threading.Thread(target=first_message, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert sorted(outcomes) == ["busy"] * 5 + ["turn"]
    messages = conversations.get_chat(chat_id)["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]  # the answer's row, marked lost till done


def test_the_busy_mark_is_a_lease_that_a_dead_process_cannot_hold_forever(app):
    chat_id = new_id()
    short = ChatSettings(lease_s=0.05)
    with app.app_context():
        abandoned = conversations.begin_turn(chat_id, "first", "sys", short)
        abandoned.lease.stop()  # no more renewals, as if its worker was killed
        time.sleep(0.1)
        turn = conversations.begin_turn(chat_id, "second", "sys", short)
        assert [m["content"] for m in turn.context] == ["sys", "first", "second"]  # the empty record is not sent
        conversations.finish_turn(turn, "answered", "complete")
        chat = conversations.get_chat(chat_id)
        assert [(m["role"], m["content"], m["status"]) for m in chat["messages"]] == [
            ("system", "sys", "complete"), ("user", "first", "complete"), ("assistant", "", "error"),
            ("user", "second", "complete"), ("assistant", "answered", "complete")]
        assert chat["messages"][2]["error"] == conversations.LOST_ANSWER
        assert chat["message_count"] == 5


def test_a_lost_answer_is_recorded_once_and_not_over_a_redone_question(app):
    chat_id = new_id()
    short = ChatSettings(lease_s=0.05)
    with app.app_context():
        conversations.finish_turn(conversations.begin_turn(chat_id, "first", "sys", short), "one", "complete")
        for question in ("second", "third"):  # two dead turns in a row: each question gets its record
            conversations.begin_turn(chat_id, question, "sys", short).lease.stop()
            time.sleep(0.1)
        redo = conversations.begin_turn(chat_id, None, "sys", short, replace="answer")  # answers "third" again
        conversations.finish_turn(redo, "three", "complete")
        assert [(m["content"], m["status"]) for m in conversations.get_chat(chat_id)["messages"][1:]] == [
            ("first", "complete"), ("one", "complete"), ("second", "complete"), ("", "error"),
            ("third", "complete"), ("three", "complete")]


def test_the_lease_is_renewed_while_the_answer_is_produced(app):
    chat_id = new_id()
    short = ChatSettings(lease_s=0.3)
    turn = conversations.begin_turn(chat_id, "first", "sys", short)
    gevent.sleep(0.5)  # lets the renewing greenlet run, as the server's event loop does
    with pytest.raises(ChatBusy):
        conversations.begin_turn(chat_id, "second", "sys", short)
    conversations.finish_turn(turn, "answer", "complete")
    conversations.finish_turn(conversations.begin_turn(chat_id, "second", "sys", short), "again", "complete")


def test_a_late_answer_never_lands_in_a_chat_someone_else_holds(app):
    chat_id, short = new_id(), ChatSettings(lease_s=0.05)
    with app.app_context():
        deleted = conversations.begin_turn(chat_id, "old question", "sys", ChatSettings())
        conversations.delete_chat(chat_id)
        conversations.finish_turn(conversations.begin_turn(chat_id, "new question", "sys", ChatSettings()), "new",
                                  "complete")
        assert conversations.finish_turn(deleted, "OLD ANSWER", "complete") is None
        expired = conversations.begin_turn(chat_id, "q1", "sys", short)
        expired.lease.stop()  # its worker stalled: no renewals, so the lease runs out
        time.sleep(0.1)
        current = conversations.begin_turn(chat_id, "q2", "sys", short)
        assert conversations.finish_turn(expired, "late answer to q1", "complete") is None
        conversations.finish_turn(current, "answer to q2", "complete")
        contents = [m["content"] for m in conversations.get_chat(chat_id)["messages"]]
        assert contents == ["sys", "new question", "new", "q1", "", "q2", "answer to q2"]


def test_an_answer_waits_for_a_free_connection_instead_of_being_lost(make_app):
    """Every pooled connection busy when an answer is to be stored (hundreds of requests per worker):
    the answer waits for one (the pool's wait, tried again) instead of being dropped after the client
    already got it (a stream's `done` goes out before the answer is stored)."""
    app = make_app(DATABASE_POOL_SIZE=1, DATABASE_POOL_TIMEOUT_S=1)
    chat_id, held, release = new_id(), threading.Event(), threading.Event()

    def other_request_holding_the_only_connection() -> None:
        with database.connection_context():
            database.execute_sql("SELECT 1")
            held.set()
            release.wait(10)

    with app.app_context():
        turn = conversations.begin_turn(chat_id, "question", "sys", ChatSettings())
        holder = threading.Thread(target=other_request_holding_the_only_connection)
        holder.start()
        assert held.wait(5)
        threading.Timer(2.5, release.set).start()  # after two full pool waits of 1 s
        stored = conversations.finish_turn(turn, "the answer", "complete")
        holder.join(10)
        assert stored is not None
        assert [m["content"] for m in conversations.get_chat(chat_id)["messages"]] == ["sys", "question", "the answer"]


def test_a_chat_deleted_while_answering_stores_nothing_more(app):
    chat_id = new_id()
    with app.app_context():
        turn = conversations.begin_turn(chat_id, "first", "sys", ChatSettings())
        conversations.delete_chat(chat_id)
        assert conversations.finish_turn(turn, "late answer", "complete") is None
        with database.connection_context():
            assert not Message.select().where(Message.conversation == chat_id).exists()


# -- what is sent: the system prompt and the context budget --------------------------------------------


def test_the_system_prompt_file_is_created_and_re_read_without_a_restart(make_app, fake_openai, tmp_path):
    path = tmp_path / "prompts" / "system_prompt.txt"
    app = make_app(SYSTEM_PROMPT_FILE=str(path), **provider_config(openai=fake_openai))
    client = app.test_client()
    client.post("/chat", json={"message": "hi", "chat_id": "first"})
    assert path.read_text() == DEFAULT_SYSTEM_PROMPT
    assert fake_openai.requests[-1].json["messages"][0] == {"role": "system", "content": DEFAULT_SYSTEM_PROMPT.strip()}

    path.write_text("You are a pirate.\n")
    client.post("/chat", json={"message": "hi", "chat_id": "second"})
    assert fake_openai.requests[-1].json["messages"][0] == {"role": "system", "content": "You are a pirate."}
    assert history_of(client, "second")[0]["content"] == "You are a pirate."
    client.post("/chat", json={"message": "still you?", "chat_id": "first"})
    assert fake_openai.requests[-1].json["messages"][0]["content"] == DEFAULT_SYSTEM_PROMPT.strip()

    path.write_text("")
    client.post("/chat", json={"message": "hi", "chat_id": "third"})
    assert fake_openai.requests[-1].json["messages"] == [{"role": "user", "content": "hi"}]


def test_an_unwritable_prompt_location_falls_back_to_the_default(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    assert SystemPrompt(str(blocker / "system_prompt.txt")).text() == DEFAULT_SYSTEM_PROMPT.strip()


def test_the_context_keeps_the_system_prompt_and_the_newest_messages(make_app, fake_openai, database_url):
    app = make_app(DATABASE_URL=database_url, CHAT_CONTEXT_MESSAGES=3, **provider_config(openai=fake_openai))
    client = app.test_client()
    chat_id = new_id()
    for n in range(4):
        fake_openai.enqueue(Reply(text=f"answer {n}"))
        client.post("/chat", json={"message": f"question {n}", "chat_id": chat_id})
    sent = fake_openai.requests[-1].json["messages"]
    assert [m["content"] for m in sent[1:]] == ["question 2", "answer 2", "question 3"]
    assert sent[0]["role"] == "system"


def test_the_token_budget_drops_the_oldest_but_never_the_question(app):
    chat_id = new_id()
    with app.app_context():
        for _ in range(3):
            turn = conversations.begin_turn(chat_id, "q" * 40, "sys", ChatSettings())
            conversations.finish_turn(turn, "a" * 40, "complete")
        tight = ChatSettings(context_tokens=50)
        turn = conversations.begin_turn(chat_id, "last question " * 40, "sys", tight)  # ~144 tokens alone
        conversations.finish_turn(turn, "", "error")
    assert [m["role"] for m in turn.context] == ["system", "user"]
    roomy = ChatSettings(context_tokens=4 + 144 + 14)  # the system prompt, the question, one 40-char answer
    with app.app_context(), database.connection_context():
        context = conversations._context(chat_id, roomy)
    assert [m["content"][:4] for m in context] == ["sys", "aaaa", "last"]


# -- through a real server: client disconnects, concurrent requests, restarts ------------------------------


def open_stream(url: str, body: dict[str, Any]) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.request("POST", "/chat", body=json.dumps(body), headers={"Content-Type": "application/json"})
    return connection, connection.getresponse()


def read_deltas(response: http.client.HTTPResponse, count: int) -> str:
    text = ""
    for _ in range(200):
        line = response.readline().decode()
        if line.startswith("data: "):
            event = json.loads(line[6:])
            if event["type"] == "delta":
                text += event["content"]
                count -= 1
                if count == 0:
                    return text
    raise AssertionError("the stream did not send enough deltas")


def wait_for_answer(url: str, chat_id: str, timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        history = requests.get(f"{url}/chat/history/{chat_id}", timeout=5).json()["history"]
        if history["messages"][-1]["role"] == "assistant" and history["answering"] is None:  # stored whole
            return history["messages"][-1]
        time.sleep(0.05)
    raise AssertionError(f"no assistant message stored in chat {chat_id}")


@pytest.mark.parametrize("engine", ENGINES)
def test_a_client_killed_mid_stream_leaves_a_partial_answer(fake_openai, live_server, tmp_path, engine, request):
    url = f"sqlite:///{tmp_path / 'live.db'}" if engine == "sqlite" else request.getfixturevalue("postgres_url")
    server = live_server(DATABASE_URL=url, **provider_config(openai=fake_openai))
    fake_openai.enqueue(Reply(chunks=PIECES, chunk_delay=0.15))
    chat_id = new_id()
    connection, response = open_stream(server.url, {"message": "Count", "chat_id": chat_id, "stream": True})
    assert response.status == 200 and response.getheader("X-Chat-ID") == chat_id
    received = read_deltas(response, 3)
    connection.sock.shutdown(2)
    connection.close()

    assert fake_openai.wait_for_disconnect(timeout=10), "the server kept reading from the provider"
    answer = wait_for_answer(server.url, chat_id)
    assert answer["status"] == "partial"
    assert answer["content"].startswith(received) and "".join(PIECES).startswith(answer["content"])
    assert len(answer["content"]) < len("".join(PIECES))

    fake_openai.enqueue(Reply(text="Fine."))
    after = requests.post(f"{server.url}/chat", json={"message": "Still there?", "chat_id": chat_id}, timeout=10)
    assert after.status_code == 200, after.text


def test_two_requests_on_one_chat_never_interleave(fake_openai, live_server):
    server = live_server(workers=2, **provider_config(openai=fake_openai))
    fake_openai.enqueue(Reply(chunks=PIECES[:6], chunk_delay=0.1))
    chat_id = new_id()
    connection, response = open_stream(server.url, {"message": "first", "chat_id": chat_id, "stream": True})
    read_deltas(response, 1)
    busy = [requests.post(f"{server.url}/chat", json={"message": "second", "chat_id": chat_id}, timeout=10)
            for _ in range(3)]
    assert {r.status_code for r in busy} == {409}
    assert busy[0].json()["error"]["code"] == "chat_busy" and busy[0].json()["error"]["chat_id"] == chat_id
    rest = response.read().decode()
    connection.close()
    assert '"type": "done"' in rest

    fake_openai.enqueue(Reply(text="second answer"))
    assert requests.post(f"{server.url}/chat", json={"message": "second", "chat_id": chat_id},
                         timeout=10).status_code == 200
    messages = requests.get(f"{server.url}/chat/history/{chat_id}", timeout=5).json()["history"]["messages"]
    assert [(m["role"], m["content"]) for m in messages[1:]] == [
        ("user", "first"), ("assistant", "".join(PIECES[:6])), ("user", "second"), ("assistant", "second answer")]


def test_history_survives_a_restart(fake_openai, live_server, tmp_path):
    config = {"DATABASE_URL": f"sqlite:///{tmp_path / 'kept.db'}", **provider_config(openai=fake_openai)}
    first = live_server(**config)
    chat_id = requests.post(f"{first.url}/chat", json={"message": "Remember me"}, timeout=10).json()["chat_id"]
    first.stop()
    second = live_server(**config)
    messages = requests.get(f"{second.url}/chat/history/{chat_id}", timeout=5).json()["history"]["messages"]
    assert [m["content"] for m in messages[1:]] == ["Remember me", "Hello from the fake."]
    assert chat_id in requests.get(f"{second.url}/chat/history", timeout=5).json()["chats"]


# -- the web chat's tools: a chosen model, images, redoing the end, renaming, searching ------------------

PNG = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAA"
       "AABJRU5ErkJggg==")


def asked(fake_openai) -> list[dict[str, Any]]:
    """The messages of the provider's last request."""
    return fake_openai.requests[-1].json["messages"]


@pytest.mark.parametrize("model, sent", [("gpt-4o", "gpt-4o"), ("openai/gpt-4o", "gpt-4o"), ("gpt", "gpt-4o-mini")])
def test_a_chosen_model_answers_and_is_stored_with_the_answer(client, fake_openai, model, sent):
    chat_id = new_id()
    response = client.post("/chat", json={"message": "hi", "chat_id": chat_id, "model": model})
    assert response.status_code == 200 and response.json["model"] == sent
    assert fake_openai.requests[-1].json["model"] == sent
    answer = history_of(client, chat_id)[-1]
    assert answer | {"timestamp": None, "usage": None, "cost_usd": None} == {
        "id": answer["id"], "role": "assistant", "content": "Hello from the fake.", "status": "complete",
        "provider": "openai", "model": sent, "timestamp": None, "usage": None, "cost_usd": None,
        "versions": {"count": 1, "index": 0, "ids": [answer["id"]]}}
    assert answer["cost_usd"] == response.json["cost_usd"] > 0


@pytest.mark.parametrize("body, status, words", [
    ({"message": "hi", "model": "no-such-model"}, 404, "GET /v1/models"),
    ({"message": "hi", "model": "gpt-4o", "provider": "openai"}, 400, "not both"),
    ({"message": "hi", "model": "bad model!"}, 400, "model name"),
    ({"replace": "answer"}, 400, "chat_id"),
    ({"replace": "answer", "chat_id": "x", "message": "hi"}, 400, "send no message"),
    ({"replace": "again", "chat_id": "x"}, 400, "replace"),
    ({"message": [], "chat_id": "x"}, 400, "content parts"),
    ({"message": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}, 400, "data: URI"),
])
def test_bad_model_image_and_replace_fields_are_clear_400s(client, fake_openai, body, status, words):
    response = client.post("/chat", json=body)
    assert response.status_code == status, response.json
    assert words in response.json["error"]["message"]
    assert fake_openai.requests == []


def test_an_image_is_sent_as_a_part_stored_and_kept_in_the_context(client, fake_openai):
    chat_id = new_id()
    message = [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": PNG}}]
    assert client.post("/chat", json={"message": message, "chat_id": chat_id}).status_code == 200
    assert asked(fake_openai)[-1]["content"] == [{"type": "text", "text": "What is this?"},
                                                 {"type": "image_url", "image_url": {"url": PNG}}]
    stored = history_of(client, chat_id)[1]
    assert stored["content"] == "What is this?" and stored["images"] == [PNG]
    client.post("/chat", json={"message": "And its colour?", "chat_id": chat_id})
    assert asked(fake_openai)[1]["content"][1] == {"type": "image_url", "image_url": {"url": PNG}}
    hits = client.get("/chat/search", query_string={"q": "what is"}).json["chats"]
    assert hits[chat_id]["match"] == "What is this?"


def test_a_model_that_cannot_see_refuses_an_image_with_the_vendors_reason(client, fake_openai):
    chat_id = new_id()
    message = [{"type": "image_url", "image_url": {"url": PNG}}]
    response = client.post("/chat", json={"message": message, "chat_id": chat_id, "model": "gpt-3.5-turbo"})
    assert response.status_code == 400
    assert "image_url is only supported by certain models" in response.json["error"]["message"]
    assert response.json["error"]["chat_id"] == chat_id
    assert len(fake_openai.requests) == 1, "a refused request is never retried or sent elsewhere"


@pytest.mark.parametrize("stream", [False, True])
def test_regenerate_answers_the_last_question_again(client, fake_openai, stream):
    chat_id = new_id()
    fake_openai.enqueue(Reply(text="one"), Reply(text="two"), Reply(text="two, again"))
    client.post("/chat", json={"message": "first", "chat_id": chat_id})
    client.post("/chat", json={"message": "second", "chat_id": chat_id})
    again = client.post("/chat", json={"chat_id": chat_id, "replace": "answer", "stream": stream})
    assert again.status_code == 200
    assert [m["content"] for m in asked(fake_openai)[1:]] == ["first", "one", "second"]
    assert [m["content"] for m in history_of(client, chat_id)[1:]] == ["first", "one", "second", "two, again"]
    assert client.get("/chat/history").json["chats"][chat_id]["message_count"] == 5


def test_edit_replaces_the_last_question_and_its_answer(client, fake_openai):
    chat_id = new_id()
    fake_openai.enqueue(Reply(text="one"), Reply(text="two"), Reply(text="edited answer"))
    client.post("/chat", json={"message": "first", "chat_id": chat_id})
    client.post("/chat", json={"message": "secnod", "chat_id": chat_id})
    edited = client.post("/chat", json={"chat_id": chat_id, "replace": "message", "message": "second"})
    assert edited.json["response"] == "edited answer"
    assert [m["content"] for m in asked(fake_openai)[1:]] == ["first", "one", "second"]
    assert [m["content"] for m in history_of(client, chat_id)[1:]] == ["first", "one", "second", "edited answer"]
    assert client.get("/chat/history").json["chats"][chat_id]["message_count"] == 5


def test_replace_needs_an_existing_chat_with_a_question(client, app, fake_openai):
    assert client.post("/chat", json={"chat_id": new_id(), "replace": "answer"}).status_code == 404
    chat_id = new_id()
    settings = ChatSettings()
    conversations.finish_turn(conversations.begin_turn(chat_id, "q", "", settings), "a", "complete")
    with database.connection_context():
        Message.delete().where(Message.role == "user").execute()
    response = client.post("/chat", json={"chat_id": chat_id, "replace": "answer"})
    assert response.status_code == 400 and response.json["error"]["code"] == "nothing_to_replace"
    assert fake_openai.requests == []


def test_a_busy_chat_cannot_be_redone(app):
    chat_id = new_id()
    conversations.begin_turn(chat_id, "q", "", ChatSettings())
    with pytest.raises(ChatBusy):
        conversations.begin_turn(chat_id, None, "", ChatSettings(), replace="answer")
    assert [m["content"] for m in conversations.get_chat(chat_id)["messages"]] == ["q", ""]  # its answer to come


def test_rename_a_chat(client):
    chat_id = client.post("/chat", json={"message": "Hello"}).json["chat_id"]
    renamed = client.patch(f"/chat/history/{chat_id}", json={"title": "  Greetings \n and more "})
    assert renamed.json == {"chat_id": chat_id, "title": "Greetings and more", "success": True,
                            "system_prompt": DEFAULT_SYSTEM_PROMPT.strip(), "temperature": None}
    assert client.get(f"/chat/history/{chat_id}").json["history"]["title"] == "Greetings and more"
    assert client.get("/chat/history").json["chats"][chat_id]["title"] == "Greetings and more"
    for body in ({"title": "   "}, {"title": "x" * 121}, {}):
        bad = client.patch(f"/chat/history/{chat_id}", json=body)
        assert bad.status_code == 400 and "title" in bad.json["error"]["message"]
    assert client.patch(f"/chat/history/{new_id()}", json={"title": "x"}).status_code == 404
    assert client.patch("/chat/history/bad%20id", json={"title": "x"}).status_code == 400


def test_search_finds_titles_and_messages_newest_first_a_page_at_a_time(client, fake_openai):
    fake_openai.default_reply = lambda request: Reply(text=f"About {fake_openai.last_user_text(request)}: fine.")
    try:
        ids = [new_id() for _ in range(5)]
        for chat_id, text in zip(ids, ["Rust borrow checker", "Python GIL", "rust vs go", "gardening", "100% sure"]):
            client.post("/chat", json={"message": text, "chat_id": chat_id})
    finally:
        fake_openai.default_reply = Reply()
    client.patch(f"/chat/history/{ids[3]}", json={"title": "Growing RUST-coloured roses"})

    def search(**params: Any) -> dict[str, Any]:
        response = client.get("/chat/search", query_string=params)
        assert response.status_code == 200, response.json
        return response.json

    seen, cursor = [], None
    for _ in range(5):
        page = search(q="rust", limit=2, **({"cursor": cursor} if cursor else {}))
        assert len(page["chats"]) <= 2
        seen += list(page["chats"].items())
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [chat_id for chat_id, _ in seen] == [ids[3], ids[2], ids[0]]
    assert [summary["match"] for _, summary in seen] == [None, "rust vs go", "Rust borrow checker"]
    assert list(search(q="fine.")["chats"]) == list(reversed(ids)), "answers are searched too"
    assert list(search(q="100%")["chats"]) == [ids[4]], "% is a character, not a wildcard"
    assert search(q="_")["chats"] == {}
    assert search(q="helpful")["chats"] == {}, "the system prompt is not searched"


@pytest.mark.parametrize("query, words", [("", "q"), ("q=", "q"), ("q=x&limit=101", "limit"),
                                          ("q=x&cursor=nonsense", "cursor")])
def test_bad_searches_are_400(client, query, words):
    response = client.get(f"/chat/search?{query}")
    assert response.status_code == 400 and words in response.json["error"]["message"]
