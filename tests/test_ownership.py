"""What a key makes is its own: chats, gist records and deploy tasks are 404 to another key and
missing from its lists; an admin key sees all. Changing GitHub gists needs the `gists` scope."""
from __future__ import annotations

import contextlib
from typing import Any

import pytest

from tests.conftest import fresh_postgres_database, provider_config
from tests.fakes.github_api import DEFAULT_TOKEN, FakeGitHub
from tests.fakes.server import Reply
from tests.test_keys import bearer, cli_create

SECRET = "verify-me-please"


def keys(app) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """Headers of an admin key, key A (with the gists scope) and key B."""
    return (bearer(cli_create(app, "admin", "--admin")), bearer(cli_create(app, "a", "--scopes", "gists")),
            bearer(cli_create(app, "b")))


def test_chats_belong_to_the_key_that_made_them(client, app, fake_openai):
    admin, a, b = keys(app)
    fake_openai.enqueue(Reply(text="hi A"))
    chat_id = client.post("/chat", json={"message": "hello"}, headers=a).get_json()["chat_id"]
    assert list(client.get("/chat/history", headers=a).get_json()["chats"]) == [chat_id]
    assert client.get("/chat/history", headers=b).get_json()["chats"] == {}
    for method, path in (("get", f"/chat/history/{chat_id}"), ("delete", f"/chat/history/{chat_id}")):
        assert getattr(client, method)(path, headers=b).status_code == 404
    assert list(client.get("/chat/history", headers=admin).get_json()["chats"]) == [chat_id]
    assert client.get(f"/chat/history/{chat_id}", headers=admin).status_code == 200
    assert len(fake_openai.requests) == 1


def test_chat_ids_are_per_key_so_no_key_can_take_or_probe_another_s(client, app, fake_openai):
    """Key B taking `team-notes` first neither blocks A's `team-notes` nor shows B that A has one; each
    key sees only its own, and deleting one leaves the other."""
    _, a, b = keys(app)
    fake_openai.enqueue(Reply(text="B's answer"), Reply(text="A's answer"), Reply(text="B again"))
    for headers, message in ((b, "B's notes"), (a, "A's notes"), (b, "B's second")):
        answer = client.post("/chat", json={"message": message, "chat_id": "team-notes"}, headers=headers)
        assert answer.status_code == 200 and answer.get_json()["chat_id"] == "team-notes", answer.get_json()

    def contents(headers) -> list[str]:
        messages = client.get("/chat/history/team-notes", headers=headers).get_json()["history"]["messages"]
        return [m["content"] for m in messages if m["role"] != "system"]

    assert contents(a) == ["A's notes", "A's answer"]
    assert contents(b) == ["B's notes", "B's answer", "B's second", "B again"]
    assert list(client.get("/chat/history", headers=a).get_json()["chats"]) == ["team-notes"]
    assert client.get("/chat/search?q=notes", headers=a).get_json()["chats"]["team-notes"]["match"] == "A's notes"
    assert client.delete("/chat/history/team-notes", headers=b).status_code == 200
    assert client.get("/chat/history/team-notes", headers=b).status_code == 404
    assert contents(a) == ["A's notes", "A's answer"]
    assert client.patch("/chat/history/team-notes", json={"title": "x"}, headers=b).status_code == 404


def test_gist_records_belong_to_their_key_and_writing_needs_the_scope(make_app):
    with FakeGitHub() as github:
        app = make_app(GITHUB_TOKEN=DEFAULT_TOKEN, GITHUB_API_URL=github.url, GITHUB_MAX_RATE_WAIT_S=0)
        client = app.test_client()
        admin, a, b = keys(app)
        hello = {"description": "d", "public": False, "files": [{"filename": "a.txt", "content": "x"}]}
        refused = client.post("/gists", json=hello, headers=b)
        assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "missing_scope"
        created = client.post("/gists", json=hello, headers=a)
        assert created.status_code == 201
        gist_id = created.get_json()["id"]
        assert client.patch(f"/gists/{gist_id}", json={"description": "e"}, headers=b).status_code == 403
        assert client.delete(f"/gists/{gist_id}", headers=b).status_code == 403
        assert [g["id"] for g in client.get("/gists/local", headers=a).get_json()["gists"]] == [gist_id]
        assert client.get("/gists/local", headers=b).get_json()["gists"] == []
        assert client.get(f"/gists/local/{gist_id}", headers=b).status_code == 404
        assert client.get(f"/gists/local/{gist_id}", headers=admin).status_code == 200
        assert client.get(f"/gists/{gist_id}", headers=b).status_code == 200  # the gist itself is shared


def task_body(**changes: Any) -> dict[str, Any]:
    return {"email": "a@example.com", "secret": SECRET, "task": "t1", "round": 1, "nonce": "n1",
            "brief": "Make a page.", "checks": [], "evaluation_url": "http://127.0.0.1:9/notify",
            "attachments": [], **changes}


