"""Marshmallow schemas of the persisted-conversation endpoints (`POST /chat` with `message`, history).

The chat id rule is written once here (`CHAT_ID_RULE`) so every 400 about an id names it the same way.
"""
from __future__ import annotations

import re

from marshmallow import RAISE, ValidationError, fields, validate

from app.core.schemas import BaseSchema
from app.llm.schemas import MAX_TEXT_CHARS, max_tokens_field

CHAT_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
CHAT_ID_RULE = "a chat_id is 1 to 64 characters, each one of A-Z, a-z, 0-9, '-' or '_'"
CHAT_ID_ERROR = CHAT_ID_RULE[0].upper() + CHAT_ID_RULE[1:] + "."
MAX_HISTORY_PAGE = 500


def check_chat_id(value: str) -> str:
    if not isinstance(value, str) or not CHAT_ID_PATTERN.fullmatch(value):
        raise ValidationError(CHAT_ID_ERROR)
    return value


class ConversationChatSchema(BaseSchema):
    """A turn of a persisted chat: `message` is added to the chat `chat_id` (made when absent)."""

    message = fields.String(required=True,
                            validate=[validate.Length(min=1, error="message must not be empty."),
                                      validate.Length(max=MAX_TEXT_CHARS,
                                                      error="message is at most {max} characters.")],
                            error_messages={"required": 'Send "message" (a stored chat) or "messages" (a stateless '
                                                        'chat with the whole conversation).'},
                            metadata={"description": "The user's message."})
    chat_id = fields.String(load_default=None, allow_none=True, validate=check_chat_id,
                            error_messages={"invalid": CHAT_ID_ERROR},
                            metadata={"description": "Chat to continue or create; a UUID is made when absent. "
                                                     + CHAT_ID_RULE + "."})
    provider = fields.String(load_default=None, allow_none=True,
                             metadata={"description": "Provider name or alias; default DEFAULT_PROVIDER."})
    stream = fields.Boolean(load_default=False, allow_none=True,
                            metadata={"description": "Stream SSE events; the last one carries chat_id."})
    max_tokens = max_tokens_field(allow_none=True)
    temperature = fields.Float(load_default=None, allow_none=True, validate=validate.Range(min=0, max=2))


class HistoryQuerySchema(BaseSchema):
    """A page of the chat list, newest first; pass `next_cursor` back as `cursor` for the next page."""

    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=MAX_HISTORY_PAGE))
    cursor = fields.String(load_default=None, validate=validate.Length(min=1, max=200))


# -- what the conversation endpoints answer (for the OpenAPI document; views build the dicts) ----------


class StoredChatAnswerSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    response = fields.String(required=True)
    chat_id = fields.String(required=True)
    provider = fields.String(required=True)
    model = fields.String(required=True)
    success = fields.Boolean(required=True)


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
    success = fields.Boolean(required=True)


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


class ChatDetailSchema(ChatSummarySchema):
    messages = fields.List(fields.Nested(StoredMessageSchema), required=True,
                           metadata={"description": "Oldest first, the system message first."})


class ChatHistorySchema(BaseSchema):
    class Meta:
        unknown = RAISE

    chat_id = fields.String(required=True)
    history = fields.Nested(ChatDetailSchema, required=True)
    success = fields.Boolean(required=True)


class ChatDeletedSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    message = fields.String(required=True)
    success = fields.Boolean(required=True)
