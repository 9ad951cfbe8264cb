"""What this server did to gists: one row per gist it created or changed, one row per change.

`Gist` mirrors the gist as GitHub last answered (owner, description, public, file names,
`html_url`, GitHub's created/updated times); `deleted_at` is set when it was deleted through the
server. `GistRevision` is one create, update or delete: who asked (`client_id` from the
`X-Client-Id` header, else NULL, and the client's address), from which endpoint, what changed and
the file names after it. Both are written only after GitHub accepted the change, so they can be
read while GitHub is down (`GET /gists/local`).

The tables are created by `app/migrations/0003_gists.py`.
"""
from __future__ import annotations

from peewee import BigAutoField, BooleanField, CharField, DateTimeField, ForeignKeyField, IntegerField, TextField

from app.core.clock import utcnow
from app.core.db import BaseModel, JSONField


class Gist(BaseModel):
    id = BigAutoField()
    gist_id = CharField(max_length=100, unique=True)
    owner = CharField(max_length=100, default="")  # the GitHub login
    owner_key = CharField(max_length=40, null=True, index=True)  # the client key that first recorded it
    description = TextField(default="")
    public = BooleanField(default=False)
    files = JSONField(default=list)  # file names after the last change
    html_url = CharField(max_length=500, default="")
    created_at = DateTimeField(null=True)  # GitHub's
    updated_at = DateTimeField(null=True)  # GitHub's
    deleted_at = DateTimeField(null=True)  # ours: deleted through this server
    recorded_at = DateTimeField(default=utcnow)  # ours: the first change recorded
    changed_at = DateTimeField(default=utcnow)  # ours: the last change recorded
    revision_count = IntegerField(default=0)

    class Meta:
        table_name = "gist"


class GistRevision(BaseModel):
    id = BigAutoField()
    gist = ForeignKeyField(Gist, column_name="gist_row_id", backref="revisions", on_delete="CASCADE", index=False)
    gist_row_id: int  # the foreign key's value, without loading the gist
    action = CharField(max_length=16)  # create, update or delete
    endpoint = CharField(max_length=64)  # "POST /gists", "PATCH /gists/{gist_id}", "POST /chat/gist", ...
    client_id = CharField(max_length=200, null=True)
    client_ip = CharField(max_length=64, null=True)
    description = TextField(null=True)  # after the change
    files = JSONField(default=list)  # file names after the change
    changes = JSONField(default=dict)  # {"added", "updated", "deleted", "renamed", "description"}
    details = JSONField(null=True)  # e.g. the provider, model and explanation of a chat-made change
    version = CharField(max_length=64, null=True)  # GitHub's history version after the change
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "gist_revision"
        indexes = ((("gist", "id"), False),)
