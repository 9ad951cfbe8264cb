"""The call log: one row per request to an LLM front door (`app.calls.service`), with its attempts,
and its request and answer bodies when LOG_PAYLOADS kept them (redacted, capped, zlib-compressed;
set to null by the nightly prune after LOG_PAYLOADS_RETENTION_DAYS, the row itself after
CALL_LOG_RETENTION_DAYS).

Table: `app/migrations/0012_call_log.py`.
"""
from __future__ import annotations

from peewee import BigAutoField, BlobField, BooleanField, CharField, DateTimeField, FloatField, IntegerField

from app.core.db import BaseModel, JSONField


class CallRecord(BaseModel):
    id = BigAutoField()
    created_at = DateTimeField()  # when the request began
    request_id = CharField(max_length=128, null=True, index=True)
    key_id = CharField(max_length=40, null=True)
    key_name = CharField(max_length=100, null=True)
    client_id = CharField(max_length=200, null=True)
    user_id = CharField(max_length=200, null=True)
    front_door = CharField(max_length=100)  # the route, e.g. /v1/chat/completions or /chat/{provider}
    requested_model = CharField(max_length=200, null=True)
    provider = CharField(max_length=64, null=True)  # what answered; null when nothing did
    model = CharField(max_length=200, null=True)
    deployment = CharField(max_length=300, null=True)
    status = IntegerField()  # the HTTP status sent
    error_type = CharField(max_length=64, null=True)
    latency_ms = IntegerField()
    ttft_ms = IntegerField(null=True)
    prompt_tokens = IntegerField(default=0)
    cached_tokens = IntegerField(default=0)
    completion_tokens = IntegerField(default=0)
    reasoning_tokens = IntegerField(default=0)
    cost_usd = FloatField(default=0)
    streamed = BooleanField(default=False)
    fallbacks = IntegerField(default=0)
    attempts = JSONField(default=list)
    request_payload = BlobField(null=True)
    response_payload = BlobField(null=True)

    class Meta:
        table_name = "call_log"
        indexes = ((("created_at", "id"), False), (("key_id", "created_at", "id"), False))
