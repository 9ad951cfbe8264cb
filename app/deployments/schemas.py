"""Marshmallow schemas of deployments: the `/task` and `/revise` body, the `/tasks` query, and the
file set an LLM must answer with (checked before anything is committed).

Paths in a file set or an attachment name are relative POSIX paths inside the repo: no leading
`/`, no `..` or `.` segments, no backslashes or control characters, nothing under `.git/`.
"""
from __future__ import annotations

import re
from typing import Any

from marshmallow import RAISE, ValidationError, fields, post_load, validate, validates, validates_schema

from app.core.paging import CURSOR_DOC
from app.core.schemas import BaseSchema, decode_data_uri
from app.deployments.models import STATUSES

MAX_PATH = 200
PATH_CHARS = re.compile(r"[A-Za-z0-9._\-/ ()+@~]+")


def check_path(path: Any) -> str:
    """`path` if it is a safe relative path inside a repo; ValidationError naming the problem otherwise."""
    if not isinstance(path, str) or not path:
        raise ValidationError("A path must be a non-empty string.")
    if len(path) > MAX_PATH:
        raise ValidationError(f"The path {path[:40]!r}... is longer than {MAX_PATH} characters.")
    if path.startswith("/") or "\\" in path or re.match(r"[A-Za-z]:", path):
        raise ValidationError(f"The path {path!r} must be relative (no leading '/', drive or backslash).")
    segments = path.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        raise ValidationError(f"The path {path!r} may not contain '..', '.' or empty segments.")
    if segments[0] == ".git" or not PATH_CHARS.fullmatch(path):
        raise ValidationError(f"The path {path!r} has characters or a location that is not allowed.")
    return path


# `check_path` in ECMA-262: 1 to MAX_PATH of PATH_CHARS, relative, no empty, '.' or '..' segment, not in .git.
PATH_DOC = {"pattern": r"^(?!\.git(?:/|$))(?!(?:[^/]*/)*\.{0,2}(?:/|$))[A-Za-z0-9._\-/ ()+@~]{1,%d}$" % MAX_PATH,
            "description": "A relative path in the repository: letters, digits and . _ - / space ( ) + @ ~; "
                           "no '.', '..' or empty segment, nothing under .git."}
# An attachment's URL: an http(s) URL, or a `data:` URI `decode_data_uri` reads (base64 or percent-encoded).
DATA_URI_HEAD = r"data:(?:[A-Za-z0-9_.+-]+/[A-Za-z0-9_.+-]+)?(?:;[A-Za-z0-9_.+-]+=[^;,]*)*"
ATTACHMENT_URL_DOC = {"pattern": rf"^(?:https?://[\s\S]*|{DATA_URI_HEAD},[\s\S]*|"
                                 rf"{DATA_URI_HEAD};base64,(?:[A-Za-z0-9+/]{{4}})*(?:[A-Za-z0-9+/]{{2}}==|[A-Za-z0-9+/]{{3}}=)?)$",
                      "description": "A `data:` URI, or an http(s) URL fetched when the task runs."}


