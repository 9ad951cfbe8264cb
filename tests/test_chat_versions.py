"""What the /ui page uses of `/chat` (issue 26; docs/conversations.md, "What the /ui page uses"): message
ids and `after`, versions by regenerate and edit and switching them, reasoning and usage stored and
streamed, a chat's own system prompt and temperature, files as context (a PDF made here), errors in
words, and answers that go on when their client leaves, resumed and stopped through a real Gunicorn +
gevent server with two workers.

The in-process tests run on SQLite and on PostgreSQL (the storage changed: migration 0015).
"""
from __future__ import annotations

import base64
import concurrent.futures
import http.client
import json
import uuid
import zlib
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from app.conversations.models import Conversation, Message
from app.core.db import database
from tests.conftest import provider_config
from tests.fakes.server import Reply

ENGINES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
PIECES = [f"w{i} " for i in range(40)]


@pytest.fixture(params=ENGINES)
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'chat.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def app(make_app, fake_openai, database_url):
    app = make_app(DATABASE_URL=database_url, **provider_config(openai=fake_openai))
    with database.connection_context():
        Message.delete().execute()
        Conversation.delete().execute()
    return app


@pytest.fixture
def client(app):
    return app.test_client()


def new_id() -> str:
    return f"v-{uuid.uuid4().hex[:12]}"


def sse_events(body: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]


def chat(client, chat_id: str) -> dict[str, Any]:
    response = client.get(f"/chat/history/{chat_id}")
    assert response.status_code == 200, response.json
    return response.json["history"]


def shown(client, chat_id: str) -> list[str]:
    return [m["content"] for m in chat(client, chat_id)["messages"][1:]]


def asked(fake_openai) -> list[str]:
    return [m["content"] for m in fake_openai.requests[-1].json["messages"]]


def two_turns(client, fake_openai, chat_id: str) -> dict[str, Any]:
    fake_openai.enqueue(Reply(text="a1"), Reply(text="a2"))
    assert client.post("/chat", json={"message": "q1", "chat_id": chat_id}).status_code == 200
    assert client.post("/chat", json={"message": "q2", "chat_id": chat_id}).status_code == 200
    return chat(client, chat_id)


# -- 1: ids, and `after` ------------------------------------------------------------------------------


def test_history_has_ids_and_a_stale_after_is_a_409_that_stores_nothing(client, fake_openai):
    chat_id = new_id()
    first = client.post("/chat", json={"message": "q1", "chat_id": chat_id}).json
    history = chat(client, chat_id)
    ids = [m["id"] for m in history["messages"]]
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert (first["message_id"], first["answer_id"]) == (ids[1], ids[2]) == (ids[1], history["last_message_id"])

    other_tab = client.post("/chat", json={"message": "q2", "chat_id": chat_id, "after": first["answer_id"]})
    assert other_tab.status_code == 200
    stale = client.post("/chat", json={"message": "q2 again", "chat_id": chat_id, "after": first["answer_id"]})
    assert stale.status_code == 409
    error = stale.json["error"]
    assert error["code"] == "chat_changed" and error["after"] == first["answer_id"]
    assert error["last_message_id"] == other_tab.json["answer_id"] and error["chat_id"] == chat_id
    assert "Reload" in error["message"]
    assert shown(client, chat_id) == ["q1", "Hello from the fake.", "q2", "Hello from the fake."]
    assert len(fake_openai.requests) == 2


