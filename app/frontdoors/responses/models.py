"""Stored Responses: one row per response a client asked to keep (`store`, true by default), and
one row per input item it was given, in the same database as the chats.

The response row keeps what `GET /v1/responses/{id}` answers: the columns its lookups and the chain
need (`owner`, `previous_response_id`, `status`...), its `output` items and `usage` as JSON, and the
rest of the response object (the request's echo: tools, temperature, text...) as `echo`. Input
items are rows of their own, in the order given (`seq`), so `input_items` pages through them with
the `(response_id, seq)` index, and an `after` item is found with `(response_id, item_id)`.

The tables themselves are created by `app/migrations/0008_responses.py`.
"""
from __future__ import annotations

from peewee import BigAutoField, CharField, DateTimeField, ForeignKeyField, TextField

from app.core.clock import utcnow
from app.core.db import BaseModel, JSONField


class StoredResponse(BaseModel):
    id = CharField(primary_key=True, max_length=64)  # resp_...
    owner = CharField(max_length=40, null=True, index=True)  # the key that made it (app.core.caller)
    model = CharField(max_length=200)
    status = CharField(max_length=16)  # completed, incomplete or failed
    created_at = DateTimeField(default=utcnow)
    previous_response_id = CharField(max_length=64, null=True)  # not a foreign key: deleting one ends a chain
    instructions = TextField(null=True)
    output = JSONField()
    usage = JSONField(null=True)
    echo = JSONField()  # the rest of the response object

    class Meta:
        table_name = "stored_response"


class InputItem(BaseModel):
    seq = BigAutoField()  # the order items were given in, across a chain too (a response follows its previous)
    response = ForeignKeyField(StoredResponse, column_name="response_id", on_delete="CASCADE", index=False)
    item_id = CharField(max_length=200)  # the item's `id`: the client's, or one given here (msg_, fc_, fco_...)
    item = JSONField()

    class Meta:
        table_name = "response_input_item"
        indexes = ((("response", "seq"), False), (("response", "item_id"), False))
