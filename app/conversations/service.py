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

import contextvars
import json
import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Union

from peewee import fn

from app.conversations.models import Conversation, Message, storage_key
from app.conversations.schemas import CHAT_ID_PATTERN, CHAT_ID_RULE, STORAGE_KEY_PATTERN
from app.core.caller import EVERYONE, owned_by
from app.core.clock import isoformat, utcnow
from app.core.db import database, locked_row, until_stored, write_transaction
from app.core.errors import APIError, BadRequest, Conflict, NotFound
from app.core.http import outlive_client
from app.core.leases import Lease, holder_gone, this_process
from app.core.paging import Keyset, matching, moment
from app.llm.gateway import Answer, Gateway, Started, StreamFailed
from app.llm.providers.base import CompletionRequest, ReasoningDelta, StreamEnd, Usage
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
Pricing = Callable[[str, Usage], Union[float, None]]  # (model, usage) -> USD, None if unpriced (the factory's)


@dataclass(frozen=True)
class ChatSettings:
    context_messages: int = 40
    context_tokens: int = 0
    lease_s: float = 20.0
    save_every_s: float = 1.0
    save_every_chars: int = 1000
    turn_deadline_s: float = 600.0
    resume_poll_s: float = 0.5

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "ChatSettings":
        return cls(context_messages=config["CHAT_CONTEXT_MESSAGES"], context_tokens=config["CHAT_CONTEXT_TOKENS"],
                   lease_s=config["CHAT_LEASE_S"], save_every_s=config["CHAT_SAVE_EVERY_S"],
                   save_every_chars=config["CHAT_SAVE_EVERY_CHARS"], turn_deadline_s=config["CHAT_TURN_DEADLINE_S"],
                   resume_poll_s=config["CHAT_RESUME_POLL_S"])


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
    question_id: int | None = None  # the user message this turn stored (None for a regenerate)
    temperature: float | None = None  # the chat's own


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


@dataclass(frozen=True)
class Ask:
    """What a turn is asked to do. `content` (text or content parts) and `files` ([{"name", "text"}])
    are the new question (None with `regenerate`); `after` is the last message the client shows (409
    if the chat's branch ends elsewhere); `regenerate` an answer to answer again, `edit` a question to
    replace by `content`, each as a new version; `replace` the old form of both ("answer", "message")
    acting on the last question. `system` and `temperature` are a new chat's own."""

    content: Content | None = None
    files: tuple[dict[str, Any], ...] = ()
    after: int | None = None
    regenerate: int | None = None
    edit: int | None = None
    replace: str | None = None
    system: str | None = None
    temperature: float | None = None

    @property
    def redoes(self) -> bool:
        return bool(self.replace or self.regenerate or self.edit)


class ChatChanged(Conflict):
    code = "chat_changed"


class MessageNotActive(Conflict):
    code = "message_not_active"


class MessageNotFound(NotFound):
    code = "message_not_found"


