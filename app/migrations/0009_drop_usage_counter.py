"""The database-wide usage counters go: every LLM call has its usage row (`usage_record`, 0006), which
the usage reports read, and `/metrics` counts per instance in Prometheus's own way."""
from peewee import BigAutoField, BigIntegerField, CharField, DateField, Model


def up(migrator, db):
    migrator.database.execute_sql("DROP TABLE IF EXISTS usage_counter")


def down(migrator, db):
    class UsageCounter(Model):
        id = BigAutoField()
        day = DateField()
        provider = CharField(max_length=64)
        model = CharField(max_length=200)
        outcome = CharField(max_length=16)
        calls = BigIntegerField(default=0)
        prompt_tokens = BigIntegerField(default=0)
        completion_tokens = BigIntegerField(default=0)
        latency_ms = BigIntegerField(default=0)

        class Meta:
            database = db
            table_name = "usage_counter"
            indexes = ((("day", "provider", "model", "outcome"), True),)

    db.create_tables([UsageCounter])
