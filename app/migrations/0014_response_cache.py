"""The response cache (`app.llm.response_cache`): its table in the database (used without REDIS_URL),
and each key's choice: cached or not, in its own namespace or one shared with other keys (frozen copy
of `ResponseCacheEntry` as of this migration)."""
from peewee import BooleanField, CharField, DoubleField, Model, TextField


def up(migrator, db):
    class ResponseCacheEntry(Model):
        key = CharField(primary_key=True, max_length=64)
        value = TextField()
        expires_at = DoubleField(index=True)

        class Meta:
            database = db
            table_name = "response_cache"

    db.create_tables([ResponseCacheEntry])
    migrator.migrate(
        migrator.add_column("api_key", "response_cache", BooleanField(default=True)),
        migrator.add_column("api_key", "response_cache_namespace", CharField(max_length=100, null=True)),
    )


def down(migrator, db):
    migrator.migrate(
        migrator.drop_column("api_key", "response_cache_namespace"),
        migrator.drop_column("api_key", "response_cache"),
    )
    migrator.database.execute_sql("DROP TABLE IF EXISTS response_cache")
