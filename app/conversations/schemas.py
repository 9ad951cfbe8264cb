"""Marshmallow schemas of the persisted-conversation endpoints (`POST /chat` with `message`, history,
search, rename).

The chat id rule is written once here (`CHAT_ID_RULE`) so every 400 about an id names it the same way.
"""
from __future__ import annotations

import re
from typing import Any

from marshmallow import RAISE, ValidationError, fields, validate, validates_schema

from app.core.paging import CURSOR_DOC
from app.core.schemas import BaseSchema, StrictBoolean
from app.llm.schemas import (
    MODEL_NAME_DOC,
    MessageContent,
    NativeDeltaSchema,
    NativeDoneSchema,
    NativeErrorSchema,
    NativeEventSchema,
    NativeStartSchema,
    check_model_name,
    max_tokens_field,
)

CHAT_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
STORAGE_KEY_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}|~[0-9a-f]{63}")  # a chat's row id (models.storage_key)
CHAT_ID_RULE = "a chat_id is 1 to 64 characters, each one of A-Z, a-z, 0-9, '-' or '_'"
CHAT_ID_ERROR = CHAT_ID_RULE[0].upper() + CHAT_ID_RULE[1:] + "."
MAX_HISTORY_PAGE = 500
MAX_SEARCH_PAGE = 100
MAX_TITLE_CHARS = 120
MAX_SYSTEM_CHARS = 100_000
MESSAGE_REQUIRED = 'Send "message" (a stored chat) or "messages" (a stateless chat with the whole conversation).'


def check_chat_id(value: str) -> str:
    if not isinstance(value, str) or not CHAT_ID_PATTERN.fullmatch(value):
        raise ValidationError(CHAT_ID_ERROR)
    return value


def check_not_empty(value: Any) -> None:
    if value == "":
        raise ValidationError("message must not be empty.")


class AttachedFileSchema(BaseSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=255),
                         metadata={"description": "The file's name, shown to the model."})
    data = fields.String(required=True, metadata={"description": "The file's bytes, base64."})


