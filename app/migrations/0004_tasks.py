"""Deployment tasks and their rounds (frozen copies of app/models/task.py as of this migration)."""
from peewee import BigAutoField, CharField, DateTimeField, ForeignKeyField, IntegerField, Model, TextField


def up(migrator, db):
    class DeployTask(Model):
        id = CharField(primary_key=True, max_length=40)
        name = CharField(max_length=200, unique=True)
        email = CharField(max_length=254)
        status = CharField(max_length=16, default="queued")
        rounds = IntegerField(default=0)
        repo_owner = CharField(max_length=100, null=True)
        repo_name = CharField(max_length=100, null=True)
        repo_url = CharField(max_length=500, null=True)
        pages_url = CharField(max_length=500, null=True)
        default_branch = CharField(max_length=100, null=True)
        created_at = DateTimeField()
        updated_at = DateTimeField()

        class Meta:
            database = db
            table_name = "deploy_task"
            indexes = ((("created_at", "id"), False), (("email", "created_at"), False),
                       (("status", "created_at"), False))

    class DeployRound(Model):
        id = BigAutoField()
        task = ForeignKeyField(DeployTask, column_name="task_id", on_delete="CASCADE", index=False)
        round = IntegerField()
        nonce = CharField(max_length=200)
        email = CharField(max_length=254)
        brief = TextField()
        checks = TextField()
        evaluation_url = CharField(max_length=2048)
        attachments = TextField()
        status = CharField(max_length=16, default="queued")
        stage_done = CharField(max_length=16, null=True)
        stages = TextField()
        runs = IntegerField(default=0)
        last_error = TextField(null=True)
        files = TextField(null=True)
        file_list = TextField(null=True)
        commit_sha = CharField(max_length=64, null=True)
        repo_url = CharField(max_length=500, null=True)
        pages_url = CharField(max_length=500, null=True)
        notify_attempts = IntegerField(default=0)
        notified_at = DateTimeField(null=True)
        lease_owner = CharField(max_length=64, null=True)
        lease_until = DateTimeField(null=True)
        requeued_at = DateTimeField(null=True)
        created_at = DateTimeField()
        started_at = DateTimeField(null=True)
        finished_at = DateTimeField(null=True)
        updated_at = DateTimeField()

        class Meta:
            database = db
            table_name = "deploy_round"
            indexes = ((("task", "round", "nonce"), True), (("status", "lease_until"), False))

    db.create_tables([DeployTask, DeployRound])


def down(migrator, db):
    migrator.database.execute_sql("DROP TABLE IF EXISTS deploy_round")
    migrator.database.execute_sql("DROP TABLE IF EXISTS deploy_task")
