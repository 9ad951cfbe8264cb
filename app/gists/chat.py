"""Chat that writes gists: the model reads the conversation and chooses one action, `create` or
`update`, as structured output; the action is validated, then carried out by `app.gists.service`.

The model answers with JSON matching `ACTION_JSON_SCHEMA` (each provider's JSON mode or forced
tool call; see `CompletionRequest.json_schema`), which `GistActionSchema` validates into the same
request body the gist endpoints accept. An answer that does not validate is sent back to the
model once, with what was wrong; a second invalid answer is a 502 naming the problems, and no gist
is touched. `explanation` comes first in the schema, so a streamed answer shows the model's
reasoning (`ExplanationStream` pulls it out of the JSON as it arrives) before the action's result.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterator

from marshmallow import ValidationError

from app.core.caller import EVERYONE
from app.core.errors import APIError, UpstreamError, describe_problems
from app.core.jsontext import GrowingField, json_in_text
from app.gists.schemas import GistActionSchema
from app.gists.service import Requester, create_gist, recent_gists, update_gist
from app.integrations.github.client import GitHubClient
from app.llm.gateway import Answer, FailedAttempt, Gateway, Started, StreamFailed
from app.llm.providers.base import CompletionRequest, StreamEnd, Usage
from app.llm.registry import Route

log = logging.getLogger("aiserver.gist_chat")

_FILE = {"type": "object", "additionalProperties": False, "required": ["filename", "content", "new_filename"],
         "properties": {"filename": {"type": "string", "description": "The file's current (or new) name."},
                        "content": {"type": ["string", "null"],
                                    "description": "The whole new content; null deletes the file on update "
                                                   "(or keeps its content when new_filename renames it)."},
                        "new_filename": {"type": ["string", "null"],
                                         "description": "Update only: the file's new name; null otherwise."}}}
ACTION_JSON_SCHEMA: dict[str, Any] = {
    "name": "gist_action",
    "description": "Create or update one GitHub gist.",
    "schema": {
        "type": "object", "additionalProperties": False,
        "required": ["explanation", "action", "gist_id", "description", "public", "files"],
        "properties": {
            "explanation": {"type": "string", "description": "Your reasoning for the user, in a few sentences."},
            "action": {"type": "string", "enum": ["create", "update"]},
            "gist_id": {"type": ["string", "null"], "description": "The gist to update; null on create."},
            "description": {"type": ["string", "null"], "description": "The gist's description; null on update "
                                                                       "keeps it."},
            "public": {"type": ["boolean", "null"], "description": "Create only: true for a public gist."},
            "files": {"type": "array", "items": _FILE},
        },
    },
}
SYSTEM_PROMPT = """You manage GitHub gists for the user. Read the conversation and choose exactly one action:
"create" a new gist, or "update" an existing gist named by its gist_id.
Answer with one JSON object only, with these fields in this order:
- explanation: your reasoning, for the user, in a few sentences;
- action: "create" or "update";
- gist_id: the gist to update (null on create);
- description: the gist's description (on update, null keeps it);
- public: on create, true only if the user asks for a public gist (null on update);
- files: a list of {"filename", "content", "new_filename"}. On create every file needs its full content
  and new_filename null. On update, content replaces the file's content (or adds a new file), content null
  with new_filename null deletes the file, and new_filename renames it (content null then keeps the content).
Filenames are non-empty and contain no "/" and no control characters."""
CORRECTION = ("Your answer was not a valid gist action: {problems}\n"
              "Answer again with only the corrected JSON object.")


@dataclass(frozen=True)
class Retrying:
    """Streamed when the model's first answer did not validate and it is asked again."""

    message: str
    errors: dict[str, Any]

    def native_event(self) -> dict[str, Any]:
        return {"type": "retry", "message": self.message, "errors": self.errors}


@dataclass(frozen=True)
class GistDone:
    """Streamed once the action was carried out: what `chat_gist` would have returned."""

    result: dict[str, Any]

    def native_event(self) -> dict[str, Any]:
        return {"type": "gist", **self.result}


class InvalidAction(Exception):
    def __init__(self, errors: dict[str, Any]):
        super().__init__(describe_problems(errors))
        self.errors = errors


@dataclass
class Decision:
    action: dict[str, Any]
    provider: str
    model: str
    usage: Usage
    retries: int = 0
    attempts: list[FailedAttempt] = field(default_factory=list)


# -- deciding ------------------------------------------------------------------------------------


def action_request(messages: list[dict[str, Any]], *, max_tokens: int | None = None,
                   temperature: float | None = None, recent: list[dict[str, Any]] | None = None) -> CompletionRequest:
    """The conversation behind our system prompt (listing gists recently changed here), asking for
    `ACTION_JSON_SCHEMA`."""
    system = SYSTEM_PROMPT
    if recent:
        lines = [f'- {g["id"]}: "{g["description"]}" files: {", ".join(g["files"])}' for g in recent]
        system += "\nGists recently created or changed here, newest first:\n" + "\n".join(lines)
    return CompletionRequest([{"role": "system", "content": system}, *messages], max_tokens=max_tokens,
                             temperature=temperature, json_schema=ACTION_JSON_SCHEMA)


def parse_action(text: str) -> dict[str, Any]:
    """The model's answer as a validated action (`action`, `gist_id`, `explanation`, `body`)."""
    try:
        data = json_in_text(text)
    except ValueError as exc:
        raise InvalidAction({"_json": [f"Not valid JSON ({exc})."]}) from None
    if not isinstance(data, dict):
        raise InvalidAction({"_json": ["Must be a JSON object."]})
    try:
        return GistActionSchema().load(data)
    except ValidationError as exc:
        raise InvalidAction(exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}) from None


