"""A message's content parts (text and images, as JSON) when it has images; `content` keeps its text."""
from peewee import TextField


def up(migrator, db):
    migrator.migrate(migrator.add_column("conversation_message", "parts", TextField(null=True)))


def down(migrator, db):
    migrator.migrate(migrator.drop_column("conversation_message", "parts"))