class ConversationChatSchema(BaseSchema):
    """A turn of a persisted chat: `message` is added to the chat `chat_id` (made when absent).

    `replace` redoes the end of an existing chat: "answer" answers its last question again (the last
    answer is dropped; send no `message`), "message" replaces its last question (and the answer after
    it) by `message`."""

    DOCUMENT_RULES = {"not": {"required": ["messages"]},  # a body with `messages` is the stateless chat
                      "description": "Send provider or model, not both; at most one of replace, regenerate and "
                                     "edit, each with a chat_id; a message unless replace is \"answer\" or "
                                     "regenerate is given (then no message and no files); resumable only with "
                                     "stream. files: base64 of UTF-8 text or of a PDF."}

    message = MessageContent(load_default=None, allow_none=False, validate=check_not_empty, not_empty=True,
                             metadata={"description": "The user's message: a string, or OpenAI-style content "
                                                      "parts (text and base64 data: URL images)."})
    chat_id = fields.String(load_default=None, allow_none=True, validate=check_chat_id,
                            error_messages={"invalid": CHAT_ID_ERROR},
                            metadata={"pattern": f"^{CHAT_ID_PATTERN.pattern}$",
                                      "description": "Chat to continue or create; a UUID is made when absent. "
                                                     + CHAT_ID_RULE + "."})
    provider = fields.String(load_default=None, allow_none=True,
                             metadata={"description": "Provider name or alias; default DEFAULT_PROVIDER."})
    model = fields.String(load_default=None, allow_none=True, validate=check_model_name,
                          metadata={**MODEL_NAME_DOC, "description": "A model of GET /v1/models (an alias, "
                                    "provider/model, or a model name); instead of provider."})
    replace = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(("answer", "message")),
                            metadata={"description": '"answer": answer the last question again; "message": '
                                                     "replace the last question by message."})
    stream = StrictBoolean(load_default=False, allow_none=True,
                            metadata={"description": "Stream SSE events; the last one carries chat_id."})
    max_tokens = max_tokens_field(allow_none=True)
    temperature = fields.Float(load_default=None, allow_none=True, validate=validate.Range(min=0, max=2))

    after = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=1),
                           metadata={"description": "The id of the last message the client shows; 409 "
                                                    "chat_changed if the chat's branch ends elsewhere."})
    regenerate = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=1),
                                metadata={"description": "The id of an answer to answer again, as a new version "
                                                         "(send no message)."})
    edit = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=1),
                          metadata={"description": "The id of a question to replace by message, as a new version."})
    system = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=MAX_SYSTEM_CHARS),
                           metadata={"description": "A new chat's system prompt (\"\" for none); default: the "
                                                    "server's."})
    files = fields.List(fields.Nested(AttachedFileSchema), load_default=list, allow_none=False,
                        metadata={"description": "Text, Markdown, code or PDF files sent to the model before "
                                                 "the message."})
    resumable = StrictBoolean(load_default=False, allow_none=True,
                              metadata={"description": "With stream: the answer goes on if the client leaves; "
                                                       "follow it again with GET .../messages/{answer_id}/stream."})

    @validates_schema
    def consistent(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("provider") and data.get("model"):
            raise ValidationError('Send "provider" or "model", not both.', "model")
        redo = [name for name in ("replace", "regenerate", "edit") if data.get(name)]
        if len(redo) > 1:
            raise ValidationError(f'Send one of "replace", "regenerate" and "edit", not {" and ".join(redo)}.',
                                  redo[-1])
        if redo and not data.get("chat_id"):
            raise ValidationError(f'"{redo[0]}" needs the chat_id of an existing chat.', "chat_id")
        answer_again = data.get("replace") == "answer" or data.get("regenerate")
        if answer_again and data.get("message") is not None:
            raise ValidationError("To answer again send no message: the question is answered again.", "message")
        if answer_again and data.get("files"):
            raise ValidationError("To answer again send no files: the question keeps its own.", "files")
        if not answer_again and data.get("message") is None:
            raise ValidationError(MESSAGE_REQUIRED, "message")
        if data.get("resumable") and not data.get("stream"):
            raise ValidationError('"resumable" needs "stream": true.', "resumable")


class HistoryQuerySchema(BaseSchema):
    """A page of the chat list, newest first; pass `next_cursor` back as `cursor` for the next page."""

    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=MAX_HISTORY_PAGE))
    cursor = fields.String(load_default=None, validate=validate.Length(min=1, max=200), metadata=CURSOR_DOC)


class SearchQuerySchema(BaseSchema):
    """Chats whose title or messages contain `q`, newest first, a page at a time (as the history)."""

    q = fields.String(required=True, validate=validate.Length(min=1, max=200),
                      metadata={"description": "Text to find in titles and messages (case-insensitive)."})
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=MAX_SEARCH_PAGE))
    cursor = fields.String(load_default=None, validate=validate.Length(min=1, max=200), metadata=CURSOR_DOC)


def check_not_blank(value: str) -> None:
    if not value.strip():
        raise ValidationError("title must not be blank.")


class UpdateChatSchema(BaseSchema):
    """Any of a chat's title, system prompt and temperature; the next turns use them."""

    DOCUMENT_RULES = {"minProperties": 1}

    title = fields.String(validate=[validate.Length(min=1, max=MAX_TITLE_CHARS), check_not_blank],
                          metadata={"description": "The chat's new title."})
    system_prompt = fields.String(validate=validate.Length(max=MAX_SYSTEM_CHARS),
                                  metadata={"description": "The chat's system prompt; \"\" removes it."})
    temperature = fields.Float(allow_none=True, validate=validate.Range(min=0, max=2),
                               metadata={"description": "The chat's temperature; null: the provider's default."})

    @validates_schema
    def something(self, data: dict[str, Any], **kwargs: Any) -> None:
        if not data:
            raise ValidationError('Send at least one of "title", "system_prompt" and "temperature".', "title")