def begin_turn(chat_id: str, content: Content | None, system_prompt: str, settings: ChatSettings,
               owner: Any = None, *, replace: str | None = None, ask: Ask | None = None) -> Turn:
    """Store the user's message (`ask.content`, text or content parts) in chat `chat_id` (created, with
    its system prompt as its first message, if new) and mark the chat busy. Raises ChatBusy (409) while
    another turn holds the chat, ChatChanged (409) when `ask.after` is not the end of its branch. A
    regenerate or an edit (`ask`, or the old `replace`) adds a version beside the message it redoes
    (`redo_point`); the versions it hides stay stored."""
    ask = ask or Ask(content=content, replace=replace)
    token, key = uuid.uuid4().hex, storage_key(owner, chat_id)
    with database.connection_context(), write_transaction():
        conversation = locked_row(Conversation, key)
        now = utcnow()
        created = False
        if conversation is None and (ask.redoes or ask.after is not None):
            raise ChatNotFound(f"Chat {chat_id} not found.", details={"chat_id": chat_id})
        if conversation is None:
            Conversation.insert(id=key, chat_id=chat_id, owner=owner, title=_title(text_of(ask.content)),
                                created_at=now, last_updated=now, temperature=ask.temperature,
                                ).on_conflict_ignore().execute()
            conversation = locked_row(Conversation, key)
            if conversation is None:  # deleted between the insert and the read (PostgreSQL only)
                raise ChatBusy(f"Chat {chat_id} changed meanwhile; send the message again.",
                               details={"chat_id": chat_id})
            created = conversation.message_count == 0
        if conversation.owner != owner:
            raise ChatNotFound(f"Chat {chat_id} not found.", details={"chat_id": chat_id})
        if not created and ask.system is not None:
            raise Conflict(f"Chat {chat_id} exists: change its system prompt with PATCH /chat/history/{chat_id}.",
                           code="system_on_existing_chat", details={"param": "system", "chat_id": chat_id})
        if held(conversation, now):
            raise ChatBusy(f"Chat {chat_id} is still answering a previous message; send this one when it ends.",
                           details={"chat_id": chat_id})
        if conversation.busy_token and not ask.redoes:
            record_lost_answer(key, now)
        leaf = last_message_id(key)
        if ask.after is not None and ask.after != leaf:
            raise ChatChanged(f"Chat {chat_id} changed since message {ask.after}: its last message is now "
                              f"{leaf}. Reload it and try again.",
                              details={"chat_id": chat_id, "after": ask.after, "last_message_id": leaf})
        parent = redo_point(key, chat_id, ask) if ask.redoes else leaf
        system = ask.system if ask.system is not None else system_prompt
        if created and system:
            parent = Message.insert(conversation=key, role="system", content=system, created_at=now).execute()
        question_id = None
        if ask.content is not None:
            question_id = Message.insert(**user_row(key, ask.content, now), parent_id=parent,
                                         files=json.dumps(list(ask.files)) if ask.files else None).execute()
            parent = question_id
        answer_id = Message.insert(conversation=key, role="assistant", content="", status="error", error=LOST_ANSWER,
                                   created_at=now, parent_id=parent).execute()
        lease = Lease(Conversation, key, Conversation.busy_token, Conversation.busy_until, token, settings.lease_s)
        (Conversation.update(message_count=active_messages(key).count(), last_updated=now, busy_token=token,
                             busy_until=lease.expiry(), busy_holder=this_process(), busy_answer=answer_id,
                             stop_answer=None)
         .where(Conversation.id == key).execute())
        context = _context(key, settings)
        temperature = conversation.temperature if not created else ask.temperature
    return Turn(chat_id, key, token, answer_id, context, settings, lease.start(), question_id, temperature)


def active_messages(key: str) -> Any:
    return Message.select().where((Message.conversation == key) & Message.active)


def last_message_id(key: str) -> int | None:
    """The id of the last message of the chat's shown branch: its newest but the system message (which
    is the first whatever its id: one added later by PATCH has a larger one), else the system message;
    None for a chat with no message."""
    newest = (Message.select(fn.MAX(Message.id))
              .where((Message.conversation == key) & Message.active & (Message.role != "system")).scalar())
    if newest is not None:
        return newest
    return Message.select(Message.id).where((Message.conversation == key) & (Message.role == "system")).scalar()


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
    last = (Message.select(Message.id, Message.role)
            .where((Message.conversation == key) & (Message.role != "system") & Message.active)
            .order_by(Message.id.desc()).first())
    if last is None or last.role != "user":
        return 0
    Message.create(conversation=key, role="assistant", content="", status="error", error=LOST_ANSWER,
                   created_at=now, parent_id=last.id)
    return 1


