"""Versions of a chat's messages, reasoning, files, per-chat settings and resumable turns (issue 26).

`conversation_message` becomes a tree: `parent_id` is the message it follows (NULL for a chat's first
message), and `active` marks the chat's shown branch; the versions of a message are its siblings (same
parent). Existing chats are one branch: each message's parent is the message before it. `reasoning`
keeps an answer's reasoning text, `files` the files attached to a question (JSON: name and text).
`conversation` gets its `temperature`, `busy_answer` (the answer the turn in progress is producing) and
`stop_answer` (an answer asked to stop, read by the worker producing it).
"""
from peewee import BigIntegerField, BooleanField, FloatField, TextField


def up(migrator, db):
    migrator.migrate(
        migrator.add_column("conversation_message", "parent_id", BigIntegerField(null=True)),
        migrator.add_column("conversation_message", "active", BooleanField(default=True)),
        migrator.add_column("conversation_message", "reasoning", TextField(null=True)),
        migrator.add_column("conversation_message", "files", TextField(null=True)),
        migrator.add_column("conversation", "temperature", FloatField(null=True)),
        migrator.add_column("conversation", "busy_answer", BigIntegerField(null=True)),
        migrator.add_column("conversation", "stop_answer", BigIntegerField(null=True)),
    )
    db.execute_sql("UPDATE conversation_message SET parent_id = (SELECT MAX(earlier.id) FROM conversation_message "
                   "earlier WHERE earlier.conversation_id = conversation_message.conversation_id "
                   "AND earlier.id < conversation_message.id)")
    migrator.migrate(migrator.add_index("conversation_message", ("parent_id",), False))


def down(migrator, db):
    db.execute_sql("DELETE FROM conversation_message WHERE NOT active")
    migrator.migrate(
        migrator.drop_index("conversation_message", "conversation_message_parent_id"),
        migrator.drop_column("conversation_message", "parent_id"),
        migrator.drop_column("conversation_message", "active"),
        migrator.drop_column("conversation_message", "reasoning"),
        migrator.drop_column("conversation_message", "files"),
        migrator.drop_column("conversation", "temperature"),
        migrator.drop_column("conversation", "busy_answer"),
        migrator.drop_column("conversation", "stop_answer"),
    )
