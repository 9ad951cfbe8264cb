"""Persisted conversations: store each turn, ask the gateway, store the answer, whatever happens.

A turn has three steps; the first and the last are short transactions:

1. `begin_turn` locks the chat row (`SELECT ... FOR UPDATE` on PostgreSQL, `BEGIN IMMEDIATE` on
   SQLite), refuses with 409 if another turn holds the chat, marks it busy (`busy_token`, with a lease
   `busy_until`, and `busy_holder`, this process), stores the user's message and the answer's row,
   empty and marked as lost (`error`, `LOST_ANSWER`), and returns the history to send. It runs before
   any provider call and before a streamed response starts, so the message is durable first.
2. The gateway answers (`reply`) or streams (`stream_reply`); no transaction is open meanwhile. A
   streamed answer's text is written into its row in steps (`AnswerSteps`, every `save_every_s` or
   `save_every_chars`, from a greenlet of its own, not per chunk), so a process killed mid-answer
   leaves what its client saw but the last step, still marked as lost.
3. `finish_turn` stores the assistant message, complete, or partial/error with the text so far, and
   clears the busy mark. `stream_reply` calls it from a `finally`, so it also runs when the client
   goes away (the server closes the event generator) or the provider breaks mid-answer.

The busy mark is a lease (`app.core.leases`), renewed while the answer is produced: if a process dies
mid-turn, the chat is usable again once the lease runs out, or at once for a claimer on the same
machine, which sees that the holder is gone (`holder_gone`). Nothing here reads Flask's request or
app: the view passes the gateway, the routes, the settings and the system prompt.
"""
from __future__ import annotations

import json
import logging
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterator, Union

from peewee import fn

from app.conversations.models import Conversation, Message, storage_key
from app.conversations.schemas import CHAT_ID_PATTERN, CHAT_ID_RULE, STORAGE_KEY_PATTERN
from app.core.caller import EVERYONE, owned_by
from app.core.clock import isoformat, utcnow
from app.core.db import database, locked_row, until_stored, write_transaction
from app.core.errors import APIError, BadRequest, Conflict, NotFound
from app.core.leases import Lease, holder_gone, this_process
from app.core.paging import Keyset, matching, moment
from app.llm.gateway import Answer, Gateway, Started, StreamFailed
from app.llm.providers.base import CompletionRequest, StreamEnd, Usage
from app.llm.registry import Route

log = logging.getLogger("aiserver.chat")

TITLE_CHARS = 80
SNIPPET_CHARS = 160
LOST_ANSWER = "No answer: the server answering this message stopped before it finished."
IMAGE_TOKENS = 800  # roughly what one image of a chat costs at OpenAI, Anthropic and Gemini alike
Content = Union[str, list[dict[str, Any]]]
CHATS_NEWEST_FIRST = Keyset(Conversation.last_updated, Conversation.id,
                            readers=(moment, matching(STORAGE_KEY_PATTERN)))
CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4


@dataclass(frozen=True)
class ChatSettings:
    context_messages: int = 40
    context_tokens: int = 0
    lease_s: float = 20.0
    save_every_s: float = 1.0
    save_every_chars: int = 1000

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "ChatSettings":
        return cls(context_messages=config["CHAT_CONTEXT_MESSAGES"], context_tokens=config["CHAT_CONTEXT_TOKENS"],
                   lease_s=config["CHAT_LEASE_S"], save_every_s=config["CHAT_SAVE_EVERY_S"],
                   save_every_chars=config["CHAT_SAVE_EVERY_CHARS"])


@dataclass
class Turn:
    """A turn in progress: the chat (its id and storage key), its busy token, the row its answer goes
    to, and the messages to send to the provider."""

    chat_id: str
    key: str
    token: str
    answer_id: int
    context: list[dict[str, Any]]
    settings: ChatSettings
    lease: Lease = field(repr=False)


class ChatBusy(Conflict):
    code = "chat_busy"


class ChatNotFound(NotFound):
    code = "chat_not_found"


def new_chat_id() -> str:
    return str(uuid.uuid4())


def require_chat_id(chat_id: str) -> str:
    """`chat_id` if it follows the rule; a 400 naming the rule otherwise."""
    if not CHAT_ID_PATTERN.fullmatch(chat_id or ""):
        raise BadRequest(f"Invalid chat_id: {CHAT_ID_RULE}.", code="invalid_chat_id", details={"param": "chat_id"})
    return chat_id


# -- turns -----------------------------------------------------------------------------------------