def redo_point(key: str, chat_id: str, ask: Ask) -> int | None:
    """Hide the message a regenerate or edit redoes and everything after it on the shown branch (they
    stay stored, as the other versions), and return the parent the new version goes under. The old
    `replace` acts on the last question: "answer" regenerates what follows it, "message" edits it."""
    if ask.replace:
        question = (Message.select().where((Message.conversation == key) & (Message.role == "user") & Message.active)
                    .order_by(Message.id.desc()).first())
        if question is None:
            raise BadRequest(f"Chat {chat_id} has no question to redo.", code="nothing_to_replace",
                             details={"param": "replace", "chat_id": chat_id})
        first_hidden, parent = ((question.id + 1, question.id) if ask.replace == "answer"
                                else (question.id, question.parent_id))
    else:
        message_id = ask.regenerate or ask.edit
        role, param = ("assistant", "regenerate") if ask.regenerate else ("user", "edit")
        target = Message.get_or_none((Message.id == message_id) & (Message.conversation == key))
        details = {"chat_id": chat_id, "message_id": message_id, "param": param}
        if target is None:
            raise MessageNotFound(f"Chat {chat_id} has no message {message_id}.", details=details)
        if target.role != role:
            raise BadRequest(f"Message {message_id} is {'a question' if target.role == 'user' else 'not a question'}"
                             f": {param} takes the id of {'an answer' if role == 'assistant' else 'a question'}.",
                             code="wrong_role", details={**details, "role": target.role})
        if not target.active:
            raise MessageNotActive(f"Message {message_id} is not on the chat's shown branch (another version "
                                   "is shown). Reload the chat and try again.", details=details)
        first_hidden, parent = target.id, target.parent_id
    (Message.update(active=False)
     .where((Message.conversation == key) & Message.active & (Message.id >= first_hidden)).execute())
    return parent


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
                model: str | None = None, usage: Usage | None = None, reasoning: str = "",
                cost_usd: float | None = None) -> Message | None:
    """Store the assistant's message and free the chat. None, storing nothing, if the turn no longer holds
    the chat (deleted meanwhile, or its lease ran out and another turn took it): a late answer must
    never land after someone else's question. A locked or restarting database is waited out (`until_stored`); if the
    answer still cannot be stored, the chat is freed anyway and the error raised."""
    turn.lease.stop()
    answer = {"content": text, "status": status, "error": error, "provider": provider, "model": model,
              "reasoning": reasoning or None, "cost_usd": cost_usd}
    if usage:
        answer.update(prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                      cached_tokens=usage.cached_tokens, cache_write_tokens=usage.cache_write_tokens)
    try:
        return until_stored(lambda: _store_answer(turn, answer), f"the answer of chat {turn.chat_id}")
    except BaseException:
        _free_chat(turn)
        raise


def _store_answer(turn: Turn, answer: dict[str, Any]) -> Message | None:
    with database.connection_context(), write_transaction():
        row = locked_row(Conversation, turn.key)
        if row is None or row.busy_token != turn.token:
            log.warning("answer for chat %s dropped: the turn no longer holds the chat", turn.chat_id)
            return None
        now = utcnow()
        Message.update(**answer, created_at=now).where(Message.id == turn.answer_id).execute()
        (Conversation.update(last_updated=now, busy_token=None, busy_until=None, busy_holder=None, busy_answer=None,
                             stop_answer=None)
         .where((Conversation.id == turn.key) & (Conversation.busy_token == turn.token)).execute())
        return Message.get_by_id(turn.answer_id)


def _free_chat(turn: Turn) -> None:
    """Clear the turn's busy mark after its answer could not be stored; if even that fails, the lease
    (no longer renewed) runs out by itself."""
    try:
        turn.lease.release()
    except Exception:
        log.exception("could not free chat %s; it is busy until its lease runs out", turn.chat_id)