class ResumeQuerySchema(BaseSchema):
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0),
                            metadata={"description": "Characters of the answer the client already has."})


# -- what the conversation endpoints answer (for the OpenAPI document; views build the dicts) ----------


class StoredChatAnswerSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    response = fields.String(required=True)
    chat_id = fields.String(required=True)
    provider = fields.String(required=True)
    model = fields.String(required=True)
    message_id = fields.Integer(required=True, allow_none=True,
                                metadata={"description": "The question's id (null for a regenerate)."})
    answer_id = fields.Integer(required=True)
    usage = fields.Dict(required=True, metadata={"description": "prompt_tokens, completion_tokens, total_tokens; "
                                                                "prompt_tokens_details.cached_tokens when any."})
    cost_usd = fields.Float(metadata={"description": "What the answer cost in USD, priced as its usage row is; "
                                                     "absent for a model the price table does not price."})
    reasoning = fields.String(required=True, metadata={"description": "The model's reasoning; \"\" when none."})
    success = StrictBoolean(required=True)


class ChatSummarySchema(BaseSchema):
    class Meta:
        unknown = RAISE

    created_at = fields.String(required=True, metadata={"format": "date-time"})
    last_updated = fields.String(required=True, metadata={"format": "date-time"})
    message_count = fields.Integer(required=True)
    title = fields.String(required=True, allow_none=True, metadata={"description": "From the first message."})


class ChatListSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    chats = fields.Dict(keys=fields.String(), values=fields.Nested(ChatSummarySchema), required=True,
                        metadata={"description": "Chat id to its summary, newest first."})
    next_cursor = fields.String(required=True, allow_none=True,
                                metadata={"description": "Pass as `cursor` for the next page; null on the last."})
    success = StrictBoolean(required=True)


class VersionsSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    count = fields.Integer(required=True)
    index = fields.Integer(required=True, metadata={"description": "0-based, into ids."})
    ids = fields.List(fields.Integer(), required=True, metadata={"description": "Oldest version first."})


class StoredFileSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    name = fields.String(required=True)
    chars = fields.Integer(required=True, metadata={"description": "Characters of its text."})


class StoredMessageSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    id = fields.Integer(required=True)
    role = fields.String(required=True, metadata={"enum": ["system", "user", "assistant"]})
    content = fields.String(required=True)
    timestamp = fields.String(required=True, metadata={"format": "date-time"})
    status = fields.String(required=True, metadata={"description": "`complete`, or `partial`/`error` for an "
                                                                   "answer cut short."})
    provider = fields.String(allow_none=True, metadata={"description": "Assistant messages only."})
    model = fields.String(allow_none=True, metadata={"description": "Assistant messages only."})
    error = fields.String(metadata={"description": "Why an answer was cut short."})
    images = fields.List(fields.String(), metadata={"description": "The message's images, as data: URLs."})
    versions = fields.Nested(VersionsSchema, metadata={"description": "Every message but the system one."})
    reasoning = fields.String(metadata={"description": "An answer's reasoning, when it had any."})
    usage = fields.Dict(metadata={"description": "An answer's prompt_tokens, completion_tokens and total_tokens "
                                                 "(with prompt_tokens_details.cached_tokens when any)."})
    cost_usd = fields.Float(metadata={"description": "What the answer cost in USD; absent for a model without "
                                                     "a price and for answers stored before costs were."})
    files = fields.List(fields.Nested(StoredFileSchema), metadata={"description": "A question's files."})


class ChatDetailSchema(ChatSummarySchema):
    system_prompt = fields.String(required=True, metadata={"description": "\"\" for none."})
    temperature = fields.Float(required=True, allow_none=True)
    answering = fields.Integer(required=True, allow_none=True,
                               metadata={"description": "The answer being produced now (resume it), or null."})
    last_message_id = fields.Integer(required=True, allow_none=True,
                                     metadata={"description": "The last message of the shown branch."})
    messages = fields.List(fields.Nested(StoredMessageSchema), required=True,
                           metadata={"description": "Oldest first, the system message first."})