def begin_turn(chat_id: str, content: Content | None, system_prompt: str, settings: ChatSettings,
               owner: Any = None, *, replace: str | None = None) -> Turn:
    """Store the user's message `content` (text or content parts) in chat `chat_id` (created, with
    `system_prompt` as its first message, if new) and mark the chat busy. Raises ChatBusy (409) while
    another turn holds the chat. With `replace` the end of an existing chat is redone first (see
    `rewind`); with "answer", `content` is None and the last question is answered again."""
    token, key = uuid.uuid4().hex, storage_key(owner, chat_id)
    with database.connection_context(), write_transaction():
        conversation = locked_row(Conversation, key)
        now = utcnow()
        created = False
        if conversation is None and replace:
            raise ChatNotFound(f"Chat {chat_id} not found.", details={"chat_id": chat_id})
        if conversation is None:
            Conversation.insert(id=key, chat_id=chat_id, owner=owner, title=_title(text_of(content)), created_at=now,
                                last_updated=now).on_conflict_ignore().execute()
            conversation = locked_row(Conversation, key)
            if conversation is None:  # deleted between the insert and the read (PostgreSQL only)
                raise ChatBusy(f"Chat {chat_id} changed meanwhile; send the message again.",
                               details={"chat_id": chat_id})
            created = conversation.message_count == 0
        if conversation.owner != owner:
            raise ChatNotFound(f"Chat {chat_id} not found.", details={"chat_id": chat_id})
        if held(conversation, now):
            raise ChatBusy(f"Chat {chat_id} is still answering a previous message; send this one when it ends.",
                           details={"chat_id": chat_id})
        removed = rewind(key, chat_id, replace) if replace else 0
        lost = record_lost_answer(key, now) if conversation.busy_token and not replace else 0
        rows = []
        if created and system_prompt:
            rows.append({"conversation": key, "role": "system", "content": system_prompt, "created_at": now,
                         "parts": None})  # insert_many takes its columns from the first row
        if content is not None:
            rows.append(user_row(key, content, now))
        if rows:
            Message.insert_many(rows).execute()
        answer_id = Message.insert(conversation=key, role="assistant", content="", status="error", error=LOST_ANSWER,
                                   created_at=now).execute()
        lease = Lease(Conversation, key, Conversation.busy_token, Conversation.busy_until, token, settings.lease_s)
        (Conversation.update(message_count=Conversation.message_count + lost + len(rows) + 1 - removed,
                             last_updated=now, busy_token=token, busy_until=lease.expiry(), busy_holder=this_process())
         .where(Conversation.id == key).execute())
        context = _context(key, settings)
    return Turn(chat_id, key, token, answer_id, context, settings, lease.start())


def held(conversation: Conversation, now: Any) -> bool:
    """Whether another turn holds the chat: its lease runs and its process is not known to be gone."""
    return bool(conversation.busy_token and conversation.busy_until and conversation.busy_until > now
                and not holder_gone(conversation.busy_holder))


def record_lost_answer(key: str, now: Any) -> int:
    """Store the record of an answer that never came, for a chat whose previous turn held it until its
    lease ran out, if that turn's question is still the last message (a turn begun by a version that
    did not store its answer's row first): an empty `error` answer, so the history keeps questions and
    answers in turns and says what happened (empty answers are not sent upstream: `_context`).
    Returns how many rows it stored."""
    last = (Message.select(Message.role).where((Message.conversation == key) & (Message.role != "system"))
            .order_by(Message.id.desc()).first())
    if last is None or last.role != "user":
        return 0
    Message.create(conversation=key, role="assistant", content="", status="error", error=LOST_ANSWER,
                   created_at=now)
    return 1


def rewind(key: str, chat_id: str, replace: str) -> int:
    """Delete what `replace` redoes, returning how many messages went: "answer" deletes everything
    after the last question, "message" the last question too. 400 if the chat has no question."""
    last_question = (Message.select(Message.id).where((Message.conversation == key) & (Message.role == "user"))
                     .order_by(Message.id.desc()).first())
    if last_question is None:
        raise BadRequest(f"Chat {chat_id} has no question to redo.", code="nothing_to_replace",
                         details={"param": "replace", "chat_id": chat_id})
    first_gone = last_question.id + (1 if replace == "answer" else 0)
    return Message.delete().where((Message.conversation == key) & (Message.id >= first_gone)).execute()


def user_row(key: str, content: Content, now: Any) -> dict[str, Any]:
    """The row of a user message: its text in `content`, and all its parts in `parts` when it has images."""
    has_images = isinstance(content, list) and any(part["type"] == "image" for part in content)
    return {"conversation": key, "role": "user", "content": text_of(content), "created_at": now,
            "parts": json.dumps(content) if has_images else None}