def reply(gateway: Gateway, routes: list[Route], turn: Turn, price: Pricing,
          **params: Any) -> tuple[Answer, float | None]:
    """One complete answer, stored with its cost (`price`d), and that cost; if every route fails, the
    error is stored and raised with chat_id."""
    request = CompletionRequest(turn.context, **params)
    try:
        answer = gateway.complete(request, routes)
    except APIError as error:
        finish_turn(turn, "", "error", error=error.message)
        error.details.setdefault("chat_id", turn.chat_id)
        error.details.setdefault("answer_id", turn.answer_id)
        raise
    except BaseException:
        finish_turn(turn, "", "error", error="internal error")
        raise
    cost = price(answer.model, answer.usage)
    finish_turn(turn, answer.text, "complete", provider=answer.provider, model=answer.model, usage=answer.usage,
                reasoning=answer.reasoning, cost_usd=cost)
    return answer, cost


def stream_reply(gateway: Gateway, routes: list[Route], turn: Turn, price: Pricing,
                 **params: Any) -> Iterator[Any]:
    """The gateway's stream events, unchanged but for the `StreamEnd`, which gets its cost (`price`d);
    when the stream ends for any reason (done, provider failure, a stop asked for (`StopWatch`), or the
    consumer closing this generator because the client left), the text and reasoning so far are
    stored: complete (with its usage and cost), error or partial."""
    request = CompletionRequest(turn.context, **params)
    steps = AnswerSteps(turn.answer_id, turn.settings.save_every_s, turn.settings.save_every_chars).start()
    reasoning: list[str] = []
    stop = StopWatch(turn)
    outcome: dict[str, Any] = {"status": "partial"}
    events = gateway.stream(request, routes)
    try:
        for event in events:
            if isinstance(event, str):
                steps.add(event)
            elif isinstance(event, ReasoningDelta):
                reasoning.append(event.text)
            elif isinstance(event, Started):
                outcome.update(provider=event.provider, model=event.model)
            elif isinstance(event, StreamEnd):
                event = replace(event, cost_usd=price(event.model, event.usage))
                outcome.update(status="complete", model=event.model, usage=event.usage, cost_usd=event.cost_usd)
            elif isinstance(event, StreamFailed):
                outcome.update(status="error", error=event.message)
            yield event
            if stop.asked():
                yield Stopped(turn.answer_id)
                break
    except APIError as error:
        outcome.update(status="error", error=error.message)
        error.details.setdefault("chat_id", turn.chat_id)
        error.details.setdefault("answer_id", turn.answer_id)
        raise
    except Exception:
        outcome.update(status="error", error="internal error")
        raise
    finally:
        getattr(events, "close", lambda: None)()
        steps.stop()
        try:
            finish_turn(turn, steps.text(), reasoning="".join(reasoning), **outcome)
        except Exception:
            log.exception("could not store the answer of chat %s", turn.chat_id)


@dataclass(frozen=True)
class Stopped:
    """The last event of an answer stopped by `POST .../stop` (stored `partial`)."""

    answer_id: int

    def native_event(self) -> dict[str, Any]:
        return {"type": "stopped", "answer_id": self.answer_id}


class StopWatch:
    """Whether someone asked to stop the turn's answer (`stop_answer`, set from any worker), read from
    the database at most every `every_s` seconds, between the stream's events; or its deadline passed."""

    def __init__(self, turn: Turn, every_s: float = 0.5):
        self.turn, self.every_s = turn, every_s
        self.deadline = time.monotonic() + turn.settings.turn_deadline_s
        self.next_check = time.monotonic() + every_s

    def asked(self) -> bool:
        now = time.monotonic()
        if now >= self.deadline:
            return True
        if now < self.next_check:
            return False
        self.next_check = now + self.every_s
        try:
            with database.connection_context():
                wanted = (Conversation.select(Conversation.stop_answer)
                          .where(Conversation.id == self.turn.key).scalar())
        except Exception:  # a busy database only makes the stop late
            log.warning("could not read whether answer %s should stop", self.turn.answer_id, exc_info=True)
            return False
        return wanted == self.turn.answer_id


