"""Gists created or changed through the server, and their revisions (frozen copies of
app/models/gist.py as of this migration)."""
from peewee import BigAutoField, BooleanField, CharField, DateTimeField, ForeignKeyField, IntegerField, Model, TextField


def up(migrator, db):
    class Gist(Model):
        id = BigAutoField()
        gist_id = CharField(max_length=100, unique=True)
        owner = CharField(max_length=100, default="")
        description = TextField(default="")
        public = BooleanField(default=False)
        files = TextField(default="[]")
        html_url = CharField(max_length=500, default="")
        created_at = DateTimeField(null=True)
        updated_at = DateTimeField(null=True)
        deleted_at = DateTimeField(null=True)
        recorded_at = DateTimeField()
        changed_at = DateTimeField()
        revision_count = IntegerField(default=0)

        class Meta:
            database = db
            table_name = "gist"

    class GistRevision(Model):
        id = BigAutoField()
        gist = ForeignKeyField(Gist, column_name="gist_row_id", on_delete="CASCADE", index=False)
        action = CharField(max_length=16)
        endpoint = CharField(max_length=64)
        client_id = CharField(max_length=200, null=True)
        client_ip = CharField(max_length=64, null=True)
        description = TextField(null=True)
        files = TextField(default="[]")
        changes = TextField(default="{}")
        details = TextField(null=True)
        version = CharField(max_length=64, null=True)
        created_at = DateTimeField()

        class Meta:
            database = db
            table_name = "gist_revision"
            indexes = ((("gist", "id"), False),)

    db.create_tables([Gist, GistRevision])


def down(migrator, db):
    migrator.database.execute_sql("DROP TABLE IF EXISTS gist_revision")
    migrator.database.execute_sql("DROP TABLE IF EXISTS gist")