def deploy_app(make_app, fake_openai, **extra):
    return make_app(**provider_config(openai=fake_openai), GITHUB_TOKEN="ghp_" + "x" * 36,
                    GITHUB_API_URL="http://127.0.0.1:9", VERIFICATION_SECRET=SECRET,
                    NOTIFY_ALLOW_HOSTS=["127.0.0.1"], **extra)


def test_tasks_belong_to_the_key_sent_with_them(make_app, fake_openai):
    app = deploy_app(make_app, fake_openai)
    client = app.test_client()
    admin, a, b = keys(app)
    mine = client.post("/task", json=task_body(), headers=a).get_json()["task_id"]
    evaluators = client.post("/task", json=task_body(task="t2", nonce="n2")).get_json()["task_id"]  # no key
    assert [t["task_id"] for t in client.get("/tasks", headers=a).get_json()["tasks"]] == [mine]
    assert client.get("/tasks", headers=b).get_json()["tasks"] == []
    assert client.get(f"/tasks/{mine}", headers=b).status_code == 404
    assert {t["task_id"] for t in client.get("/tasks", headers=admin).get_json()["tasks"]} == {mine, evaluators}


def test_task_requests_are_limited_per_email(make_app, fake_openai):
    client = deploy_app(make_app, fake_openai, TASK_RATE_LIMIT="2/hour").test_client()
    for n in range(2):
        assert client.post("/task", json=task_body(task=f"t{n}", nonce=f"n{n}")).status_code == 200
    refused = client.post("/revise", json=task_body(task="t0", nonce="again", round=2))
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert client.post("/task", json=task_body(task="t9", nonce="n9", email="b@example.com")).status_code == 200


@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_migration_0010_moves_each_key_s_chats_into_its_namespace(tmp_path, engine, request):
    """Chats made before 0010: an unowned one keeps its row id, a key's one moves with its messages."""
    from playhouse.migrations import Runner

    from app.conversations.models import storage_key
    from app.core.db import MIGRATIONS_DIR, open_database

    with contextlib.ExitStack() as stack:
        url = (f"sqlite:///{tmp_path / 'old.db'}" if engine == "sqlite"
               else stack.enter_context(fresh_postgres_database()))
        db = open_database(url)
        with db.connection_context():
            Runner(db, MIGRATIONS_DIR).up(target="0009_drop_usage_counter")
            p = db.param
            for chat_id, owner in (("open-chat", None), ("team-notes", "key_a")):
                db.execute_sql(f"INSERT INTO conversation (id, owner, title, created_at, last_updated, message_count)"
                               f" VALUES ({p}, {p}, 't', {p}, {p}, 1)", (chat_id, owner, "2026-01-01", "2026-01-01"))
                db.execute_sql(f"INSERT INTO conversation_message (conversation_id, role, content, status, created_at)"
                               f" VALUES ({p}, 'user', {p}, 'complete', {p})", (chat_id, f"in {chat_id}", "2026-01-01"))
            Runner(db, MIGRATIONS_DIR).up()
            rows = db.execute_sql("SELECT c.id, c.chat_id, c.owner, m.content FROM conversation c JOIN "
                                  "conversation_message m ON m.conversation_id = c.id ORDER BY c.chat_id").fetchall()
        db.close_all()
    moved = storage_key("key_a", "team-notes")
    assert [tuple(row) for row in rows] == [("open-chat", "open-chat", None, "in open-chat"),
                                            (moved, "team-notes", "key_a", "in team-notes")]


def test_wrong_secrets_cannot_lock_an_email_out(make_app, fake_openai):
    client = deploy_app(make_app, fake_openai, TASK_RATE_LIMIT="2/hour").test_client()
    for n in range(5):  # someone else, guessing: each refused for its secret, none counted for the email
        wrong = client.post("/task", json=task_body(task=f"w{n}", nonce=f"w{n}", secret="guess"),
                            environ_base={"REMOTE_ADDR": "198.51.100.7"})
        assert wrong.status_code == 403 and wrong.get_json()["error"]["code"] == "invalid_secret"
    for n in range(2):
        assert client.post("/task", json=task_body(task=f"t{n}", nonce=f"n{n}")).status_code == 200
    assert client.post("/task", json=task_body(task="t2", nonce="n2")).status_code == 429


def test_wrong_secrets_are_braked_per_client_address(make_app, fake_openai):
    client = deploy_app(make_app, fake_openai, TASK_SECRET_FAILURE_LIMIT="3/hour").test_client()
    guesser = {"REMOTE_ADDR": "198.51.100.7"}
    answers = [client.post("/task", json=task_body(task=f"w{n}", nonce=f"w{n}", secret=f"guess-{n}",
                                                   email=f"victim{n}@example.com"), environ_base=guesser)
               for n in range(10)]
    assert [a.status_code for a in answers] == [403] * 3 + [429] * 7
    braked = answers[-1]
    assert int(braked.headers["Retry-After"]) > 0
    assert braked.get_json()["success"] is False and braked.get_json()["error"]["code"]
    assert client.post("/task", json=task_body(), environ_base={"REMOTE_ADDR": "203.0.113.5"}).status_code == 200