class ChatHistorySchema(BaseSchema):
    class Meta:
        unknown = RAISE

    chat_id = fields.String(required=True)
    history = fields.Nested(ChatDetailSchema, required=True)
    success = StrictBoolean(required=True)


class ChatDeletedSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    message = fields.String(required=True)
    success = StrictBoolean(required=True)


class SearchHitSchema(ChatSummarySchema):
    match = fields.String(required=True, allow_none=True,
                          metadata={"description": "The first matching message around the match; null when "
                                                   "only the title matches."})


class ChatSearchSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    chats = fields.Dict(keys=fields.String(), values=fields.Nested(SearchHitSchema), required=True,
                        metadata={"description": "Chat id to its summary and match, newest first."})
    next_cursor = fields.String(required=True, allow_none=True)
    success = StrictBoolean(required=True)


class RenamedChatSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    chat_id = fields.String(required=True)
    title = fields.String(required=True)
    system_prompt = fields.String(required=True)
    temperature = fields.Float(required=True, allow_none=True)
    success = StrictBoolean(required=True)


class StoppingSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    chat_id = fields.String(required=True)
    answer_id = fields.Integer(required=True)
    stopping = StrictBoolean(required=True)
    success = StrictBoolean(required=True)


# -- the events of a stored chat's stream (beside the stateless chat's, `NATIVE_EVENTS`) ------------------


class StoredStartSchema(NativeStartSchema):
    """A stored chat's answer has begun: who answers, and the ids of the question and the answer."""

    chat_id = fields.String(required=True)
    message_id = fields.Integer(required=True, allow_none=True,
                                metadata={"description": "The question's id (null for a regenerate)."})
    answer_id = fields.Integer(required=True, metadata={"description": "Resume or stop the answer with it."})


class ReasoningEventSchema(NativeEventSchema):
    """A piece of the model's reasoning (thinking), stored with the answer."""

    type = fields.String(required=True, metadata={"enum": ["reasoning"]})
    content = fields.String(required=True)


class StoredDoneSchema(NativeDoneSchema):
    """The end of a stored chat's answer, with its ids and (for a priced model) its cost."""

    cost_usd = fields.Float(metadata={"description": "What the answer cost in USD, as stored with it; absent for a "
                                                     "model the price table does not price."})
    message_id = fields.Integer(required=True, allow_none=True)
    answer_id = fields.Integer(required=True)


class StoppedEventSchema(NativeEventSchema):
    """The answer was stopped (`POST .../stop`); it is stored `partial`."""

    type = fields.String(required=True, metadata={"enum": ["stopped"]})
    answer_id = fields.Integer(required=True)


class ResumedDoneSchema(NativeEventSchema):
    """The end of a resumed answer: how it is stored."""

    type = fields.String(required=True, metadata={"enum": ["done"]})
    status = fields.String(required=True, metadata={"enum": ["complete", "partial", "error"]})
    provider = fields.String(required=True, allow_none=True)
    model = fields.String(required=True, allow_none=True)
    usage = fields.Dict(required=True, allow_none=True)
    cost_usd = fields.Float(required=True, allow_none=True)
    reasoning = fields.String(required=True)
    error = fields.String(required=True, allow_none=True)
    chat_id = fields.String(required=True)
    answer_id = fields.Integer(required=True)


RESUMED_EVENTS = (NativeDeltaSchema, ResumedDoneSchema, NativeErrorSchema)
STORED_CHAT_EVENTS = (StoredStartSchema, ReasoningEventSchema, StoredDoneSchema, StoppedEventSchema)
STORED_STREAM = (" A stored chat's `start` and `done` carry `chat_id`, `message_id` and `answer_id`; `reasoning` "
                 "events carry the model's reasoning; `stopped` ends an answer stopped by POST .../stop.")
