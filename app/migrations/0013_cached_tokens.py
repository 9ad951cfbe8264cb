"""A usage row's prompt tokens read from and written to the vendor's prompt cache (both included in
`prompt_tokens`, as OpenAI counts them)."""
from peewee import IntegerField


def up(migrator, db):
    migrator.migrate(migrator.add_column("usage_record", "cached_read_tokens", IntegerField(default=0)),
                     migrator.add_column("usage_record", "cache_write_tokens", IntegerField(default=0)))


def down(migrator, db):
    migrator.migrate(migrator.drop_column("usage_record", "cached_read_tokens"),
                     migrator.drop_column("usage_record", "cache_write_tokens"))