# -- 2: versions --------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_regenerate_an_earlier_answer_keeps_both_branches_and_switches_back(client, fake_openai, stream):
    chat_id = new_id()
    history = two_turns(client, fake_openai, chat_id)
    q1, a1, q2, a2 = (m["id"] for m in history["messages"][1:])
    fake_openai.enqueue(Reply(text="a1 again"))
    again = client.post("/chat", json={"chat_id": chat_id, "regenerate": a1, "after": a2, "stream": stream})
    assert again.status_code == 200
    assert asked(fake_openai)[1:] == ["q1"], "the context ends at the question answered again"
    history = chat(client, chat_id)
    assert [m["content"] for m in history["messages"][1:]] == ["q1", "a1 again"]
    new_answer = history["messages"][-1]
    assert new_answer["versions"] == {"count": 2, "index": 1, "ids": [a1, new_answer["id"]]}
    assert history["messages"][1]["versions"] == {"count": 1, "index": 0, "ids": [q1]}
    assert history["last_message_id"] == new_answer["id"] and history["message_count"] == 3
    assert chat_id not in client.get("/chat/search?q=a2").json["chats"], "hidden versions are not searched"
    assert chat_id in client.get("/chat/search?q=a1%20again").json["chats"]

    switched = client.post(f"/chat/history/{chat_id}/messages/{a1}/activate")
    assert switched.status_code == 200
    messages = switched.json["history"]["messages"]
    assert [(m["id"], m["content"]) for m in messages[1:]] == [(q1, "q1"), (a1, "a1"), (q2, "q2"), (a2, "a2")]
    assert messages[2]["versions"]["index"] == 0
    assert client.get("/chat/history").json["chats"][chat_id]["message_count"] == 5
    fake_openai.enqueue(Reply(text="a3"))
    client.post("/chat", json={"message": "q3", "chat_id": chat_id, "after": a2})
    assert asked(fake_openai)[1:] == ["q1", "a1", "q2", "a2", "q3"]


def test_edit_an_earlier_question_is_a_new_version_answered_with_the_context_before_it(client, fake_openai):
    chat_id = new_id()
    q1, a1, q2, a2 = (m["id"] for m in two_turns(client, fake_openai, chat_id)["messages"][1:])
    fake_openai.enqueue(Reply(text="a2 edited"))
    edited = client.post("/chat", json={"chat_id": chat_id, "edit": q2, "message": "q2 edited", "after": a2})
    assert edited.status_code == 200 and edited.json["response"] == "a2 edited"
    assert asked(fake_openai)[1:] == ["q1", "a1", "q2 edited"]
    messages = chat(client, chat_id)["messages"]
    assert [m["content"] for m in messages[1:]] == ["q1", "a1", "q2 edited", "a2 edited"]
    assert messages[3]["versions"] == {"count": 2, "index": 1, "ids": [q2, edited.json["message_id"]]}
    back = client.post(f"/chat/history/{chat_id}/messages/{q2}/activate").json["history"]["messages"]
    assert [m["content"] for m in back[1:]] == ["q1", "a1", "q2", "a2"]
    forth = client.post(f"/chat/history/{chat_id}/messages/{edited.json['message_id']}/activate").json
    assert [m["content"] for m in forth["history"]["messages"][1:]] == ["q1", "a1", "q2 edited", "a2 edited"]


def test_redoing_a_hidden_a_wrong_or_an_unknown_message_is_refused(client, fake_openai):
    chat_id = new_id()
    q1, a1, q2, a2 = (m["id"] for m in two_turns(client, fake_openai, chat_id)["messages"][1:])
    client.post("/chat", json={"chat_id": chat_id, "regenerate": a1})  # hides q2 and a2
    requests_before = len(fake_openai.requests)
    cases = [({"regenerate": a2}, 409, "message_not_active"), ({"edit": q2, "message": "x"}, 409, "message_not_active"),
             ({"regenerate": q1}, 400, "wrong_role"), ({"edit": a1, "message": "x"}, 400, "wrong_role"),
             ({"regenerate": 10 ** 12}, 404, "message_not_found")]
    for body, status, code in cases:
        refused = client.post("/chat", json={"chat_id": chat_id, **body})
        assert (refused.status_code, refused.json["error"]["code"]) == (status, code), body
    assert client.post(f"/chat/history/{chat_id}/messages/{10 ** 12}/activate").status_code == 404
    assert len(fake_openai.requests) == requests_before
    bad = client.post("/chat", json={"chat_id": chat_id, "regenerate": a1, "message": "x"})
    assert bad.status_code == 400 and "message" in bad.json["error"]["message"]


