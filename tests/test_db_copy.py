"""`flask --app app.wsgi db-copy --to postgresql://...` on a filled SQLite database (100,000 messages):
every table copied, row counts verified, a second run copies nothing and still verifies, and the
server then runs on PostgreSQL where the SQLite one stopped."""
from __future__ import annotations

import subprocess
from datetime import datetime, timedelta

import pytest
from peewee import chunked

from app.conversations.models import Conversation, Message
from app.core.db import database
from app.gists.models import Gist
from app.keys.models import UsageRecord
from tests.conftest import ROOT, VENV_BIN, as_environ, base_config, fresh_postgres_database

CHATS, MESSAGES_PER_CHAT = 1000, 100  # 100,000 messages
START = datetime(2025, 1, 1)


@pytest.fixture
def own_postgres():
    with fresh_postgres_database() as url:
        yield url


def fill(chats: int, per_chat: int) -> None:
    """Bulk-insert `chats` conversations of `per_chat` messages each, plus a few rows of other tables."""
    with database.atomic():
        Conversation.insert_many(
            [{"id": f"c{i:05d}", "chat_id": f"c{i:05d}", "title": f"chat {i}", "created_at": START,
              "last_updated": START, "message_count": per_chat} for i in range(chats)]).execute()
        rows = ({"conversation": f"c{i // per_chat:05d}", "role": ("user", "assistant")[i % 2],
                 "content": f"message {i}", "created_at": START + timedelta(seconds=i)}
                for i in range(chats * per_chat))
        for batch in chunked(rows, 5000):
            Message.insert_many(batch).execute()
        Gist.insert(gist_id="g1", public=True, files=["a.py"]).execute()
        UsageRecord.insert(created_at=START, provider="openai", model="gpt-4o-mini", priced=False, status="ok",
                           cost_usd=0.25).execute()


def db_copy(environ: dict[str, str], target: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "flask"), "--app", "app.wsgi", "db-copy", "--to", target], cwd=ROOT,
                          env=environ, capture_output=True, text=True, timeout=300)


def test_db_copy_moves_a_filled_sqlite_database_to_postgresql(make_app, tmp_path, own_postgres):
    make_app()  # the SQLite database of base_config, migrated, bound to `database`
    fill(CHATS, MESSAGES_PER_CHAT)
    environ = as_environ(base_config(tmp_path))

    first = db_copy(environ, own_postgres)
    assert first.returncode == 0, first.stderr
    assert f"conversation_message: {CHATS * MESSAGES_PER_CHAT} rows, {CHATS * MESSAGES_PER_CHAT} copied now" \
        in first.stdout
    assert "every row count matches" in first.stdout

    again = db_copy(environ, own_postgres)  # idempotent: nothing new, still verified
    assert again.returncode == 0, again.stderr
    assert f"conversation_message: {CHATS * MESSAGES_PER_CHAT} rows, 0 copied now" in again.stdout

    on_postgres = make_app(DATABASE_URL=own_postgres).test_client()
    history = on_postgres.get("/chat/history/c00999").json["history"]["messages"]
    assert [m["content"] for m in history][-2:] == ["message 99998", "message 99999"]
    gist = on_postgres.application.extensions["database"].execute_sql(
        "SELECT public, files FROM gist WHERE gist_id = 'g1'").fetchone()
    assert gist == (True, '["a.py"]')  # SQLite's 1 became a PostgreSQL boolean
    with database.connection_context():  # ids continue after the copied ones
        new = Message.create(conversation="c00000", role="user", content="after the move")
    assert new.id == CHATS * MESSAGES_PER_CHAT + 1


def test_db_copy_reports_a_target_that_holds_rows_the_source_does_not(make_app, tmp_path, own_postgres):
    make_app()
    fill(3, 2)
    environ = as_environ(base_config(tmp_path))
    assert db_copy(environ, own_postgres).returncode == 0
    with database.connection_context():
        Message.delete().where(Message.content == "message 0").execute()  # the source loses a row

    result = db_copy(environ, own_postgres)

    assert result.returncode != 0
    assert "conversation_message: 5 rows, 0 copied now, 6 in the target  MISMATCH" in result.stdout
    assert "row counts differ" in result.stderr
