"""The generation of the key table: one row whose `value` the database itself bumps (triggers) in the
same transaction as any insert, update or delete on `api_key`, whoever makes it (the service, the CLI,
another instance, an operator's SQL). Workers keep the key rows they found while it stays the same
(`app.keys.service.KnownKeys`), so a revoked, rotated, edited or new key is seen by every worker and
instance on its next request, for one tiny read instead of the key's row."""
from peewee import PostgresqlDatabase


def up(migrator, db):
    db.execute_sql("CREATE TABLE key_generation (id INTEGER PRIMARY KEY, value BIGINT NOT NULL)")
    db.execute_sql("INSERT INTO key_generation (id, value) VALUES (1, 0)")
    bump = "UPDATE key_generation SET value = value + 1 WHERE id = 1"
    if isinstance(db, PostgresqlDatabase):
        db.execute_sql(f"CREATE FUNCTION bump_key_generation() RETURNS trigger LANGUAGE plpgsql AS "
                       f"$$ BEGIN {bump}; RETURN NULL; END $$")
        db.execute_sql("CREATE TRIGGER api_key_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON api_key "
                       "FOR EACH STATEMENT EXECUTE PROCEDURE bump_key_generation()")
        return
    for event in ("INSERT", "UPDATE", "DELETE"):
        db.execute_sql(f"CREATE TRIGGER api_key_after_{event.lower()} AFTER {event} ON api_key BEGIN {bump}; END")


def down(migrator, db):
    if isinstance(db, PostgresqlDatabase):
        db.execute_sql("DROP TRIGGER IF EXISTS api_key_changed ON api_key")
        db.execute_sql("DROP FUNCTION IF EXISTS bump_key_generation()")
    else:
        for event in ("insert", "update", "delete"):
            db.execute_sql(f"DROP TRIGGER IF EXISTS api_key_after_{event}")
    db.execute_sql("DROP TABLE IF EXISTS key_generation")