def test_old_replace_keeps_the_replaced_answer_as_a_version(client, fake_openai):
    chat_id = new_id()
    history = two_turns(client, fake_openai, chat_id)
    a2 = history["messages"][-1]["id"]
    fake_openai.enqueue(Reply(text="a2 again"))
    client.post("/chat", json={"chat_id": chat_id, "replace": "answer"})
    last = chat(client, chat_id)["messages"][-1]
    assert last["content"] == "a2 again" and last["versions"]["ids"][0] == a2


@pytest.mark.parametrize("engine", ENGINES)
def test_the_migration_makes_each_existing_chat_one_branch(tmp_path, engine):
    from playhouse.migrations import Runner

    from app.core.db import MIGRATIONS_DIR, open_database
    from tests.conftest import fresh_postgres_database

    def check(url: str) -> None:
        db = open_database(url)
        with db.connection_context():
            Runner(db, MIGRATIONS_DIR).up("0011_limit_counter")
            db.execute_sql("INSERT INTO conversation (id, chat_id, title, created_at, last_updated, message_count) "
                           "VALUES ('old', 'old', 't', '2026-01-01', '2026-01-01', 3)")
            for role in ("system", "user", "assistant"):
                db.execute_sql("INSERT INTO conversation_message (conversation_id, role, content, status, created_at)"
                               f" VALUES ('old', '{role}', '{role} text', 'complete', '2026-01-01')")
            Runner(db, MIGRATIONS_DIR).up()
            rows = db.execute_sql("SELECT id, parent_id, active FROM conversation_message ORDER BY id").fetchall()
        ids = [row[0] for row in rows]
        assert [row[1] for row in rows] == [None, ids[0], ids[1]] and all(row[2] for row in rows)
        db.close()

    if engine == "sqlite":
        check(f"sqlite:///{tmp_path / 'old.db'}")
    else:
        with fresh_postgres_database() as url:
            check(url)


# -- 3 and 5: reasoning and usage ---------------------------------------------------------------------


