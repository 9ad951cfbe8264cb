"""The call log (a frozen copy of app/calls/models.py's `CallRecord` as of this migration)."""
from peewee import (
    BigAutoField,
    BlobField,
    BooleanField,
    CharField,
    DateTimeField,
    FloatField,
    IntegerField,
    Model,
    TextField,
)


def up(migrator, db):
    class CallRecord(Model):
        id = BigAutoField()
        created_at = DateTimeField()
        request_id = CharField(max_length=128, null=True, index=True)
        key_id = CharField(max_length=40, null=True)
        key_name = CharField(max_length=100, null=True)
        client_id = CharField(max_length=200, null=True)
        user_id = CharField(max_length=200, null=True)
        front_door = CharField(max_length=100)
        requested_model = CharField(max_length=200, null=True)
        provider = CharField(max_length=64, null=True)
        model = CharField(max_length=200, null=True)
        deployment = CharField(max_length=300, null=True)
        status = IntegerField()
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
        attempts = TextField(default="[]")
        request_payload = BlobField(null=True)
        response_payload = BlobField(null=True)

        class Meta:
            database = db
            table_name = "call_log"
            indexes = ((("created_at", "id"), False), (("key_id", "created_at", "id"), False))

    db.create_tables([CallRecord])


def down(migrator, db):
    migrator.database.execute_sql("DROP TABLE IF EXISTS call_log")
