"""Counters shared by every worker of an instance without Redis (`app.keys.counters`): the per-key
reservations of tokens and dollars, and flask-limiter's windows (frozen copy of
app/keys/models.py's `LimitCounter` as of this migration)."""
from peewee import CharField, FloatField, Model


def up(migrator, db):
    class LimitCounter(Model):
        name = CharField(primary_key=True, max_length=255)
        amount = FloatField(default=0)
        expires_at = FloatField(index=True)

        class Meta:
            database = db
            table_name = "limit_counter"

    db.create_tables([LimitCounter])


def down(migrator, db):
    migrator.database.execute_sql("DROP TABLE IF EXISTS limit_counter")