def test_reasoning_and_usage_are_streamed_and_stored(client, fake_openai):
    chat_id = new_id()
    fake_openai.enqueue(Reply(chunks=["Forty", "-two."], reasoning="Six times seven.", completion_tokens=9))
    response = client.post("/chat", json={"message": "Answer?", "chat_id": chat_id, "stream": True})
    events = sse_events(response.data.decode())
    assert response.headers["X-Answer-ID"] == str(events[0]["answer_id"])
    assert events[0]["type"] == "start" and events[0]["chat_id"] == chat_id and events[0]["message_id"]
    assert "".join(e["content"] for e in events if e["type"] == "reasoning") == "Six times seven."
    assert "".join(e["content"] for e in events if e["type"] == "delta") == "Forty-two."
    done = events[-1]
    assert done["type"] == "done" and done["answer_id"] == events[0]["answer_id"]
    assert done["usage"]["completion_tokens"] >= 9
    answer = chat(client, chat_id)["messages"][-1]
    assert answer["reasoning"] == "Six times seven." and answer["content"] == "Forty-two."
    assert answer["usage"] == {k: done["usage"][k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
    assert answer["usage"]["prompt_tokens"] == 11
    assert "Six times" not in json.dumps(fake_openai.requests[-1].json)

    fake_openai.enqueue(Reply(text="ok", reasoning="hmm"))
    whole = client.post("/chat", json={"message": "again", "chat_id": chat_id}).json
    assert whole["reasoning"] == "hmm" and whole["usage"]["prompt_tokens"] == 11
    assert asked(fake_openai)[-3:] == ["Answer?", "Forty-two.", "again"], "reasoning is not sent back"


# -- 4: a chat's own system prompt and temperature ----------------------------------------------------


def test_a_chats_system_prompt_and_temperature_are_used_by_every_turn(client, fake_openai):
    chat_id = new_id()
    client.post("/chat", json={"message": "hi", "chat_id": chat_id, "system": "Be terse.", "temperature": 0.2})
    sent = fake_openai.requests[-1].json
    assert sent["messages"][0] == {"role": "system", "content": "Be terse."} and sent["temperature"] == 0.2
    client.post("/chat", json={"message": "more", "chat_id": chat_id})
    assert fake_openai.requests[-1].json["temperature"] == 0.2
    client.post("/chat", json={"message": "once", "chat_id": chat_id, "temperature": 1.5})
    assert fake_openai.requests[-1].json["temperature"] == 1.5
    assert chat(client, chat_id)["temperature"] == 0.2

    changed = client.patch(f"/chat/history/{chat_id}", json={"system_prompt": "Be kind.", "temperature": None})
    assert changed.json == {"chat_id": chat_id, "title": "hi", "system_prompt": "Be kind.", "temperature": None,
                            "success": True}
    client.post("/chat", json={"message": "next", "chat_id": chat_id})
    sent = fake_openai.requests[-1].json
    assert sent["messages"][0]["content"] == "Be kind." and "temperature" not in sent
    history = chat(client, chat_id)
    assert history["system_prompt"] == "Be kind." and history["messages"][0]["content"] == "Be kind."

    client.patch(f"/chat/history/{chat_id}", json={"system_prompt": ""})
    client.post("/chat", json={"message": "bare", "chat_id": chat_id})
    assert fake_openai.requests[-1].json["messages"][0]["role"] == "user"
    client.patch(f"/chat/history/{chat_id}", json={"system_prompt": "Back."})
    client.post("/chat", json={"message": "back", "chat_id": chat_id})
    assert fake_openai.requests[-1].json["messages"][0] == {"role": "system", "content": "Back."}
    assert chat(client, chat_id)["messages"][1]["versions"]["count"] == 1

    refused = client.post("/chat", json={"message": "x", "chat_id": chat_id, "system": "Other."})
    assert refused.status_code == 409 and refused.json["error"]["code"] == "system_on_existing_chat"
    for body in ({"temperature": 3}, {}):
        assert client.patch(f"/chat/history/{chat_id}", json=body).status_code == 400


# -- 7: files -----------------------------------------------------------------------------------------


def tiny_pdf(text: str) -> bytes:
    """A one-page PDF whose page draws `text` in Helvetica (its xref offsets computed, as a writer would)."""
    stream = zlib.compress(f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode())
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
               b"/Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out, offsets = b"%PDF-1.4\n", []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    return out + b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)


def attached(name: str, data: bytes) -> dict[str, str]:
    return {"name": name, "data": base64.b64encode(data).decode()}


def test_text_markdown_code_and_pdf_files_go_to_the_model_before_the_message(client, fake_openai):
    chat_id = new_id()
    files = [attached("notes.md", "# Plan\n\n```py\nprint(1)\n```\n".encode()),
             attached("report.pdf", tiny_pdf("Revenue grew by 12 percent"))]
    response = client.post("/chat", json={"message": "Summarise", "chat_id": chat_id, "files": files})
    assert response.status_code == 200, response.json
    sent = asked(fake_openai)[-1]
    assert sent.startswith("File notes.md:\n````\n# Plan\n\n```py\nprint(1)\n```\n\n````")
    assert "File report.pdf:\n```\nRevenue grew by 12 percent\n```" in sent and sent.endswith("\n\nSummarise")
    question = chat(client, chat_id)["messages"][1]
    assert question["content"] == "Summarise"
    assert question["files"] == [{"name": "notes.md", "chars": 27}, {"name": "report.pdf", "chars": 26}]
    fake_openai.enqueue(Reply(text="next"))
    client.post("/chat", json={"message": "And?", "chat_id": chat_id})
    assert "Revenue grew" in fake_openai.requests[-1].json["messages"][1]["content"], "files stay in the context"


def test_files_over_the_limits_or_not_text_are_refused_in_words(make_app, fake_openai, database_url):
    app = make_app(DATABASE_URL=database_url, CHAT_FILE_MAX_BYTES=1000, CHAT_FILE_MAX_CHARS=50, CHAT_FILES_MAX=2,
                   **provider_config(openai=fake_openai))
    client = app.test_client()
    cases = [([attached("big.txt", b"x" * 2000)], 413, "file_too_large", "big.txt is 2 KB; a file may be at most"),
             ([attached("long.txt", b"y" * 60)], 413, "file_text_too_long", "long.txt has 60 characters"),
             ([attached("a.png", b"\x89PNG\r\n\x1a\n\x00\x00")], 400, "unsupported_file", "not a text file"),
             ([attached("scan.pdf", b"%PDF-1.4 broken")], 400, "unsupported_file", "could not be read as a PDF"),
             ([attached("a.txt", b"a")] * 3, 400, "too_many_files", "at most 2")]
    for files, status, code, words in cases:
        response = client.post("/chat", json={"message": "read", "chat_id": new_id(), "files": files})
        assert (response.status_code, response.json["error"]["code"]) == (status, code)
        assert words in response.json["error"]["message"] and "CHAT_" not in response.json["error"]["message"]
        assert response.json["success"] is False
    assert fake_openai.requests == []


# -- 8: errors in words ---------------------------------------------------------------------------------


def test_a_body_too_large_says_the_limit_in_words(make_app, fake_openai):
    client = make_app(MAX_BODY_BYTES=2048, **provider_config(openai=fake_openai)).test_client()
    response = client.post("/chat", json={"message": "x" * 5000})
    assert response.status_code == 413
    assert response.json["error"]["message"] == "The request is larger than this server accepts: at most 2 KB."
    assert response.json["error"]["max_bytes"] == 2048


def test_a_429_has_retry_after_in_words_and_as_a_number(make_app, fake_openai):
    from app.keys import service
    from app.keys.secret import hash_secret

    app = make_app(**provider_config(openai=fake_openai))
    _row, key = service.create_key(service.KeySpec("slow", rpm=1), hash_secret(app.config))
    client = app.test_client()
    headers = {"Authorization": f"Bearer {key}"}
    assert client.post("/chat", json={"message": "one"}, headers=headers).status_code == 200
    refused = client.post("/chat", json={"message": "two"}, headers=headers)
    assert refused.status_code == 429
    error = refused.json["error"]
    assert error["retry_after"] == int(refused.headers["Retry-After"]) and 0 < error["retry_after"] <= 61
    assert error["message"] == f"Too many requests: this key may make 1 per 1 minute; try again in " \
                               f"{error['retry_after']} seconds."


# -- 6 and the race: through a real Gunicorn + gevent server with two workers ------------------------------


def open_stream(url: str, body: dict[str, Any], method: str = "POST", path: str = "/chat"):
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=15)
    connection.request(method, path, body=json.dumps(body) if body else None,
                       headers={"Content-Type": "application/json"})
    return connection, connection.getresponse()


def read_events(response, until: str | None = None, deltas: int | None = None) -> list[dict[str, Any]]:
    """Events until one of type `until`, or `deltas` deltas, or the end; bounded by the socket timeout."""
    events: list[dict[str, Any]] = []
    for _ in range(2000):
        line = response.readline().decode()
        if not line:
            break
        if line.startswith("data: "):
            events.append(json.loads(line[6:]))
            if events[-1]["type"] == until or (deltas and sum(e["type"] == "delta" for e in events) == deltas):
                break
    return events


def text_of(events: list[dict[str, Any]]) -> str:
    return "".join(e["content"] for e in events if e["type"] == "delta")


def start_two_workers(live_server, fake_openai, url: str):
    return live_server(workers=2, DATABASE_URL=url, CHAT_SAVE_EVERY_S="0.2", CHAT_RESUME_POLL_S="0.1",
                       **provider_config(openai=fake_openai))


@pytest.fixture
def two_workers(fake_openai, live_server, tmp_path):
    return start_two_workers(live_server, fake_openai, f"sqlite:///{tmp_path / 'live.db'}")


def test_a_resumable_answer_outlives_its_client_and_is_resumed_from_another_connection(fake_openai, live_server,
                                                                                       database_url):
    server = start_two_workers(live_server, fake_openai, database_url)
    fake_openai.enqueue(Reply(chunks=PIECES, chunk_delay=0.05))
    chat_id = new_id()
    connection, response = open_stream(server.url, {"message": "Count", "chat_id": chat_id, "stream": True,
                                                    "resumable": True})
    first = read_events(response, deltas=3)
    answer_id = first[0]["answer_id"]
    received = text_of(first)
    connection.sock.shutdown(2)
    connection.close()

    history = requests.get(f"{server.url}/chat/history/{chat_id}", timeout=5).json()["history"]
    assert history["answering"] == answer_id
    offset = len(received)
    resumed_connection, resumed = open_stream(
        server.url, {}, "GET", f"/chat/history/{chat_id}/messages/{answer_id}/stream?offset={offset}")
    assert resumed.status == 200
    rest = read_events(resumed, until="done")
    resumed_connection.close()
    assert received + text_of(rest) == "".join(PIECES)
    assert rest[-1]["type"] == "done" and rest[-1]["status"] == "complete" and rest[-1]["answer_id"] == answer_id
    assert not fake_openai.wait_for_disconnect(timeout=0.2), "the server stopped reading when its client left"
    stored = requests.get(f"{server.url}/chat/history/{chat_id}", timeout=5).json()["history"]
    assert stored["answering"] is None and stored["messages"][-1]["content"] == "".join(PIECES)

    again = requests.get(f"{server.url}/chat/history/{chat_id}/messages/{answer_id}/stream?offset=8", timeout=5)
    events = sse_events(again.text)
    assert text_of(events) == "".join(PIECES)[8:] and events[-1]["status"] == "complete"


def test_stop_ends_a_resumable_answer_from_any_connection_and_stores_it_partial(fake_openai, two_workers):
    server = two_workers
    fake_openai.enqueue(Reply(chunks=PIECES * 5, chunk_delay=0.05))
    chat_id = new_id()
    connection, response = open_stream(server.url, {"message": "Go", "chat_id": chat_id, "stream": True,
                                                    "resumable": True})
    answer_id = read_events(response, deltas=2)[0]["answer_id"]
    connection.close()
    stop = requests.post(f"{server.url}/chat/history/{chat_id}/messages/{answer_id}/stop", timeout=5)
    assert stop.status_code == 200 and stop.json()["stopping"] is True
    resumed = requests.get(f"{server.url}/chat/history/{chat_id}/messages/{answer_id}/stream", timeout=15)
    done = sse_events(resumed.text)[-1]
    assert done["type"] == "done" and done["status"] == "partial"
    assert fake_openai.wait_for_disconnect(timeout=10), "a stopped answer stops reading from the provider"
    answer = requests.get(f"{server.url}/chat/history/{chat_id}", timeout=5).json()["history"]["messages"][-1]
    assert answer["status"] == "partial" and 0 < len(answer["content"]) < len("".join(PIECES * 5))
    late = requests.post(f"{server.url}/chat/history/{chat_id}/messages/{answer_id}/stop", timeout=5)
    assert late.status_code == 409 and late.json()["error"]["code"] == "not_answering"


def test_two_tabs_racing_a_regenerate_get_one_answer_and_one_409(fake_openai, two_workers):
    server = two_workers
    chat_id = new_id()
    first = requests.post(f"{server.url}/chat", json={"message": "q", "chat_id": chat_id}, timeout=10).json()
    answer_id = first["answer_id"]
    fake_openai.enqueue(Reply(text="again, slowly", first_byte_delay=0.5), Reply(text="again, too"))
    body = {"chat_id": chat_id, "regenerate": answer_id, "after": answer_id}
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: requests.post(f"{server.url}/chat", json=body, timeout=15), range(2)))
    assert sorted(r.status_code for r in results) == [200, 409]
    refused = next(r for r in results if r.status_code == 409).json()["error"]
    assert refused["code"] in ("chat_busy", "chat_changed")
    messages = requests.get(f"{server.url}/chat/history/{chat_id}", timeout=5).json()["history"]["messages"]
    assert messages[-1]["versions"]["count"] == 2 and len(messages) == 3



