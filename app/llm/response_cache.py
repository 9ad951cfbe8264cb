"""The response cache: an exact repeat of a request is answered from a stored answer, without an
upstream call (RESPONSE_CACHE_TTL_S > 0 turns it on; off by default).

What is stored is what the gateway yielded: the typed parts of a streamed answer (`StreamItem`s), or
a whole `Answer`. A hit is replayed through the front door's own formatter, so every front door
answers a hit in its own shape, streamed or whole, tool calls and reasoning exactly as they came.
A streamed answer serves a whole request and a whole answer a streamed one, where one can be made
from the other without loss (`whole_from_stream`); a request answered in a vendor's own wire
(`CompletionRequest.native`), with logprobs or several choices keeps its two forms apart.

The key is a SHA-256 over the namespace (a key's own, or one an admin gave several keys, see
`app.keys.auth`), the front door, the request's routes (provider and model of each: what the
model or alias asked for resolved to) and the request without what does not change the answer
(`IGNORED`: `stream`, `user`, `metadata`, `store`...). Only complete answers are stored: a stream is
stored as its `StreamEnd` passes, never one that failed or that its client left.

Entries live in Redis (`RedisStore`, with REDIS_URL: every instance shares them, Redis expires them)
or in the database (`DatabaseStore`, the `response_cache` table: expired rows count as absent and
the nightly job prunes them). A store that fails is logged and the request goes on as a miss.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol

from peewee import CharField, DoubleField, TextField

from app.core.db import BaseModel, database
from app.llm.gateway import Answer, Event, FailedAttempt, Started, StreamFailed, assembled, whole_from_stream
from app.llm.providers.base import (
    ChoicePart,
    CompletionRequest,
    NativeEvent,
    ReasoningDelta,
    StreamEnd,
    StreamItem,
    ThinkingBlock,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from app.llm.registry import Route

log = logging.getLogger("aiserver.response_cache")

# request fields that do not change the answer (`images` is a fetch cache; the URLs are in `messages`)
IGNORED = frozenset({"user", "metadata", "images", "native"})
# fields of a vendor's own body (`CompletionRequest.native`) that do not change the answer
NATIVE_IGNORED = frozenset({"stream", "stream_options", "user", "metadata", "store"})


class ResponseCacheEntry(BaseModel):
    """A stored answer (`CachedAnswer.dumps`) under its key, until `expires_at` (epoch seconds).
    Table: `app/migrations/0014_response_cache.py`."""

    key = CharField(primary_key=True, max_length=64)
    value = TextField()
    expires_at = DoubleField(index=True)  # not FloatField: REAL on PostgreSQL rounds an epoch by minutes

    class Meta:
        table_name = "response_cache"


@dataclass
class CachedAnswer:
    """One stored answer: who answered, when, and either its streamed parts or its whole form."""

    provider: str
    model: str
    stored_at: float = field(default_factory=time.time)
    items: list[StreamItem] | None = None
    answer: dict[str, Any] | None = None  # `whole_of`: an Answer's fields

    def dumps(self) -> str:
        return json.dumps({"provider": self.provider, "model": self.model, "stored_at": self.stored_at,
                           "items": None if self.items is None else [item_json(item) for item in self.items],
                           "answer": self.answer}, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def loads(cls, text: str) -> "CachedAnswer":
        data = json.loads(text)
        items = None if data["items"] is None else [item_of(value) for value in data["items"]]
        return cls(data["provider"], data["model"], data["stored_at"], items, data["answer"])

    def as_stream(self) -> list[StreamItem]:
        """The parts to replay: as they streamed, or made from a whole answer (`parts_of`)."""
        if self.items is not None:
            return self.items
        return parts_of(answer_of(self.answer or {}, self.provider, self.model))

    def as_answer(self) -> Answer:
        """The whole answer: as it was, or assembled from its parts as the gateway assembles one."""
        if self.answer is not None:
            return answer_of(self.answer, self.provider, self.model)
        done = assembled(iter(self.items or ()), self.model)
        return Answer(done.text, self.provider, done.model, done.finish_reason, done.usage, [], done.tool_calls,
                      done.reasoning, thinking=done.thinking)


# -- the parts, as JSON ----------------------------------------------------------------------------


def item_json(item: StreamItem) -> Any:
    """A part as a small JSON value: its kind's letter and its fields."""
    if isinstance(item, str):
        return ["t", item]
    if isinstance(item, ReasoningDelta):
        return ["r", item.text]
    if isinstance(item, ToolCallDelta):
        return ["c", item.index, item.id, item.name, item.arguments, item.signature]
    if isinstance(item, ThinkingBlock):
        return ["b", item.block]
    if isinstance(item, ChoicePart):
        return ["p", item.index, None if item.part is None else item_json(item.part), item.finish_reason]
    if isinstance(item, NativeEvent):
        return ["n", item.event]
    if isinstance(item, StreamEnd):
        return ["e", item.model, item.finish_reason, dataclasses.asdict(item.usage)]
    raise TypeError(f"not a stream part: {type(item).__name__}")