def text_of(content: Content | None) -> str:
    """The text of a message: the string, or its text parts joined by blank lines."""
    if content is None or isinstance(content, str):
        return content or ""
    return "\n\n".join(part["text"] for part in content if part["type"] == "text")


def finish_turn(turn: Turn, text: str, status: str, *, error: str | None = None, provider: str | None = None,
                model: str | None = None, usage: Usage | None = None) -> Message | None:
    """Store the assistant's message and free the chat. None, storing nothing, if the turn no longer holds
    the chat (deleted meanwhile, or its lease ran out and another turn took it): a late answer must
    never land after someone else's question. A locked or restarting database is waited out (`until_stored`); if the
    answer still cannot be stored, the chat is freed anyway and the error raised."""
    turn.lease.stop()
    try:
        return until_stored(lambda: _store_answer(turn, text, status, error=error, provider=provider, model=model,
                                                  usage=usage), f"the answer of chat {turn.chat_id}")
    except BaseException:
        _free_chat(turn)
        raise


def _store_answer(turn: Turn, text: str, status: str, *, error: str | None, provider: str | None,
                  model: str | None, usage: Usage | None) -> Message | None:
    with database.connection_context(), write_transaction():
        row = locked_row(Conversation, turn.key)
        if row is None or row.busy_token != turn.token:
            log.warning("answer for chat %s dropped: the turn no longer holds the chat", turn.chat_id)
            return None
        now = utcnow()
        (Message.update(content=text, status=status, error=error, provider=provider, model=model, created_at=now,
                        prompt_tokens=usage.prompt_tokens if usage else None,
                        completion_tokens=usage.completion_tokens if usage else None)
         .where(Message.id == turn.answer_id).execute())
        (Conversation.update(last_updated=now, busy_token=None, busy_until=None, busy_holder=None)
         .where((Conversation.id == turn.key) & (Conversation.busy_token == turn.token)).execute())
        return Message.get_by_id(turn.answer_id)


def _free_chat(turn: Turn) -> None:
    """Clear the turn's busy mark after its answer could not be stored; if even that fails, the lease
    (no longer renewed) runs out by itself."""
    try:
        turn.lease.release()
    except Exception:
        log.exception("could not free chat %s; it is busy until its lease runs out", turn.chat_id)


def reply(gateway: Gateway, routes: list[Route], turn: Turn, **params: Any) -> Answer:
    """One complete answer, stored; if every route fails, the error is stored and raised with chat_id."""
    request = CompletionRequest(turn.context, **params)
    try:
        answer = gateway.complete(request, routes)
    except APIError as error:
        finish_turn(turn, "", "error", error=error.message)
        error.details.setdefault("chat_id", turn.chat_id)
        raise
    except BaseException:
        finish_turn(turn, "", "error", error="internal error")
        raise
    finish_turn(turn, answer.text, "complete", provider=answer.provider, model=answer.model, usage=answer.usage)
    return answer


def stream_reply(gateway: Gateway, routes: list[Route], turn: Turn, **params: Any) -> Iterator[Any]:
    """The gateway's stream events, unchanged; when the stream ends for any reason (done, provider
    failure, or the consumer closing this generator because the client left), the text so far is
    stored: complete, error or partial."""
    request = CompletionRequest(turn.context, **params)
    steps = AnswerSteps(turn.answer_id, turn.settings.save_every_s, turn.settings.save_every_chars).start()
    outcome: dict[str, Any] = {"status": "partial"}
    try:
        for event in gateway.stream(request, routes):
            if isinstance(event, str):
                steps.add(event)
            elif isinstance(event, Started):
                outcome.update(provider=event.provider, model=event.model)
            elif isinstance(event, StreamEnd):
                outcome.update(status="complete", model=event.model, usage=event.usage)
            elif isinstance(event, StreamFailed):
                outcome.update(status="error", error=event.message)
            yield event
    except APIError as error:
        outcome.update(status="error", error=error.message)
        error.details.setdefault("chat_id", turn.chat_id)
        raise
    except Exception:
        outcome.update(status="error", error="internal error")
        raise
    finally:
        steps.stop()
        try:
            finish_turn(turn, steps.text(), **outcome)
        except Exception:
            log.exception("could not store the answer of chat %s", turn.chat_id)