def correction(request: CompletionRequest, answer_text: str, invalid: InvalidAction) -> CompletionRequest:
    messages = [*request.messages, {"role": "assistant", "content": answer_text or "(empty)"},
                {"role": "user", "content": CORRECTION.format(problems=invalid)}]
    return CompletionRequest(messages, request.max_tokens, request.temperature, request.top_p, request.stop,
                             request.json_schema)


def invalid_twice(invalid: InvalidAction, first: InvalidAction, provider: str, model: str) -> UpstreamError:
    return UpstreamError(f"The model's gist action was invalid twice, so no gist was changed: {invalid}",
                         code="invalid_model_output",
                         details={"errors": invalid.errors, "first_errors": first.errors, "provider": provider,
                                  "model": model})


def decide(gateway: Gateway, routes: list[Route], request: CompletionRequest) -> Decision:
    """Ask for an action, once more with the validation errors if needed; 502 if still invalid."""
    answer = gateway.complete(request, routes)
    try:
        return decision(parse_action(answer.text), [answer], 0)
    except InvalidAction as first:
        log.warning("invalid gist action from %s/%s: %s", answer.provider, answer.model, first)
        retry = gateway.complete(correction(request, answer.text, first), routes)
        try:
            return decision(parse_action(retry.text), [answer, retry], 1)
        except InvalidAction as second:
            raise invalid_twice(second, first, retry.provider, retry.model) from None


def decision(action: dict[str, Any], answers: list[Answer], retries: int) -> Decision:
    usage = sum((answer.usage for answer in answers), Usage())
    attempts = [attempt for a in answers for attempt in a.attempts]
    return Decision(action, answers[-1].provider, answers[-1].model, usage, retries, attempts)


# -- acting ----------------------------------------------------------------------------------------


def carry_out(github: GitHubClient, decided: Decision, requester: Requester) -> dict[str, Any]:
    """Create or update the gist; the answer names the action, the gist, its URL and the explanation."""
    action = decided.action
    details = {"provider": decided.provider, "model": decided.model, "explanation": action["explanation"][:2000]}
    if action["action"] == "create":
        gist = create_gist(github, action["body"], requester, details)
    else:
        gist = update_gist(github, action["gist_id"], action["body"], requester, details)
    return {"action": action["action"], "gist_id": gist["id"], "html_url": gist["html_url"],
            "explanation": action["explanation"], "description": gist["description"], "files": gist["files"],
            "provider": decided.provider, "model": decided.model, "usage": decided.usage.to_dict(),
            "validation_retries": decided.retries, "attempts": [a.to_dict() for a in decided.attempts],
            "recorded": gist["recorded"]}


def chat_gist(github: GitHubClient, gateway: Gateway, routes: list[Route], request: CompletionRequest,
              requester: Requester) -> dict[str, Any]:
    return carry_out(github, decide(gateway, routes, request), requester)


def recent_for_prompt(limit: int = 10, reader: Any = EVERYONE) -> list[dict[str, Any]]:
    """Gists recently changed here that `reader` may see, for the prompt; empty if the database cannot say."""
    try:
        return recent_gists(limit, reader)
    except Exception:  # the prompt is better without the list than the request failing
        log.exception("could not list recent gists for the prompt")
        return []


# -- streaming -------------------------------------------------------------------------------------


def stream_chat_gist(github: GitHubClient, gateway: Gateway, routes: list[Route], request: CompletionRequest,
                     requester: Requester) -> Iterator[Any]:
    """Events: the gateway's `Started`/`FailedAttempt`, the explanation's text as it streams, a
    `Retrying` if the first answer was invalid (then the second answer's events), then `GistDone`
    and one `StreamEnd` with the usage of every answer; or an `APIError` (invalid twice, GitHub
    refused) or `StreamFailed` as the last event."""
    first: InvalidAction | None = None
    usage = Usage()
    for attempt in range(2):
        streamed = yield from stream_answer(gateway, routes, request)
        if streamed is None:
            return
        text, started, end = streamed
        usage += end.usage
        try:
            action = parse_action(text)
        except InvalidAction as invalid:
            if first is not None:
                yield invalid_twice(invalid, first, started.provider, end.model)
                return
            first = invalid
            yield Retrying(f"The answer was not a valid gist action, so the model is asked again: {invalid}",
                           invalid.errors)
            request = correction(request, text, invalid)
            continue
        try:
            yield GistDone(carry_out(github, Decision(action, started.provider, end.model, usage, attempt),
                                     requester))
        except APIError as error:
            yield error
            return
        yield StreamEnd(end.model, end.finish_reason, usage)
        return


def stream_answer(gateway: Gateway, routes: list[Route], request: CompletionRequest):
    """Yield one answer's events (text reduced to the explanation); return (text, Started, StreamEnd),
    or None after a `StreamFailed`."""
    text: list[str] = []
    explanation = GrowingField("explanation")
    started, end = Started("", ""), None
    for event in gateway.stream(request, routes):
        if isinstance(event, str):
            text.append(event)
            shown = explanation.feed(event)
            if shown:
                yield shown
        elif isinstance(event, StreamEnd):
            end = event
        else:
            if isinstance(event, Started):
                started = event
            yield event
            if isinstance(event, StreamFailed):
                return None
    return "".join(text), started, end or StreamEnd(started.model, "stop")
