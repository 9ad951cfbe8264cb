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
from app.llm.schemas import MODEL_NAME_DOC, MessageContent, check_model_name, max_tokens_field

CHAT_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
STORAGE_KEY_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}|~[0-9a-f]{63}")  # a chat's row id (models.storage_key)
CHAT_ID_RULE = "a chat_id is 1 to 64 characters, each one of A-Z, a-z, 0-9, '-' or '_'"
CHAT_ID_ERROR = CHAT_ID_RULE[0].upper() + CHAT_ID_RULE[1:] + "."
MAX_HISTORY_PAGE = 500
MAX_SEARCH_PAGE = 100
MAX_TITLE_CHARS = 120
MESSAGE_REQUIRED = 'Send "message" (a stored chat) or "messages" (a stateless chat with the whole conversation).'


def check_chat_id(value: str) -> str:
    if not isinstance(value, str) or not CHAT_ID_PATTERN.fullmatch(value):
        raise ValidationError(CHAT_ID_ERROR)
    return value


def check_not_empty(value: Any) -> None:
    if value == "":
        raise ValidationError("message must not be empty.")


class ConversationChatSchema(BaseSchema):
    """A turn of a persisted chat: `message` is added to the chat `chat_id` (made when absent).

    `replace` redoes the end of an existing chat: "answer" answers its last question again (the last
    answer is dropped; send no `message`), "message" replaces its last question (and the answer after
    it) by `message`."""

    DOCUMENT_RULES = {"not": {"required": ["messages"]},  # a body with `messages` is the stateless chat
                      "description": "Send provider or model, not both; replace needs a chat_id, and a message "
                                     "unless it is \"answer\" (then none)."}

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

    @validates_schema
    def consistent(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("provider") and data.get("model"):
            raise ValidationError('Send "provider" or "model", not both.', "model")
        if data.get("replace") and not data.get("chat_id"):
            raise ValidationError('"replace" needs the chat_id of an existing chat.', "chat_id")
        if data.get("replace") == "answer" and data.get("message") is not None:
            raise ValidationError('With "replace": "answer" send no message: the last question is answered again.',
                                  "message")
        if data.get("replace") != "answer" and data.get("message") is None:
            raise ValidationError(MESSAGE_REQUIRED, "message")


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


class RenameChatSchema(BaseSchema):
    title = fields.String(required=True, validate=[validate.Length(min=1, max=MAX_TITLE_CHARS), check_not_blank],
                          metadata={"description": "The chat's new title."})


# -- what the conversation endpoints answer (for the OpenAPI document; views build the dicts) ----------


class StoredChatAnswerSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    response = fields.String(required=True)
    chat_id = fields.String(required=True)
    provider = fields.String(required=True)
    model = fields.String(required=True)
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


class StoredMessageSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    role = fields.String(required=True, metadata={"enum": ["system", "user", "assistant"]})
    content = fields.String(required=True)
    timestamp = fields.String(required=True, metadata={"format": "date-time"})
    status = fields.String(required=True, metadata={"description": "`complete`, or `partial`/`error` for an "
                                                                   "answer cut short."})
    provider = fields.String(allow_none=True, metadata={"description": "Assistant messages only."})
    model = fields.String(allow_none=True, metadata={"description": "Assistant messages only."})
    error = fields.String(metadata={"description": "Why an answer was cut short."})
    images = fields.List(fields.String(), metadata={"description": "The message's images, as data: URLs."})


class ChatDetailSchema(ChatSummarySchema):
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
    success = StrictBoolean(required=True)