class Detached:
    """A streamed turn produced by a thread (a greenlet under gevent) of its own, so that it goes on
    when its client goes away (`"resumable": true`): the response only follows it (`follow`). The
    thread runs in a copy of the request's context (its caller and log fields), as `app.llm.pump` does,
    marked as outliving its client (`app.core.http.outlive_client`)."""

    def __init__(self, events: Iterator[Any]):
        self.events: list[Any] = []
        self.ended = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=contextvars.copy_context().run, args=(self._run, events),
                                        name="detached-turn", daemon=True)

    def start(self) -> Detached:
        self._thread.start()
        return self

    def _run(self, events: Iterator[Any]) -> None:
        outlive_client()  # the gateway tries the next route even when the page has gone
        try:
            for event in events:
                self._add(event)
        except BaseException as error:  # handed to the follower, which raises it (as the pump would)
            self._add(error)
        finally:
            with self._changed:
                self.ended = True
                self._changed.notify_all()

    def _add(self, event: Any) -> None:
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def follow(self, wait_s: float) -> Iterator[Any]:
        """The events as they come; a silence of `wait_s` (the turn's deadline) ends the following."""
        seen = 0
        while True:
            with self._changed:
                if seen == len(self.events) and not self.ended:
                    self._changed.wait(wait_s)
                fresh, ended = self.events[seen:], self.ended
            if not fresh and not ended:
                return
            for event in fresh:
                if isinstance(event, BaseException):
                    raise event
                yield event
            seen += len(fresh)
            if ended and seen == len(self.events):
                return


@dataclass(frozen=True)
class StoredAnswer:
    """The last event of a resumed answer: how it was stored."""

    chat_id: str
    message: Message

    def native_event(self) -> dict[str, Any]:
        stored = message_dict(self.message)
        return {"type": "done", "status": stored["status"], "provider": stored.get("provider"),
                "model": stored.get("model"), "usage": stored.get("usage"), "cost_usd": stored.get("cost_usd"),
                "reasoning": stored.get("reasoning", ""),
                "error": stored.get("error"), "chat_id": self.chat_id, "answer_id": self.message.id}


class AnswerLost(APIError):
    status, type, code = 503, "server_error", "answer_lost"


def answer_to_follow(chat_id: str, answer_id: int, owner: Any = None) -> str:
    """The storage key of the chat whose answer `answer_id` is to be followed; 404 if either is unknown."""
    with database.connection_context():
        key = _find(chat_id, owner).id
        if not Message.select().where((Message.id == answer_id) & (Message.conversation == key)
                                      & (Message.role == "assistant")).exists():
            raise MessageNotFound(f"Chat {chat_id} has no answer {answer_id}.",
                                  details={"chat_id": chat_id, "message_id": answer_id})
    return key


def follow_stored(chat_id: str, key: str, answer_id: int, offset: int, settings: ChatSettings) -> Iterator[Any]:
    """An answer's text after `offset` as it is stored (a step every `save_every_s`, by whichever worker
    produces it), polled every `resume_poll_s`, then how it ended (`StoredAnswer`); AnswerLost if the
    process producing it died. Bounded by the turn's deadline and a lease."""
    deadline = time.monotonic() + settings.turn_deadline_s + settings.lease_s
    sent = offset
    while True:
        with database.connection_context():  # the chat first: a turn stores its answer, then frees the chat
            chat = Conversation.get_or_none(Conversation.id == key)
            answering = chat is not None and chat.busy_answer == answer_id and held(chat, utcnow())
            message = Message.get_or_none(Message.id == answer_id)
        if message is None:
            raise ChatNotFound(f"Chat {chat_id} was deleted.", details={"chat_id": chat_id})
        if len(message.content) > sent:
            yield message.content[sent:]
            sent = len(message.content)
        if not answering:
            if message.status == "error" and message.error == LOST_ANSWER:
                raise AnswerLost(LOST_ANSWER, details={"chat_id": chat_id, "answer_id": answer_id})
            yield StoredAnswer(chat_id, message)
            return
        if time.monotonic() > deadline:
            raise AnswerLost("The answer took longer than the server allows.",
                             details={"chat_id": chat_id, "answer_id": answer_id})
        time.sleep(settings.resume_poll_s)


