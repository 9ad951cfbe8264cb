"""Persisted conversations: one row per chat, one row per message.

A chat's id is its owner's: `id` is the row's storage key (`storage_key`), the chat id itself for a
chat nobody owns (open mode) and a hash of (owner, chat id) for a key's chat, whose `chat_id` column
keeps the id the client uses. So two keys may each have a `team-notes`, and neither can take or probe
the other's.

The conversation row carries what the chat list needs (`message_count`, `last_updated`, `title`),
updated in the same transaction as each message insert, so `GET /chat/history` reads one index
(`last_updated, id`) and never counts messages. `busy_token`/`busy_until` mark a turn in progress
(see `app.conversations.service`): the per-chat serialisation lives in the database, so several server instances
sharing PostgreSQL agree on it; `busy_holder` names the process answering (`app.core.leases.this_process`), so
a chat whose process died on this machine is free at once. `owner` is the key that made the chat (NULL without keys).

Messages form a tree (`parent_id`); `active` marks the branch the chat shows, and a message's versions
are its siblings. The tables themselves are created by `app/migrations/0002_conversations.py`
(`chat_id` and `busy_holder`: 0010; versions, reasoning, files, temperature and the turn's answer: 0015;
an answer's cached tokens and cost: 0017).
"""
from __future__ import annotations

import hashlib
from typing import Any

from peewee import (
    BigAutoField,
    BigIntegerField,
    BooleanField,
    CharField,
    DateTimeField,
    DoubleField,
    FloatField,
    ForeignKeyField,
    IntegerField,
    TextField,
)

from app.core.clock import utcnow
from app.core.db import BaseModel


def storage_key(owner: Any, chat_id: str) -> str:
    """The row id of `owner`'s chat `chat_id`: the id itself without an owner, else `~` and 63 hex digits
    of a hash (never a valid chat id, so the two namespaces cannot meet)."""
    if owner is None:
        return chat_id
    return "~" + hashlib.sha256(f"{owner}\n{chat_id}".encode()).hexdigest()[:63]


class Conversation(BaseModel):
    id = CharField(primary_key=True, max_length=64)  # storage_key(owner, chat_id)
    chat_id = CharField(max_length=64, default="", index=True)
    owner = CharField(max_length=128, null=True)
    title = CharField(max_length=120, default="")
    created_at = DateTimeField(default=utcnow)
    last_updated = DateTimeField(default=utcnow)
    message_count = IntegerField(default=0)
    busy_token = CharField(max_length=32, null=True)
    busy_until = DateTimeField(null=True)
    busy_holder = CharField(max_length=64, null=True)
    busy_answer = BigIntegerField(null=True)  # the answer the turn in progress produces
    stop_answer = BigIntegerField(null=True)  # an answer asked to stop (read by the worker producing it)
    temperature = FloatField(null=True)  # the chat's own, for every turn that sends none

    class Meta:
        table_name = "conversation"
        indexes = ((("last_updated", "id"), False),)


class Message(BaseModel):
    id = BigAutoField()
    conversation = ForeignKeyField(Conversation, column_name="conversation_id", on_delete="CASCADE", index=False)
    role = CharField(max_length=16)
    content = TextField()  # the text (of every text part, when the message has images)
    parts = TextField(null=True)  # JSON of the neutral content parts, only when the message has images
    status = CharField(max_length=16, default="complete")  # complete, partial or error (also while it streams)
    error = TextField(null=True)
    provider = CharField(max_length=64, null=True)
    model = CharField(max_length=200, null=True)
    prompt_tokens = IntegerField(null=True)
    completion_tokens = IntegerField(null=True)
    cached_tokens = IntegerField(null=True)  # of prompt_tokens, read from the vendor's prompt cache
    cache_write_tokens = IntegerField(null=True)  # of prompt_tokens, written to it
    cost_usd = DoubleField(null=True)  # as its usage row prices it; NULL for a model without a price
    created_at = DateTimeField(default=utcnow)
    parent_id = BigIntegerField(null=True, index=True)  # the message this one follows; its versions share it
    active = BooleanField(default=True)  # on the chat's shown branch
    reasoning = TextField(null=True)  # an answer's reasoning (thinking) text
    files = TextField(null=True)  # JSON [{"name", "text"}] of the files sent with a question

    class Meta:
        table_name = "conversation_message"
        indexes = ((("conversation", "id"), False),)
