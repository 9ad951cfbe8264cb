"""Marshmallow schemas of the gist endpoints, and of the gist action a model returns in `/chat/gist`.

`files` comes as our list form, `[{"filename", "content"}]` (with `"content": null` to delete and
`"new_filename"` to rename on update), or as GitHub's own map form, `{"name": {"content"}}` (with
`"name": null` to delete and `{"filename": "new"}` to rename); both load to the list form.
Filenames are non-empty, at most 255 characters, without `/`, `\\`, control characters or bidirectional
overrides, and not `.`, `..` or `.git`.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Any

from marshmallow import RAISE, ValidationError, fields, post_load, pre_load, validate, validates_schema

from app.core.paging import CURSOR_DOC
from app.core.schemas import BaseSchema, Moment, StrictBoolean
from app.llm.schemas import NATIVE_EVENTS, AttemptSchema, ChatMessagesSchema, UsageSchema

GIST_ID = re.compile(r"[0-9A-Za-z]{1,100}")
MAX_FILES = 300  # GitHub's limit on files in one gist
# Bidirectional embeddings, overrides and isolates: they make "txt.exe" read as "exe.txt".
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def check_filename(name: str) -> None:
    if not name or not name.strip():
        raise ValidationError("A filename must not be empty.")
    if len(name) > 255:
        raise ValidationError("A filename is at most 255 characters.")
    if "/" in name:
        raise ValidationError("A filename must not contain '/'.")
    if "\\" in name:
        raise ValidationError("A filename must not contain '\\'.")
    if name in (".", "..", ".git"):
        raise ValidationError(f"A filename may not be {name!r}: the gist is a git repository.")
    if any(unicodedata.category(ch) == "Cc" or ch in BIDI_CONTROLS for ch in name):
        raise ValidationError("A filename must not contain control characters or bidirectional overrides.")


# `check_filename` as the document says it (ECMA-262): 1 to 255 characters, not only blanks (Python's
# `str.isspace`, spelled out), none a control character, a bidirectional control, '/' or '\\'; not '.',
# '..' or '.git'.
FILENAME_DOC = {"pattern": r"^(?!\.\.?$)(?!\.git$)"
                           r"(?=[\s\S]*[^\t\n\v\f\r \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000])"
                           r"[^/\\\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]{1,255}$",
                "description": "A file's name: not '.', '..' or '.git', no '/', '\\\\' or control characters."}


# Content GitHub takes for a new file: not blank (Python's `str.isspace` characters spelled out for
# ECMA-262). GitHub checks it (its 422, answered as a 400 `github_validation_failed`); the document says so.
NOT_BLANK = r"^[\s\S]*[^\t\n\v\f\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][\s\S]*$"


def check_gist_id(value: str) -> None:
    if not GIST_ID.fullmatch(value or ""):
        raise ValidationError("A gist id is letters and digits only.")


def files_as_list(files: Any) -> Any:
    """GitHub's `files` map turned into our list form; anything else is returned for the schema to judge."""
    if not isinstance(files, dict):
        return files
    listed = []
    for name, spec in files.items():
        if spec is None:
            listed.append({"filename": name, "content": None})
        elif isinstance(spec, dict):
            entry = {"filename": name, **{k: v for k, v in spec.items() if k == "content"}}
            if spec.get("filename") not in (None, name):
                entry["new_filename"] = spec["filename"]
            listed.append(entry)
        else:
            listed.append({"filename": name, "content": spec})
    return listed


class FilesFormSchema(BaseSchema):
    @pre_load
    def accept_githubs_map(self, data: Any, **kwargs) -> Any:
        if isinstance(data, dict) and isinstance(data.get("files"), dict):
            data = {**data, "files": files_as_list(data["files"])}
        return data

    @validates_schema
    def unique_filenames(self, data: dict[str, Any], **kwargs) -> None:
        names = [f["filename"] for f in data.get("files") or ()]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValidationError(f"Each file may appear once; repeated: {', '.join(duplicates)}.", "files")