def test_a_resumable_turn_whose_page_left_before_the_first_byte_still_retries(fake_openai, two_workers):
    server = two_workers
    fake_openai.enqueue(Reply(status=503, first_byte_delay=1.0), Reply(text="Answered after a retry."))
    chat_id = new_id()
    parts = urlsplit(server.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=15)
    connection.request("POST", "/chat", body=json.dumps({"message": "Hi", "chat_id": chat_id, "stream": True,
                                                          "resumable": True}),
                       headers={"Content-Type": "application/json"})
    history = None
    for _ in range(100):  # the turn has begun (its question stored): the page goes away
        answered = requests.get(f"{server.url}/chat/history/{chat_id}", timeout=5)
        if answered.status_code == 200:
            history = answered.json()["history"]
            break
    assert history is not None and history["answering"]
    connection.sock.shutdown(2)
    connection.close()
    resumed = requests.get(f"{server.url}/chat/history/{chat_id}/messages/{history['answering']}/stream",
                           timeout=20)
    done = sse_events(resumed.text)[-1]
    assert done["type"] == "done" and done["status"] == "complete", done
    assert len(fake_openai.requests) == 2
    assert requests.get(f"{server.url}/chat/history/{chat_id}", timeout=5).json()["history"]["messages"][-1][
        "content"] == "Answered after a retry."


