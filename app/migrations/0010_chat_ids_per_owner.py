"""Chat ids per owner, and the process holding a chat's turn.

`conversation.id` becomes a storage key: the chat id itself for a chat nobody owns (open mode, as
before), `~` and a hash of (owner, chat id) for a key's chat; the chat id the client uses moves to
`chat_id`. So two keys may each have a `team-notes` and neither can take or probe the other's.
Chats a key made before this migration move to their key's namespace (their messages follow).
`busy_holder` names the process answering a turn (`app.core.leases.this_process`), so a chat whose
process died on this machine is free at once instead of after its lease.
"""
import hashlib

from peewee import CharField


def storage_key(owner, chat_id):
    """A frozen copy of `app.conversations.models.storage_key`."""
    if owner is None:
        return chat_id
    return "~" + hashlib.sha256(f"{owner}\n{chat_id}".encode()).hexdigest()[:63]


COLUMNS = "owner, title, created_at, last_updated, message_count, busy_token, busy_until, busy_holder"


def up(migrator, db):
    migrator.migrate(
        migrator.add_column("conversation", "chat_id", CharField(max_length=64, default="")),
        migrator.add_column("conversation", "busy_holder", CharField(max_length=64, null=True)),
    )
    db.execute_sql("UPDATE conversation SET chat_id = id")
    p = db.param
    for chat_id, owner in db.execute_sql("SELECT id, owner FROM conversation WHERE owner IS NOT NULL").fetchall():
        key = storage_key(owner, chat_id)
        db.execute_sql(f"INSERT INTO conversation (id, chat_id, {COLUMNS}) SELECT {p}, chat_id, {COLUMNS} "
                       f"FROM conversation WHERE id = {p}", (key, chat_id))
        db.execute_sql(f"UPDATE conversation_message SET conversation_id = {p} WHERE conversation_id = {p}",
                       (key, chat_id))
        db.execute_sql(f"DELETE FROM conversation WHERE id = {p}", (chat_id,))
    migrator.migrate(migrator.add_index("conversation", ("chat_id",), False))


def down(migrator, db):
    p = db.param
    for key, chat_id in db.execute_sql("SELECT id, chat_id FROM conversation WHERE owner IS NOT NULL").fetchall():
        if db.execute_sql(f"SELECT 1 FROM conversation WHERE id = {p}", (chat_id,)).fetchone():
            continue  # the id is taken in the single namespace: the chat keeps its storage key
        db.execute_sql(f"INSERT INTO conversation (id, chat_id, {COLUMNS}) SELECT {p}, chat_id, {COLUMNS} "
                       f"FROM conversation WHERE id = {p}", (chat_id, key))
        db.execute_sql(f"UPDATE conversation_message SET conversation_id = {p} WHERE conversation_id = {p}",
                       (chat_id, key))
        db.execute_sql(f"DELETE FROM conversation WHERE id = {p}", (key,))
    migrator.migrate(
        migrator.drop_index("conversation", "conversation_chat_id"),
        migrator.drop_column("conversation", "busy_holder"),
        migrator.drop_column("conversation", "chat_id"),
    )