class AnswerSteps:
    """A streamed answer's text, written into its row (still marked as lost) in steps while it streams:
    at most every `every_s` seconds, sooner once `every_chars` more characters came, by a greenlet of
    its own (a thread outside gevent), so the stream's chunks only append and count. A process killed
    mid-answer then loses at most the last step. A step never overwrites an answer stored whole."""

    def __init__(self, answer_id: int, every_s: float, every_chars: int):
        self.answer_id, self.every_s, self.every_chars = answer_id, every_s, every_chars
        self.pieces: list[str] = []
        self.size, self.due, self.saved = 0, every_chars, 0  # saved: how many pieces the row has
        self._wake = threading.Event()
        self._stopped = False
        self._writer = threading.Thread(target=self._write_until_stopped, name=f"steps-{answer_id}", daemon=True)

    def start(self) -> AnswerSteps:
        if self.every_s > 0:
            self._writer.start()
        return self

    def add(self, text: str) -> None:
        """The per-chunk work: keep the text, and wake the writer once enough has come."""
        self.pieces.append(text)
        self.size += len(text)
        if self.size >= self.due:
            self.due = self.size + self.every_chars
            self._wake.set()

    def text(self) -> str:
        return "".join(self.pieces)

    def stop(self) -> None:
        """No more steps (the answer is about to be stored whole). A step still being written (waiting
        out a locked database, say) is not waited for: its UPDATE only matches a row still marked lost,
        so it can never overwrite the answer stored whole, whichever lands first."""
        self._stopped = True
        self._wake.set()

    def _write_until_stopped(self) -> None:
        while not self._stopped:
            self._wake.wait(self.every_s)  # a second gone, or `every_chars` more came
            self._wake.clear()
            if not self._stopped:
                self._write()

    def _write(self) -> None:
        count = len(self.pieces)  # pieces are only appended, so this prefix is stable even across threads
        if count == self.saved:
            return
        text = "".join(self.pieces[:count])
        try:
            with database.connection_context():
                (Message.update(content=text)
                 .where((Message.id == self.answer_id) & (Message.status == "error") & (Message.error == LOST_ANSWER))
                 .execute())
        except Exception:  # a busy database only makes this step late; the answer is stored whole at the end
            log.warning("could not store a step of answer %s", self.answer_id, exc_info=True)
            return
        self.saved = count


# -- context ---------------------------------------------------------------------------------------


def _context(key: str, settings: ChatSettings) -> list[dict[str, Any]]:
    """What the provider gets: the system message, then the newest messages that fit both budgets
    (at most `context_messages`, at most `context_tokens` approximate tokens), oldest first. The
    newest message (this turn's) is always sent; empty answers (failed turns) are skipped."""
    system = (Message.select(Message.content).where((Message.conversation == key) & (Message.role == "system"))
              .order_by(Message.id).limit(1).first())
    recent = (Message.select(Message.role, Message.content, Message.parts)
              .where((Message.conversation == key) & (Message.role != "system")
                     & ((Message.content != "") | Message.parts.is_null(False)))
              .order_by(Message.id.desc()).limit(max(1, settings.context_messages)))
    budget = settings.context_tokens - (approx_tokens(system.content) if system else 0)
    kept: list[dict[str, Any]] = []
    for message in recent:
        parts = json.loads(message.parts) if message.parts else None
        budget -= approx_tokens(message.content) + IMAGE_TOKENS * sum(p["type"] == "image" for p in parts or ())
        if kept and settings.context_tokens and budget < 0:
            break
        kept.append({"role": message.role, "content": parts or message.content})
    kept.reverse()
    return ([{"role": "system", "content": system.content}] if system else []) + kept


def approx_tokens(text: str) -> int:
    return len(text) // CHARS_PER_TOKEN + TOKENS_PER_MESSAGE


