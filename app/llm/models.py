"""Usage counters: LLM calls and tokens per day, provider, model and outcome.

One row per combination, incremented in batches (see `app.llm.usage`), so `/metrics` reads a small
table however many calls were made, and several instances sharing a database add to the same rows.
When client API keys arrive, a key column joins the unique index and per-key quotas read it.
"""
from peewee import BigIntegerField, CharField, DateField

from app.core.db import BaseModel


class UsageCounter(BaseModel):
    day = DateField()
    provider = CharField(max_length=64)
    model = CharField(max_length=200)
    outcome = CharField(max_length=16)
    calls = BigIntegerField(default=0)
    prompt_tokens = BigIntegerField(default=0)
    completion_tokens = BigIntegerField(default=0)
    latency_ms = BigIntegerField(default=0)

    class Meta:
        table_name = "usage_counter"
        indexes = ((("day", "provider", "model", "outcome"), True),)