class NotAnswering(Conflict):
    code = "not_answering"


def request_stop(chat_id: str, answer_id: int, owner: Any = None) -> None:
    """Ask the worker producing answer `answer_id` to stop it (`StopWatch` reads this); 409 if that
    answer is not being produced."""
    with database.connection_context(), write_transaction():
        conversation = locked_row(Conversation, _find(chat_id, owner).id)
        if conversation is None or conversation.busy_answer != answer_id or not held(conversation, utcnow()):
            raise NotAnswering(f"Answer {answer_id} of chat {chat_id} is not being produced now.",
                               details={"chat_id": chat_id, "answer_id": answer_id})
        Conversation.update(stop_answer=answer_id).where(Conversation.id == conversation.id).execute()


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
    """What the provider gets: the system message, then the newest messages of the shown branch that
    fit both budgets (at most `context_messages`, at most `context_tokens` approximate tokens), oldest
    first. The newest message (this turn's) is always sent; empty answers (failed turns) are skipped;
    a question's files go before its text (`with_files`)."""
    system = (Message.select(Message.content).where((Message.conversation == key) & (Message.role == "system"))
              .order_by(Message.id).limit(1).first())
    recent = (Message.select(Message.role, Message.content, Message.parts, Message.files)
              .where((Message.conversation == key) & (Message.role != "system") & Message.active
                     & ((Message.content != "") | Message.parts.is_null(False) | Message.files.is_null(False)))
              .order_by(Message.id.desc()).limit(max(1, settings.context_messages)))
    budget = settings.context_tokens - (approx_tokens(system.content) if system else 0)
    kept: list[dict[str, Any]] = []
    for message in recent:
        parts = json.loads(message.parts) if message.parts else None
        content = with_files(parts or message.content, json.loads(message.files) if message.files else [])
        budget -= approx_tokens(text_of(content)) + IMAGE_TOKENS * sum(p["type"] == "image" for p in parts or ())
        if kept and settings.context_tokens and budget < 0:
            break
        kept.append({"role": message.role, "content": content})
    kept.reverse()
    return ([{"role": "system", "content": system.content}] if system else []) + kept