class CheckField(fields.Field):
    """A check is usually a sentence; an object (some evaluators send `{"js": ...}`) is kept as JSON text."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs["metadata"] = {"oneOf": [{"type": "string"}, {"type": "object"}, {"type": "array"}],
                              "description": "A sentence, or an object (kept as JSON text).",
                              **kwargs.get("metadata", {})}
        super().__init__(*args, **kwargs)

    def _deserialize(self, value: Any, attr, data, **kwargs) -> Any:
        if isinstance(value, str):
            return value
        if isinstance(value, (dict, list)):
            return value
        raise ValidationError("A check must be a string or an object.")


class AttachmentSchema(BaseSchema):
    name = fields.String(required=True, validate=check_path, metadata=PATH_DOC)
    url = fields.String(required=True, validate=validate.Length(min=1), metadata=ATTACHMENT_URL_DOC)

    @validates("url")
    def url_is_fetchable(self, value: str, **kwargs) -> None:
        if value.startswith("data:"):
            try:
                decode_data_uri(value)
            except ValueError as exc:
                raise ValidationError(f"The data: URI is invalid: {exc}.") from None
        elif not value.startswith(("http://", "https://")):
            raise ValidationError("An attachment URL must be a data: URI (or an http(s) URL).")


TASK_CHARS = re.compile(r"[^\x00-\x1f\x7f]+")
TASK_PATTERN_DOCUMENTED = r"^[^\x00-\x1f\x7f]+$"  # the same rule in ECMA-262 syntax, which OpenAPI uses


def check_task(task: str) -> None:
    """No control characters, a trailing newline included. Checked here with a full match and documented
    as TASK_PATTERN_DOCUMENTED: in a Regexp validator, Python's `$` lets a trailing newline through and
    its end-of-text anchor is no ECMA-262 regex, which OpenAPI validators (jsonschema-rs) reject."""
    if not TASK_CHARS.fullmatch(task):
        raise ValidationError("The task may not contain control characters.")


class TaskRequestSchema(BaseSchema):
    """The body of `POST /task` and `POST /revise`, as the evaluators send it."""

    email = fields.Email(required=True, validate=validate.Length(max=254))
    secret = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=1000))
    task = fields.String(required=True, validate=[validate.Length(min=1, max=200), check_task],
                         metadata={"pattern": TASK_PATTERN_DOCUMENTED})
    round = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=1000))
    nonce = fields.String(required=True, validate=validate.Length(min=1, max=200))
    brief = fields.String(required=True, validate=validate.Length(min=1, max=50_000))
    checks = fields.List(CheckField(), load_default=list, validate=validate.Length(max=100))
    evaluation_url = fields.String(required=True, validate=validate.Length(min=1, max=2048))
    attachments = fields.List(fields.Nested(AttachmentSchema), load_default=list, validate=validate.Length(max=20),
                              metadata={"description": "Each attachment name once."})

    @validates_schema
    def unique_attachment_names(self, data: dict[str, Any], **kwargs) -> None:
        names = [a["name"] for a in data.get("attachments") or []]
        if len(names) != len(set(names)):
            raise ValidationError("Attachment names must be unique.", "attachments")

    @post_load
    def tidy(self, data: dict[str, Any], **kwargs) -> dict[str, Any]:
        data["task"] = data["task"].strip()
        data["email"] = data["email"].strip()
        return data


class TaskListQuerySchema(BaseSchema):
    status = fields.String(load_default=None, validate=validate.OneOf(STATUSES))
    email = fields.String(load_default=None, validate=validate.Length(min=1, max=254))
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    cursor = fields.String(load_default=None, validate=validate.Length(max=200), metadata=CURSOR_DOC)


class GeneratedFileSchema(BaseSchema):
    path = fields.String(required=True, validate=check_path)
    content = fields.String(required=True)


class FileSetSchema(BaseSchema):
    """What the LLM must answer: the app's files and the text of the README's sections."""

    files = fields.List(fields.Nested(GeneratedFileSchema), required=True, validate=validate.Length(min=1))
    title = fields.String(load_default="", validate=validate.Length(max=200))
    summary = fields.String(required=True, validate=validate.Length(min=1, max=5000))
    usage = fields.String(load_default="", validate=validate.Length(max=10_000))
    code_explanation = fields.String(load_default="", validate=validate.Length(max=20_000))


FILE_SET_JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["files", "title", "summary", "usage", "code_explanation"],
    "properties": {
        "files": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["path", "content"],
            "properties": {"path": {"type": "string", "description": "Relative path, e.g. index.html or js/app.js"},
                           "content": {"type": "string", "description": "The whole file, as text"}}}},
        "title": {"type": "string", "description": "The app's name"},
        "summary": {"type": "string", "description": "What the app does, one paragraph"},
        "usage": {"type": "string", "description": "How to use it (Markdown)"},
        "code_explanation": {"type": "string", "description": "How the code is organised (Markdown)"},
    },
}


# -- what the deployment endpoints answer (for the OpenAPI document; views build the dicts) ------------


class AcceptedSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    status = fields.String(required=True, metadata={"enum": ["accepted"]})
    task_id = fields.String(required=True)
    round = fields.Integer(required=True)
    nonce = fields.String(required=True)
    stage = fields.String(required=True, metadata={"description": "The round's status now."})
    duplicate = fields.Boolean(required=True, metadata={"description": "The same (task, round, nonce) was sent "
                                                                       "before: this is that round."})
    status_url = fields.String(required=True)


class TaskFieldsSchema(BaseSchema):
    """What a task's summary and its detail share."""

    class Meta:
        unknown = RAISE

    task_id = fields.String(required=True)
    task = fields.String(required=True)
    email = fields.String(required=True)
    status = fields.String(required=True, metadata={"enum": list(STATUSES)})
    repo_url = fields.String(required=True, allow_none=True)
    pages_url = fields.String(required=True, allow_none=True)
    created_at = fields.String(required=True, allow_none=True, metadata={"format": "date-time"})
    updated_at = fields.String(required=True, allow_none=True, metadata={"format": "date-time"})