def item_of(value: list[Any]) -> Any:
    kind, *rest = value
    if kind == "t":
        return rest[0]
    if kind == "r":
        return ReasoningDelta(rest[0])
    if kind == "c":
        return ToolCallDelta(*rest)
    if kind == "b":
        return ThinkingBlock(rest[0])
    if kind == "p":
        return ChoicePart(rest[0], None if rest[1] is None else item_of(rest[1]), rest[2])
    if kind == "n":
        return NativeEvent(rest[0])
    return StreamEnd(rest[0], rest[1], usage_of(rest[2]))


def usage_of(values: dict[str, Any]) -> Usage:
    known = {f.name for f in dataclasses.fields(Usage)}
    return Usage(**{name: value for name, value in values.items() if name in known})


def whole_of(answer: Answer) -> dict[str, Any]:
    return {"text": answer.text, "finish_reason": answer.finish_reason, "usage": dataclasses.asdict(answer.usage),
            "tool_calls": [call.to_dict() for call in answer.tool_calls], "reasoning": answer.reasoning,
            "logprobs": answer.logprobs, "native": answer.native, "thinking": answer.thinking,
            "choices": answer.choices}


def answer_of(whole: dict[str, Any], provider: str, model: str) -> Answer:
    return Answer(whole.get("text", ""), provider, model, whole.get("finish_reason", "stop"),
                  usage_of(whole.get("usage") or {}), [], [ToolCall(**call) for call in whole.get("tool_calls", [])],
                  whole.get("reasoning", ""), whole.get("logprobs"), whole.get("native"), whole.get("thinking", []),
                  whole.get("choices", []))


def parts_of(answer: Answer) -> list[StreamItem]:
    """A whole answer (one choice, neutral) as the parts a stream of it yields: reasoning, thinking
    blocks, text, tool calls, then the end."""
    parts: list[StreamItem] = []
    if answer.reasoning:
        parts.append(ReasoningDelta(answer.reasoning))
    parts += [ThinkingBlock(block) for block in answer.thinking]
    if answer.text:
        parts.append(answer.text)
    parts += [ToolCallDelta(index, call.id, call.name, call.arguments, call.signature or None)
              for index, call in enumerate(answer.tool_calls)]
    return [*parts, StreamEnd(answer.model, answer.finish_reason, answer.usage)]


def renamed(body: dict[str, Any], ids: dict[str, str]) -> dict[str, Any]:
    """`body` with the id of the response (`object: response`, or an event's `response`) or message
    (`type: message`, or an event's `message`) it holds replaced by a new one of the same prefix;
    `ids` keeps old to new, so every event of one replay names the same new id."""
    if body.get("object") == "response" or body.get("type") == "message":
        old = str(body.get("id", ""))
        new = ids.setdefault(old, f"{old.split('_', 1)[0] or 'id'}_{uuid.uuid4().hex}")
        return {**body, "id": new}
    for name in ("response", "message"):
        if isinstance(body.get(name), dict) and "id" in body[name]:
            return {**body, name: renamed(body[name], ids)}
    return body


# -- the key ---------------------------------------------------------------------------------------


def cache_key(namespace: str, door: str, routes: list[Route], request: CompletionRequest, stream: bool) -> str:
    """The hex SHA-256 that names a request's answer in `namespace` (see the module's docstring)."""
    fields = {f.name: getattr(request, f.name) for f in dataclasses.fields(request) if f.name not in IGNORED}
    if request.native is not None:
        fields["native"] = {"wire": request.native.wire, "headers": request.native.headers,
                            "body": {k: v for k, v in request.native.body.items() if k not in NATIVE_IGNORED}}
    shape = None if whole_from_stream(request) else stream  # the two forms of one answer, where they differ
    text = json.dumps([namespace, door, [(route.provider.name, route.model) for route in routes], shape, fields],
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=repr)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


# -- where entries are kept ------------------------------------------------------------------------


class Store(Protocol):
    def get(self, key: str) -> str | None: ...

    def put(self, key: str, value: str, ttl: float) -> None: ...


class RedisStore:
    """Entries as Redis strings (`{prefix}:response:{key}`) that Redis expires: every instance shares them."""

    def __init__(self, client: Any, prefix: str):
        self.client = client
        self.prefix = f"{prefix}:response:"

    def get(self, key: str) -> str | None:
        value = self.client.get(self.prefix + key)
        return None if value is None else value.decode("utf-8")

    def put(self, key: str, value: str, ttl: float) -> None:
        self.client.set(self.prefix + key, value.encode("utf-8"), px=max(1, int(ttl * 1000)))


