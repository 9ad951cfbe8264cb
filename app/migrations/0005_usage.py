"""Usage counters (a frozen copy of app/models/usage.py as of this migration)."""
from peewee import BigAutoField, BigIntegerField, CharField, DateField, Model


def up(migrator, db):
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
