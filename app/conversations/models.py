"""Persisted conversations: one row per chat, one row per message.

The conversation row carries what the chat list needs (`message_count`, `last_updated`, `title`),
updated in the same transaction as each message insert, so `GET /chat/history` reads one index
(`last_updated, id`) and never counts messages. `busy_token`/`busy_until` mark a turn in progress
(see `app.conversations.service`): the per-chat serialisation lives in the database, so several server instances
sharing PostgreSQL agree on it. `owner` is reserved for per-API-key ownership; it is NULL today.

The tables themselves are created by `app/migrations/0002_conversations.py`.
"""
from __future__ import annotations

from peewee import BigAutoField, CharField, DateTimeField, ForeignKeyField, IntegerField, TextField

from app.core.clock import utcnow
from app.core.db import BaseModel


class Conversation(BaseModel):
    id = CharField(primary_key=True, max_length=64)
    owner = CharField(max_length=128, null=True)
    title = CharField(max_length=120, default="")
    created_at = DateTimeField(default=utcnow)
    last_updated = DateTimeField(default=utcnow)
    message_count = IntegerField(default=0)
    busy_token = CharField(max_length=32, null=True)
    busy_until = DateTimeField(null=True)

    class Meta:
        table_name = "conversation"
        indexes = ((("last_updated", "id"), False),)


class Message(BaseModel):
    id = BigAutoField()
    conversation = ForeignKeyField(Conversation, column_name="conversation_id", on_delete="CASCADE", index=False)
    role = CharField(max_length=16)
    content = TextField()  # the text (of every text part, when the message has images)
    parts = TextField(null=True)  # JSON of the neutral content parts, only when the message has images
    status = CharField(max_length=16, default="complete")  # complete, partial or error
    error = TextField(null=True)
    provider = CharField(max_length=64, null=True)
    model = CharField(max_length=200, null=True)
    prompt_tokens = IntegerField(null=True)
    completion_tokens = IntegerField(null=True)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "conversation_message"
        indexes = ((("conversation", "id"), False),)