def _title(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= TITLE_CHARS else line[:TITLE_CHARS - 1].rstrip() + "\u2026"


# -- reading and deleting ----------------------------------------------------------------------------


def list_chats(limit: int = 50, cursor: str | None = None, owner: Any = None
               ) -> tuple[dict[str, dict[str, Any]], str | None]:
    """One page of chats, newest first, and the cursor of the next page (None on the last).

    Keyset pagination on the (last_updated, id) index: each page costs the same however deep."""
    with database.connection_context():
        return _summaries(_summary_query(owner), limit, cursor)


def search_chats(text: str, limit: int = 20, cursor: str | None = None, owner: Any = None
                 ) -> tuple[dict[str, dict[str, Any]], str | None]:
    """A page of the chats whose title or a message (not the system prompt) contains `text`, newest
    first as `list_chats`, each with `match`: the first matching message's text around the match
    (None when only the title matches). Case-insensitive (on SQLite for ASCII letters only: its LIKE)."""
    in_messages = (Message.select(Message.id)
                   .where((Message.conversation == Conversation.id) & (Message.role != "system")
                          & Message.content.contains(text)))
    query = _summary_query(owner).where(Conversation.title.contains(text) | fn.EXISTS(in_messages))
    with database.connection_context():
        return _summaries(query, limit, cursor, match=text)


def _summary_query(owner: Any) -> Any:
    return (Conversation.select(Conversation.id, Conversation.title, Conversation.created_at,
                                Conversation.last_updated, Conversation.message_count, Conversation.chat_id)
            .where(_owned(owner)))


def _summaries(query: Any, limit: int, cursor: str | None, match: str | None = None
               ) -> tuple[dict[str, dict[str, Any]], str | None]:
    """One keyset page of `query` (newest first) as {chat id: summary}, and the next page's cursor;
    with `match`, each summary has the first message containing it (`_first_match`)."""
    rows: list[Any] = list(CHATS_NEWEST_FIRST.page(query, limit, cursor).tuples())
    page, next_cursor = Keyset.split(rows, limit, key=lambda row: (row[3], row[0]))
    chats = {row[5]: {"created_at": isoformat(row[2]), "last_updated": isoformat(row[3]),
                      "message_count": row[4], "title": row[1]} for row in page}
    if match is not None:
        for row in page:
            chats[row[5]]["match"] = _first_match(row[0], match)
    return chats, next_cursor


def _first_match(key: str, text: str) -> str | None:
    """About SNIPPET_CHARS of the first message of the chat that contains `text`, around it."""
    row = (Message.select(Message.content)
           .where((Message.conversation == key) & (Message.role != "system") & Message.content.contains(text))
           .order_by(Message.id).first())
    if row is None:
        return None
    at = max(0, row.content.lower().find(text.lower()))
    start = max(0, at - SNIPPET_CHARS // 3)
    snippet = " ".join(row.content[start:start + SNIPPET_CHARS].split())
    return ("\u2026" if start else "") + snippet + ("\u2026" if start + SNIPPET_CHARS < len(row.content) else "")


def rename_chat(chat_id: str, title: str, owner: Any = None) -> str:
    """Give the chat a new title (whitespace runs made one space); the title. 404 if unknown."""
    title = " ".join(title.split())
    with database.connection_context(), write_transaction():
        Conversation.update(title=title).where(Conversation.id == _find(chat_id, owner).id).execute()
    return title


def get_chat(chat_id: str, owner: Any = None) -> dict[str, Any]:
    """The chat's dates and every message, oldest first (the system message first); 404 if unknown."""
    with database.connection_context():
        conversation = _find(chat_id, owner)
        messages = list(Message.select().where(Message.conversation == conversation.id).order_by(Message.id))
    return {"created_at": isoformat(conversation.created_at), "last_updated": isoformat(conversation.last_updated),
            "message_count": conversation.message_count, "title": conversation.title,
            "messages": [message_dict(m) for m in messages]}


def message_dict(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content,
                           "timestamp": isoformat(message.created_at), "status": message.status}
    if message.role == "assistant":
        out.update(provider=message.provider, model=message.model)
    if message.parts:
        out["images"] = [f"data:{part['media_type']};base64,{part['data']}"
                         for part in json.loads(message.parts) if part["type"] == "image"]
    if message.error:
        out["error"] = message.error
    return out


def delete_chat(chat_id: str, owner: Any = None) -> None:
    """Delete the chat and its messages; 404 if unknown. A turn still streaming into it stores nothing."""
    with database.connection_context(), write_transaction():
        key = _find(chat_id, owner).id
        Message.delete().where(Message.conversation == key).execute()
        Conversation.delete().where(Conversation.id == key).execute()


def _find(chat_id: str, reader: Any) -> Conversation:
    """The chat `chat_id` of `reader`'s namespace (a key id, or None for unowned chats); for EVERYONE
    (an admin key, an open server) the unowned chat of that id, else the most recently updated one.
    ChatNotFound (404) if there is none."""
    if reader is EVERYONE:
        found = (Conversation.select().where(Conversation.chat_id == chat_id)
                 .order_by(Conversation.owner.is_null(False), Conversation.last_updated.desc()).first())
    else:
        found = Conversation.get_or_none(Conversation.id == storage_key(reader, chat_id))
    if found is None:
        raise ChatNotFound(f"Chat {chat_id} not found.", details={"chat_id": chat_id})
    return found


def _owned(owner: Any):
    """Chats `owner` may read: a key id, None (unowned chats) or EVERYONE (see `app.core.caller`)."""
    return owned_by(Conversation.owner, owner)
