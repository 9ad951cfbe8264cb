"""Client API keys, one usage row per LLM call, and the key that owns each gist record and deploy
task (frozen copies of app/keys/models.py as of this migration). Conversations already have `owner`."""
from peewee import (
    BigAutoField,
    BigIntegerField,
    BooleanField,
    CharField,
    DateTimeField,
    FloatField,
    IntegerField,
    Model,
    TextField,
)


def up(migrator, db):
    class ApiKey(Model):
        id = CharField(primary_key=True, max_length=40)
        name = CharField(max_length=100)
        hint = CharField(max_length=16)
        key_hash = CharField(max_length=64, unique=True)
        admin = BooleanField(default=False)
        models = TextField(null=True)
        scopes = TextField(default="[]")
        rpm = IntegerField(null=True)
        tpm = IntegerField(null=True)
        daily_tokens = BigIntegerField(null=True)
        monthly_budget_usd = FloatField(null=True)
        expires_at = DateTimeField(null=True)
        revoked_at = DateTimeField(null=True)
        created_at = DateTimeField()
        rotated_at = DateTimeField(null=True)

        class Meta:
            database = db
            table_name = "api_key"

    class UsageRecord(Model):
        id = BigAutoField()
        created_at = DateTimeField(index=True)
        key_id = CharField(max_length=40, null=True)
        client_id = CharField(max_length=200, null=True)
        user_id = CharField(max_length=200, null=True)
        provider = CharField(max_length=64)
        model = CharField(max_length=200)
        prompt_tokens = IntegerField(default=0)
        completion_tokens = IntegerField(default=0)
        reasoning_tokens = IntegerField(default=0)
        cost_usd = FloatField(default=0)
        priced = BooleanField(default=True)
        latency_ms = IntegerField(default=0)
        status = CharField(max_length=16)
        request_id = CharField(max_length=128, null=True)

        class Meta:
            database = db
            table_name = "usage_record"
            indexes = ((("key_id", "created_at"), False),)

    db.create_tables([ApiKey, UsageRecord])
    migrator.migrate(
        migrator.add_column("gist", "owner_key", CharField(max_length=40, null=True)),
        migrator.add_index("gist", ("owner_key",), False),
        migrator.add_column("deploy_task", "owner_key", CharField(max_length=40, null=True)),
        migrator.add_index("deploy_task", ("owner_key",), False),
        migrator.add_index("conversation", ("owner",), False),
    )


def down(migrator, db):
    migrator.migrate(
        migrator.drop_column("gist", "owner_key"),
        migrator.drop_column("deploy_task", "owner_key"),
    )
    migrator.database.execute_sql("DROP TABLE IF EXISTS usage_record")
    migrator.database.execute_sql("DROP TABLE IF EXISTS api_key")