class TaskSummarySchema(TaskFieldsSchema):
    rounds = fields.Integer(required=True, metadata={"description": "The highest round accepted."})


class TaskPageSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    tasks = fields.List(fields.Nested(TaskSummarySchema), required=True)
    next_cursor = fields.String(required=True, allow_none=True)


class StageSchema(BaseSchema):
    """One stage of a round; a stage may add its own facts (e.g. the Pages build's status)."""

    name = fields.String(required=True)
    status = fields.String(required=True)
    attempts = fields.Integer(required=True)
    started_at = fields.String(required=True, allow_none=True, metadata={"format": "date-time"})
    finished_at = fields.String(required=True, allow_none=True, metadata={"format": "date-time"})
    seconds = fields.Float(required=True, allow_none=True)
    error = fields.String(required=True, allow_none=True)


class CommittedFileSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    path = fields.String(required=True)
    size = fields.Integer(required=True)


class RoundSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    round = fields.Integer(required=True)
    nonce = fields.String(required=True)
    status = fields.String(required=True)
    stage_done = fields.String(required=True, allow_none=True)
    brief = fields.String(required=True)
    checks = fields.List(fields.Raw(), required=True)
    evaluation_url = fields.String(required=True)
    attachments = fields.List(fields.Dict(keys=fields.String(), values=fields.String()), required=True,
                              metadata={"description": "`{name}` of each attachment."})
    stages = fields.List(fields.Nested(StageSchema), required=True)
    runs = fields.Integer(required=True, metadata={"description": "Times a worker picked the round up."})
    repo_url = fields.String(required=True, allow_none=True)
    pages_url = fields.String(required=True, allow_none=True)
    commit_sha = fields.String(required=True, allow_none=True)
    files = fields.List(fields.Nested(CommittedFileSchema), required=True, allow_none=True)
    notify_attempts = fields.Integer(required=True)
    notified_at = fields.String(required=True, allow_none=True, metadata={"format": "date-time"})
    last_error = fields.String(required=True, allow_none=True)
    created_at = fields.String(required=True, allow_none=True, metadata={"format": "date-time"})
    started_at = fields.String(required=True, allow_none=True, metadata={"format": "date-time"})
    finished_at = fields.String(required=True, allow_none=True, metadata={"format": "date-time"})


class TaskSchema(TaskFieldsSchema):
    """A task with every round (here `rounds` lists them, rather than counting them)."""

    rounds = fields.List(fields.Nested(RoundSchema), required=True)