def with_files(content: Content, files: list[dict[str, Any]]) -> Content:
    """A question with its files' text before it: `File NAME:` and the text in a fence long enough
    that the file's own fences cannot close it."""
    if not files:
        return content
    blocks = []
    for file in files:
        fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", file["text"])), default=0))
        blocks.append(f"File {file['name']}:\n{fence}\n{file['text']}\n{fence}")
    prefix = "\n\n".join(blocks)
    if isinstance(content, str):
        return prefix + ("\n\n" + content if content else "")
    return [{"type": "text", "text": prefix}, *content]


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
    """A page of the chats whose title or a shown message (not the system prompt) contains `text`, newest
    first as `list_chats`, each with `match`: the first matching message's text around the match
    (None when only the title matches). Case-insensitive (on SQLite for ASCII letters only: its LIKE)."""
    in_messages = (Message.select(Message.id)
                   .where((Message.conversation == Conversation.id) & (Message.role != "system") & Message.active
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
           .where((Message.conversation == key) & (Message.role != "system") & Message.active
                  & Message.content.contains(text))
           .order_by(Message.id).first())
    if row is None:
        return None
    at = max(0, row.content.lower().find(text.lower()))
    start = max(0, at - SNIPPET_CHARS // 3)
    snippet = " ".join(row.content[start:start + SNIPPET_CHARS].split())
    return ("\u2026" if start else "") + snippet + ("\u2026" if start + SNIPPET_CHARS < len(row.content) else "")


def rename_chat(chat_id: str, title: str, owner: Any = None) -> str:
    """Give the chat a new title (whitespace runs made one space); the title. 404 if unknown."""
    return update_chat(chat_id, owner, title=title)["title"]


UNSET: Any = object()


def update_chat(chat_id: str, owner: Any = None, *, title: str | None = None, system_prompt: str | None = None,
                temperature: Any = UNSET) -> dict[str, Any]:
    """Change what is given of the chat's title (whitespace runs made one space), system prompt (""
    removes it) and temperature (None: the provider's default); the next turns use them. Returns
    {"title", "system_prompt", "temperature"}. 404 if unknown."""
    with database.connection_context(), write_transaction():
        conversation = _find(chat_id, owner)
        changes: dict[Any, Any] = {}
        if title is not None:
            changes[Conversation.title] = " ".join(title.split())
        if temperature is not UNSET:
            changes[Conversation.temperature] = temperature
        if changes:
            Conversation.update(changes).where(Conversation.id == conversation.id).execute()
        if system_prompt is not None:
            set_system_prompt(conversation.id, system_prompt)
        conversation = Conversation.get_by_id(conversation.id)
        system = (Message.select(Message.content)
                  .where((Message.conversation == conversation.id) & (Message.role == "system")).scalar())
    return {"title": conversation.title, "system_prompt": system or "", "temperature": conversation.temperature}


def set_system_prompt(key: str, text: str) -> None:
    """Make `text` the chat's system message ("" deletes it). A new one becomes the root of every branch
    (the chat's first messages hang under it); a deleted one leaves them roots again."""
    system = Message.get_or_none((Message.conversation == key) & (Message.role == "system"))
    if system is not None and text:
        Message.update(content=text).where(Message.id == system.id).execute()
    elif system is not None:
        Message.update(parent_id=None).where((Message.conversation == key) & (Message.parent_id == system.id)).execute()
        Message.delete().where(Message.id == system.id).execute()
        Conversation.update(message_count=Conversation.message_count - 1).where(Conversation.id == key).execute()
    elif text:
        system_id = Message.insert(conversation=key, role="system", content=text, created_at=utcnow()).execute()
        (Message.update(parent_id=system_id)
         .where((Message.conversation == key) & Message.parent_id.is_null() & (Message.id != system_id)).execute())
        Conversation.update(message_count=Conversation.message_count + 1).where(Conversation.id == key).execute()


def get_chat(chat_id: str, owner: Any = None) -> dict[str, Any]:
    """The chat's dates, settings and the messages of its shown branch, oldest first (the system message
    first), each with its versions; `answering`: the answer being produced now, or None. 404 if unknown."""
    with database.connection_context():
        return chat_view(_find(chat_id, owner))


def chat_view(conversation: Conversation) -> dict[str, Any]:
    messages = list(active_messages(conversation.id).order_by(Message.role != "system", Message.id))
    versions = versions_of(conversation.id, [m.parent_id for m in messages if m.role != "system"])
    system = next((m.content for m in messages if m.role == "system"), "")
    answering = conversation.busy_answer if held(conversation, utcnow()) else None
    return {"created_at": isoformat(conversation.created_at), "last_updated": isoformat(conversation.last_updated),
            "message_count": conversation.message_count, "title": conversation.title,
            "system_prompt": system, "temperature": conversation.temperature, "answering": answering,
            "last_message_id": last_message_id(conversation.id),
            "messages": [message_dict(m, versions.get(m.parent_id) if m.role != "system" else None)
                         for m in messages]}


def versions_of(key: str, parents: list[int | None]) -> dict[int | None, list[int]]:
    """The ids of the children of each of `parents` (None: the chat's first messages), oldest first:
    the versions of the messages under them."""
    ids = [parent for parent in parents if parent is not None]
    where = Message.parent_id.in_(ids) if ids else None
    if None in parents:
        root = Message.parent_id.is_null() & (Message.role != "system")
        where = root if where is None else (where | root)
    found: dict[int | None, list[int]] = {}
    if where is None:
        return found
    rows: list[Any] = list(Message.select(Message.id, Message.parent_id)
                           .where((Message.conversation == key) & where).order_by(Message.id).tuples())
    for message_id, parent in rows:
        found.setdefault(parent, []).append(message_id)
    return found


def message_dict(message: Message, versions: list[int] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": message.id, "role": message.role, "content": message.content,
                           "timestamp": isoformat(message.created_at), "status": message.status}
    if message.role == "assistant":
        out.update(provider=message.provider, model=message.model)
        if message.reasoning:
            out["reasoning"] = message.reasoning
        if message.prompt_tokens is not None or message.completion_tokens is not None:
            out["usage"] = Usage(message.prompt_tokens or 0, message.completion_tokens or 0,
                                 cached_tokens=message.cached_tokens or 0,
                                 cache_write_tokens=message.cache_write_tokens or 0).to_dict()
        if message.cost_usd is not None:
            out["cost_usd"] = message.cost_usd
    if versions:
        out["versions"] = {"count": len(versions), "index": versions.index(message.id), "ids": versions}
    if message.parts:
        out["images"] = [f"data:{part['media_type']};base64,{part['data']}"
                         for part in json.loads(message.parts) if part["type"] == "image"]
    if message.files:
        out["files"] = [{"name": file["name"], "chars": len(file["text"])} for file in json.loads(message.files)]
    if message.error:
        out["error"] = message.error
    return out


def activate(chat_id: str, message_id: int, owner: Any = None) -> dict[str, Any]:
    """Show version `message_id`: the branch from the chat's first message down to it, and under it
    the newest version at each step. 409 while a turn answers; 404 for an unknown chat or message."""
    with database.connection_context(), write_transaction():
        conversation = locked_row(Conversation, _find(chat_id, owner).id)
        if conversation is None:  # deleted meanwhile
            raise ChatNotFound(f"Chat {chat_id} not found.", details={"chat_id": chat_id})
        if held(conversation, utcnow()):
            raise ChatBusy(f"Chat {chat_id} is still answering a message; switch versions when it ends.",
                           details={"chat_id": chat_id})
        rows: list[Any] = list(Message.select(Message.id, Message.parent_id)
                               .where(Message.conversation == conversation.id).order_by(Message.id).tuples())
        tree: dict[int, int | None] = dict(rows)
        if message_id not in tree:
            raise MessageNotFound(f"Chat {chat_id} has no message {message_id}.",
                                  details={"chat_id": chat_id, "message_id": message_id})
        shown = branch_through(tree, message_id)
        Message.update(active=False).where((Message.conversation == conversation.id) & Message.active).execute()
        for start in range(0, len(shown), 500):
            Message.update(active=True).where(Message.id.in_(shown[start:start + 500])).execute()
        Conversation.update(message_count=len(shown)).where(Conversation.id == conversation.id).execute()
        return chat_view(Conversation.get_by_id(conversation.id))


def branch_through(tree: dict[int, int | None], message_id: int) -> list[int]:
    """The ids of the branch through `message_id` in `tree` (id to parent id): its ancestors, it, and
    below it the newest child at each step. A system message (a root) stays on every branch."""
    path = [message_id]
    parent = tree[message_id]
    while parent is not None and parent in tree:
        path.append(parent)
        parent = tree[parent]
    children: dict[int | None, int] = {}
    for child, parent in tree.items():  # ids ascending: the last child seen is the newest
        children[parent] = child
    below = message_id
    while below in children:
        below = children[below]
        path.append(below)
    return sorted(path)


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
