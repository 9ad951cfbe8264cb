"""An answer's prompt tokens read from and written to the vendor's prompt cache (both included in
`prompt_tokens`, as OpenAI counts them) and what it cost in USD, priced as its usage row is (NULL for
a model the price table does not price, and for answers stored before); a double, so that the stored
cost is the one the stream sent (PostgreSQL's REAL keeps 6 digits)."""
from peewee import DoubleField, IntegerField


def up(migrator, db):
    migrator.migrate(migrator.add_column("conversation_message", "cached_tokens", IntegerField(null=True)),
                     migrator.add_column("conversation_message", "cache_write_tokens", IntegerField(null=True)),
                     migrator.add_column("conversation_message", "cost_usd", DoubleField(null=True)))


def down(migrator, db):
    migrator.migrate(migrator.drop_column("conversation_message", "cached_tokens"),
                     migrator.drop_column("conversation_message", "cache_write_tokens"),
                     migrator.drop_column("conversation_message", "cost_usd"))
