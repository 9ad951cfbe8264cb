"""Conversations and their messages (frozen copies of app/models/conversation.py as of this migration)."""
from peewee import BigAutoField, CharField, DateTimeField, ForeignKeyField, IntegerField, Model, TextField


def up(migrator, db):
    class Conversation(Model):
        id = CharField(primary_key=True, max_length=64)
        owner = CharField(max_length=128, null=True)
        title = CharField(max_length=120, default="")
        created_at = DateTimeField()
        last_updated = DateTimeField()
        message_count = IntegerField(default=0)
        busy_token = CharField(max_length=32, null=True)
        busy_until = DateTimeField(null=True)

        class Meta:
            database = db
            table_name = "conversation"
            indexes = ((("last_updated", "id"), False),)

    class Message(Model):
        id = BigAutoField()
        conversation = ForeignKeyField(Conversation, column_name="conversation_id", on_delete="CASCADE",
                                       index=False)
        role = CharField(max_length=16)
        content = TextField()
        status = CharField(max_length=16, default="complete")
        error = TextField(null=True)
        provider = CharField(max_length=64, null=True)
        model = CharField(max_length=200, null=True)
        prompt_tokens = IntegerField(null=True)
        completion_tokens = IntegerField(null=True)
        created_at = DateTimeField()

        class Meta:
            database = db
            table_name = "conversation_message"
            indexes = ((("conversation", "id"), False),)

    db.create_tables([Conversation, Message])


def down(migrator, db):
    migrator.database.execute_sql("DROP TABLE IF EXISTS conversation_message")
    migrator.database.execute_sql("DROP TABLE IF EXISTS conversation")