class NewFileSchema(BaseSchema):
    filename = fields.String(required=True, validate=check_filename, metadata=FILENAME_DOC)
    content = fields.String(required=True, metadata={"pattern": NOT_BLANK,
                                                     "description": "Not blank: GitHub refuses it (a 400)."})


class FileChangeSchema(BaseSchema):
    """One file of an update: `content` replaces it (or adds it), `null` deletes it, `new_filename` renames it."""

    DOCUMENT_RULES = {"anyOf": [
        {"required": ["content"], "properties": {"content": {"type": "string"}}},
        {"required": ["content"], "properties": {"content": {"enum": [None]}, "new_filename": {"enum": [None]}}},
        {"required": ["new_filename"], "not": {"required": ["content"]},
         "properties": {"new_filename": {"type": "string"}}}]}

    filename = fields.String(required=True, validate=check_filename, metadata=FILENAME_DOC)
    content = fields.String(allow_none=True)
    new_filename = fields.String(allow_none=True, validate=check_filename, metadata=FILENAME_DOC)

    @validates_schema
    def says_what_to_do(self, data: dict[str, Any], **kwargs) -> None:
        if "content" not in data and not data.get("new_filename"):
            raise ValidationError("Give content (null deletes the file) or new_filename.", "content")
        if data.get("content", "") is None and data.get("new_filename"):
            raise ValidationError("A file cannot be deleted (content null) and renamed at once.", "content")

    @post_load
    def drop_empty_rename(self, data: dict[str, Any], **kwargs) -> dict[str, Any]:
        if not data.get("new_filename"):
            data.pop("new_filename", None)
        return data


class CreateGistSchema(FilesFormSchema):
    description = fields.String(load_default="", allow_none=True)
    public = StrictBoolean(load_default=False)
    files = fields.List(fields.Nested(NewFileSchema), required=True, metadata={"description": "Each filename once."},
                        validate=validate.Length(min=1, max=MAX_FILES, error="Give between 1 and 300 files."))

    @post_load
    def no_null_description(self, data: dict[str, Any], **kwargs) -> dict[str, Any]:
        data["description"] = data["description"] or ""
        return data


class UpdateGistSchema(FilesFormSchema):
    DOCUMENT_RULES = {"anyOf": [{"required": ["description"], "properties": {"description": {"type": "string"}}},
                                {"required": ["files"], "properties": {"files": {"type": "array", "minItems": 1}}}]}

    description = fields.String(load_default=None, allow_none=True)
    files = fields.List(fields.Nested(FileChangeSchema), load_default=list, validate=validate.Length(max=MAX_FILES),
                        metadata={"description": "Each filename once."})

    @validates_schema
    def changes_something(self, data: dict[str, Any], **kwargs) -> None:
        if data.get("description") is None and not data.get("files"):
            raise ValidationError("Nothing to update: give a description or files.", "files")


class ListGistsQuery(BaseSchema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100000))
    per_page = fields.Integer(load_default=30, validate=validate.Range(min=1, max=100))
    since = Moment(load_default=None, metadata={"type": "string", "format": "date-time",
                                                "description": "ISO 8601 (a date alone will do); not after until."})
    until = Moment(load_default=None, metadata={"type": "string", "format": "date-time",
                                                "description": "ISO 8601 (a date alone will do)."})

    @validates_schema
    def ordered(self, data: dict[str, Any], **kwargs) -> None:
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            raise ValidationError("since must not be after until.", "since")


class LocalGistsQuery(BaseSchema):
    """A page of the recorded gists, newest first; pass `next_cursor` back as `cursor` for the next page."""

    limit = fields.Integer(load_default=30, validate=validate.Range(min=1, max=100))
    cursor = fields.String(load_default=None, validate=validate.Length(min=1, max=200), metadata=CURSOR_DOC)


class ChatGistSchema(ChatMessagesSchema):
    """`POST /chat/gist`: the conversation; one JSON answer unless `"stream": true`."""

    stream = StrictBoolean(load_default=False)


class ModelFileSchema(BaseSchema):
    filename = fields.String(required=True)
    content = fields.String(allow_none=True, load_default=None)
    new_filename = fields.String(allow_none=True, load_default=None)


