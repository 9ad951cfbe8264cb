"""Stored Responses and their input items (frozen copies of app/frontdoors/responses/models.py as of
this migration)."""
from peewee import BigAutoField, CharField, DateTimeField, ForeignKeyField, Model, TextField


def up(migrator, db):
    class StoredResponse(Model):
        id = CharField(primary_key=True, max_length=64)
        owner = CharField(max_length=40, null=True, index=True)
        model = CharField(max_length=200)
        status = CharField(max_length=16)
        created_at = DateTimeField()
        previous_response_id = CharField(max_length=64, null=True)
        instructions = TextField(null=True)
        output = TextField()
        usage = TextField(null=True)
        echo = TextField()

        class Meta:
            database = db
            table_name = "stored_response"

    class InputItem(Model):
        seq = BigAutoField()
        response = ForeignKeyField(StoredResponse, column_name="response_id", on_delete="CASCADE", index=False)
        item_id = CharField(max_length=200)
        item = TextField()

        class Meta:
            database = db
            table_name = "response_input_item"
            indexes = ((("response", "seq"), False), (("response", "item_id"), False))

    db.create_tables([StoredResponse, InputItem])


def down(migrator, db):
    migrator.database.execute_sql("DROP TABLE IF EXISTS response_input_item")
    migrator.database.execute_sql("DROP TABLE IF EXISTS response")