# -- tokens and cost per answer (issue 26), cached tokens in /chat's usage (issue 25) ----------------------

RATES = (2.0, 8.0, 0.5)  # USD per million: prompt, completion, prompt read from the cache (PRICE_OVERRIDES)


def hand_cost(usage: dict[str, Any]) -> float:
    prompt, cached = usage["prompt_tokens"], usage.get("prompt_tokens_details", {}).get("cached_tokens", 0)
    return ((prompt - cached) * RATES[0] + cached * RATES[2] + usage["completion_tokens"] * RATES[1]) / 1_000_000


def test_each_answer_has_its_cost_and_cached_tokens_streamed_stored_and_resumed(fake_openai, live_server):
    """A long system prompt repeats at the start of every turn, so the fake OpenAI (caching as OpenAI
    does) reads the second turn's prefix from its cache; the cost is the price table's, by hand."""
    server = live_server(PRICE_OVERRIDES=[f"gpt-4o-mini={'/'.join(map(str, RATES))}"],
                         **provider_config(openai=fake_openai))
    fake_openai.reset()
    chat_id = new_id()
    system = "You follow the house manual, section by section, in every answer. " * 80  # ~1,350 tokens
    fake_openai.enqueue(Reply(text="First answer.", completion_tokens=7), Reply(chunks=["Second ", "answer."],
                                                                                 completion_tokens=5))
    first = requests.post(f"{server.url}/chat", json={"message": "One?", "chat_id": chat_id, "system": system},
                          timeout=10).json()
    assert "prompt_tokens_details" not in first["usage"], "nothing was cached before the first turn"
    assert first["cost_usd"] == pytest.approx(hand_cost(first["usage"]), rel=1e-9) and first["cost_usd"] > 0

    connection, response = open_stream(server.url, {"message": "Two?", "chat_id": chat_id, "stream": True})
    done = read_events(response, until="done")[-1]
    connection.close()
    cached = done["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert cached >= 1024 and cached < done["usage"]["prompt_tokens"]
    assert done["cost_usd"] == pytest.approx(hand_cost(done["usage"]), rel=1e-9)
    assert done["cost_usd"] < hand_cost({**done["usage"], "prompt_tokens_details": {}}), "cached tokens cost less"

    answers = [m for m in requests.get(f"{server.url}/chat/history/{chat_id}", timeout=5).json()["history"][
        "messages"] if m["role"] == "assistant"]
    assert [(a["usage"], a["cost_usd"]) for a in answers] == [(first["usage"], first["cost_usd"]),
                                                              (done["usage"], done["cost_usd"])]
    resumed = requests.get(f"{server.url}/chat/history/{chat_id}/messages/{done['answer_id']}/stream", timeout=5)
    end = sse_events(resumed.text)[-1]
    assert (end["type"], end["usage"], end["cost_usd"]) == ("done", done["usage"], done["cost_usd"])