class GistActionSchema(BaseSchema):
    """The action a model chose (see `app.gists.chat.ACTION_JSON_SCHEMA`), loaded into a request body
    checked by the same schemas as the endpoints: `{"action", "gist_id", "explanation", "body"}`."""

    explanation = fields.String(required=True, validate=validate.Length(min=1))
    action = fields.String(required=True, validate=validate.OneOf(("create", "update")))
    gist_id = fields.String(allow_none=True, load_default=None)
    description = fields.String(allow_none=True, load_default=None)
    public = StrictBoolean(allow_none=True, load_default=None)
    files = fields.List(fields.Nested(ModelFileSchema), load_default=list)

    @post_load
    def as_request(self, data: dict[str, Any], **kwargs) -> dict[str, Any]:
        if data["action"] == "create":
            body = {"description": data["description"] or "", "public": bool(data["public"]),
                    "files": [{"filename": f["filename"], "content": f["content"]} for f in data["files"]]}
            return {**self._pick(data), "body": CreateGistSchema().load(body)}
        if not data["gist_id"]:
            raise ValidationError("An update needs the gist_id of the gist to change.", "gist_id")
        check_gist_id_field(data["gist_id"])
        body = {"files": [self._change(f) for f in data["files"]]}
        if data["description"] is not None:
            body["description"] = data["description"]
        return {**self._pick(data), "body": UpdateGistSchema().load(body)}

    @staticmethod
    def _pick(data: dict[str, Any]) -> dict[str, Any]:
        return {"action": data["action"], "gist_id": data["gist_id"] if data["action"] == "update" else None,
                "explanation": data["explanation"]}

    @staticmethod
    def _change(file: dict[str, Any]) -> dict[str, Any]:
        """The model's file (content null + new_filename renames; content null alone deletes) as a change."""
        change = {"filename": file["filename"]}
        if file["new_filename"]:
            change["new_filename"] = file["new_filename"]
            if file["content"] is not None:
                change["content"] = file["content"]
        else:
            change["content"] = file["content"]
        return change


def check_gist_id_field(value: str) -> None:
    try:
        check_gist_id(value)
    except ValidationError as exc:
        raise ValidationError(exc.messages, "gist_id") from None


# -- what the gist endpoints answer (for the OpenAPI document; views build the dicts) -----------------


class GistFileSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    filename = fields.String(required=True)
    language = fields.String(required=True, allow_none=True)
    size = fields.Integer(required=True, allow_none=True)
    raw_url = fields.String(required=True, allow_none=True)
    content = fields.String(metadata={"description": "Only where GitHub sent it (one gist, not a list)."})
    truncated = StrictBoolean(metadata={"description": "GitHub cut the content (fetch raw_url for all of it)."})


class GistSchema(BaseSchema):
    """Our shape of a GitHub gist: `files` is a list."""

    class Meta:
        unknown = RAISE

    id = fields.String(required=True)
    html_url = fields.String(required=True)
    description = fields.String(required=True)
    public = StrictBoolean(required=True)
    owner = fields.String(required=True, metadata={"description": "The owner's login."})
    files = fields.List(fields.Nested(GistFileSchema), required=True)
    created_at = fields.String(required=True, allow_none=True, metadata={"format": "date-time"})
    updated_at = fields.String(required=True, allow_none=True, metadata={"format": "date-time"})


class OneGistSchema(GistSchema):
    success = StrictBoolean(required=True)


class ChangedGistSchema(OneGistSchema):
    recorded = StrictBoolean(required=True, metadata={
        "description": "Whether the change was written to this server's record (false: GitHub made it, the "
                       "database could not record it)."})


class DeletedGistSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    id = fields.String(required=True)
    deleted = StrictBoolean(required=True)
    recorded = StrictBoolean(required=True)
    success = StrictBoolean(required=True)


class GistPageSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    gists = fields.List(fields.Nested(GistSchema), required=True)
    page = fields.Integer(required=True)
    per_page = fields.Integer(required=True)
    pages = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True,
                        metadata={"description": "GitHub's Link relations (next, prev, first, last) to page numbers."})
    links = fields.Dict(keys=fields.String(), values=fields.String(), required=True,
                        metadata={"description": "The same relations as URLs of this endpoint (also in `Link`)."})
    success = StrictBoolean(required=True)


class GistRevisionSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    action = fields.String(required=True, metadata={"enum": ["create", "update", "delete"]})
    endpoint = fields.String(required=True, metadata={"example": "PATCH /gists/{gist_id}"})
    client_id = fields.String(required=True, allow_none=True, metadata={"description": "X-Client-Id, when sent."})
    client_ip = fields.String(required=True, allow_none=True)
    description = fields.String(required=True, allow_none=True)
    files = fields.List(fields.String(), required=True, metadata={"description": "File names after the change."})
    changes = fields.Dict(required=True, metadata={"description": "added, updated, deleted, renamed, description."})
    details = fields.Dict(required=True, allow_none=True,
                          metadata={"description": "E.g. the provider, model and explanation of a chat-made change."})
    version = fields.String(required=True, allow_none=True, metadata={"description": "GitHub's history version."})
    at = fields.String(required=True, allow_none=True, metadata={"format": "date-time"})


class LocalGistSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    id = fields.String(required=True)
    owner = fields.String(required=True)
    description = fields.String(required=True)
    public = StrictBoolean(required=True)
    files = fields.List(fields.String(), required=True)
    html_url = fields.String(required=True)
    created_at = fields.String(required=True, allow_none=True, metadata={"format": "date-time"})
    updated_at = fields.String(required=True, allow_none=True, metadata={"format": "date-time"})
    deleted_at = fields.String(required=True, allow_none=True, metadata={"format": "date-time"})
    recorded_at = fields.String(required=True, allow_none=True, metadata={"format": "date-time"})
    changed_at = fields.String(required=True, allow_none=True, metadata={"format": "date-time"})
    revision_count = fields.Integer(required=True)
    last_revision = fields.Nested(GistRevisionSchema, required=True, allow_none=True)


class LocalGistPageSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    gists = fields.List(fields.Nested(LocalGistSchema), required=True)
    next_cursor = fields.String(required=True, allow_none=True)
    limit = fields.Integer(required=True)
    success = StrictBoolean(required=True)


class LocalGistHistorySchema(LocalGistSchema):
    revisions = fields.List(fields.Nested(GistRevisionSchema), required=True, metadata={"description": "Oldest first."})
    success = StrictBoolean(required=True)


class GistOutcomeSchema(BaseSchema):
    """What writing a gist from the conversation did."""

    class Meta:
        unknown = RAISE

    action = fields.String(required=True, metadata={"enum": ["create", "update"]})
    gist_id = fields.String(required=True)
    html_url = fields.String(required=True)
    explanation = fields.String(required=True, metadata={"description": "The model's explanation."})
    description = fields.String(required=True)
    files = fields.List(fields.Nested(GistFileSchema), required=True)
    provider = fields.String(required=True)
    model = fields.String(required=True)
    usage = fields.Nested(UsageSchema, required=True)
    validation_retries = fields.Integer(required=True)
    attempts = fields.List(fields.Nested(AttemptSchema), required=True)
    recorded = StrictBoolean(required=True)


class ChatGistResultSchema(GistOutcomeSchema):
    success = StrictBoolean(required=True)


class GistRetrySchema(BaseSchema):
    """The model's first answer did not validate; it is asked again."""

    class Meta:
        unknown = RAISE

    type = fields.String(required=True, metadata={"enum": ["retry"]})
    message = fields.String(required=True, metadata={"description": "What was wrong, in a sentence."})
    errors = fields.Dict(required=True, metadata={"description": "Each invalid field of the action and its problems."})


class GistEventSchema(GistOutcomeSchema):
    """The gist was written: the result, as answered without streaming."""

    type = fields.String(required=True, metadata={"enum": ["gist"]})


GIST_EVENTS = (*NATIVE_EVENTS, GistRetrySchema, GistEventSchema)
GIST_STREAM = ("The native chat events (`start`, `fallback`, `delta` with the explanation, `done`, `error` with its "
               "HTTP `status`), plus `retry` (the first answer did not validate: `message`, `errors`) and `gist` "
               "(the result, as answered without streaming).")