class DatabaseStore:
    """Entries as rows of `response_cache`; one past its `expires_at` counts as absent."""

    def get(self, key: str) -> str | None:
        with database.connection_context():
            row = (ResponseCacheEntry.select(ResponseCacheEntry.value)
                   .where((ResponseCacheEntry.key == key) & (ResponseCacheEntry.expires_at > time.time())).first())
        return None if row is None else row.value

    def put(self, key: str, value: str, ttl: float) -> None:
        with database.connection_context():
            (ResponseCacheEntry.insert(key=key, value=value, expires_at=time.time() + ttl)
             .on_conflict(conflict_target=[ResponseCacheEntry.key],
                          update={ResponseCacheEntry.value: value, ResponseCacheEntry.expires_at: time.time() + ttl})
             .execute())


def prune_expired(now: float | None = None) -> int:
    """Delete the database's expired entries (the nightly job); returns how many."""
    with database.connection_context():
        return ResponseCacheEntry.delete().where(ResponseCacheEntry.expires_at <= (now or time.time())).execute()


# -- the cache -------------------------------------------------------------------------------------


class ResponseCache:
    """Answers kept for `ttl` seconds in `store`, each at most `max_bytes` once serialised."""

    LOG_EVERY_S = 10.0  # while the store fails, one log line at most this often (with the count since)

    def __init__(self, store: Store, ttl: float, max_bytes: int):
        self.store = store
        self.ttl = ttl
        self.max_bytes = max_bytes
        self.last_logged = -math.inf
        self.unlogged = 0

    def get(self, key: str) -> CachedAnswer | None:
        try:
            text = self.store.get(key)
            return None if text is None else CachedAnswer.loads(text)
        except Exception as error:  # a cache that fails is a miss, never a failed request
            self.failed("read", error)
            return None

    def failed(self, what: str, error: Exception) -> None:
        """Log a failure of the store, once per LOG_EVERY_S while it keeps failing (Redis down: every request)."""
        now = time.monotonic()
        if now - self.last_logged < self.LOG_EVERY_S:
            self.unlogged += 1
            return
        since, self.unlogged, self.last_logged = self.unlogged, 0, now
        more = f" ({since} more failures since the last line)" if since else ""
        log.warning("response cache %s failed: %s: %s%s", what, type(error).__name__, error, more)

    def put(self, key: str, entry: CachedAnswer) -> bool:
        """Keep `entry` unless it is larger than `max_bytes`; False when it was not kept."""
        try:
            text = entry.dumps()
            if len(text.encode("utf-8", "surrogatepass")) > self.max_bytes:
                return False
            self.store.put(key, text, self.ttl)
            return True
        except Exception as error:
            self.failed("write", error)
            return False

    def put_answer(self, key: str, answer: Answer) -> bool:
        """Keep a whole answer (a stream asking the same is made from it where nothing is lost)."""
        return self.put(key, CachedAnswer(answer.provider, answer.model, answer=whole_of(answer)))

    def storing(self, key: str, events: Iterator[Event]) -> Iterator[Event]:
        """The gateway's `events`, passed on; the answer's parts are kept once its `StreamEnd` comes
        (before it is passed on, so a client that saw the end finds the entry). A stream that failed or
        whose client left is not kept."""
        started: Started | None = None
        parts: list[StreamItem] = []
        for event in events:
            if isinstance(event, Started):
                started = event
            elif started is not None and not isinstance(event, (StreamFailed, FailedAttempt)):
                parts.append(event)
                if isinstance(event, StreamEnd):
                    self.put(key, CachedAnswer(started.provider, event.model, items=parts))
            yield event


def replay(entry: CachedAnswer) -> Iterator[Event]:
    """A stored answer as the gateway would stream it: `Started`, then its parts (a vendor's own
    events with new ids)."""
    yield Started(entry.provider, entry.model)
    ids: dict[str, str] = {}
    for item in entry.as_stream():
        yield NativeEvent(renamed(item.event, ids)) if isinstance(item, NativeEvent) else item


def replayed_answer(entry: CachedAnswer) -> Answer:
    """A stored whole answer, a vendor's own body with a new id."""
    answer = entry.as_answer()
    if answer.native is not None:
        answer.native = renamed(answer.native, {})
    return answer


def make_response_cache(config: dict[str, Any]) -> ResponseCache | None:
    """The cache RESPONSE_CACHE_TTL_S asks for (None: off): in Redis with REDIS_URL, else the database."""
    if config["RESPONSE_CACHE_TTL_S"] <= 0:
        return None
    store: Store = DatabaseStore()
    if config["REDIS_URL"]:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # one immediate retry (a pooled connection a Redis restart closed), not redis-py's default of three
        # with backoff: a Redis that is down must cost a request milliseconds, not seconds
        client = redis.Redis.from_url(config["REDIS_URL"], socket_timeout=2, socket_connect_timeout=2,
                                      max_connections=config["WEB_WORKER_CONNECTIONS"], retry=Retry(NoBackoff(), 1))
        store = RedisStore(client, config["QUEUE_NAME"] or "aiserver")
    return ResponseCache(store, config["RESPONSE_CACHE_TTL_S"], config["RESPONSE_CACHE_MAX_BYTES"])
