"""Stored Responses: keep a response and its input items, continue from one (`previous_response_id`),
read, page and delete them. Each belongs to the key that made it: `owner` is written, `reader`
(see `app.core.caller`) decides what a caller may see, and anything else is a 404, as unknown.

A conversation is a chain of responses, each naming the one it continues. Continuing from a response
sends its whole chain: every response's input items then its output items, oldest first. Deleting a
response ends the chain there: what continues from it no longer carries it or anything before it.
"""
from __future__ import annotations

from typing import Any

from app.core.caller import owned_by
from app.core.clock import epoch, from_epoch
from app.core.db import database, write_transaction
from app.core.errors import BadRequest, NotFound
from app.frontdoors.responses.models import InputItem, StoredResponse

COLUMNS = ("id", "model", "status", "created_at", "previous_response_id", "instructions", "output", "usage")


class ResponseNotFound(NotFound):
    code = "response_not_found"


def not_found(response_id: str) -> ResponseNotFound:
    return ResponseNotFound(f"Response with id '{response_id}' not found.", details={"param": "response_id"})


def save(response: dict[str, Any], items: list[dict[str, Any]], owner: str | None) -> None:
    """Store `response` (a whole response object, as answered) and its input `items` (each with an `id`)."""
    echo = {key: value for key, value in response.items() if key not in COLUMNS}
    with database.connection_context(), write_transaction():
        StoredResponse.insert(
            id=response["id"], owner=owner, model=response["model"][:200], status=response["status"],
            created_at=from_epoch(response["created_at"]),
            previous_response_id=response["previous_response_id"], instructions=response["instructions"],
            output=response["output"], usage=response["usage"], echo=echo).execute()
        InputItem.insert_many([{"response": response["id"], "item_id": item["id"], "item": item}
                               for item in items]).execute()


def readable(response_id: str, reader: Any) -> StoredResponse:
    """The response row `reader` may see; ResponseNotFound otherwise."""
    row = StoredResponse.get_or_none((StoredResponse.id == response_id) & owned_by(StoredResponse.owner, reader))
    if row is None:
        raise not_found(response_id)
    return row


def get(response_id: str, reader: Any) -> dict[str, Any]:
    """The response object, as it was answered; ResponseNotFound if `reader` may not see it."""
    with database.connection_context():
        row = readable(response_id, reader)
    return {**row.echo, "id": row.id, "object": "response", "created_at": epoch(row.created_at), "model": row.model,
            "status": row.status, "previous_response_id": row.previous_response_id,
            "instructions": row.instructions, "output": row.output, "usage": row.usage}


def chain_items(response_id: str, reader: Any) -> list[dict[str, Any]]:
    """What continuing from `response_id` sends before the new input: the chain's input and output
    items, oldest first. ResponseNotFound (param `previous_response_id`) if `reader` may not see it."""
    with database.connection_context():
        try:
            chain = chain_to(readable(response_id, reader))
        except ResponseNotFound as error:
            error.details["param"] = "previous_response_id"
            raise
        inputs = inputs_of([row.id for row in chain])
    return [item for row in chain for item in (*inputs.get(row.id, ()), *row.output)]


def resolve_references(given: str | list[dict[str, Any]], reader: Any) -> str | list[dict[str, Any]]:
    """The input with each `{"type": "item_reference", "id"}` replaced by the stored item it names (an
    input or output item of a response `reader` may see); 400 naming the first id not found."""
    if isinstance(given, str):
        return given
    wanted = [item.get("id") for item in given if item.get("type") == "item_reference"]
    if not wanted:
        return given
    found = items_by_id([item_id for item_id in wanted if isinstance(item_id, str)], reader)
    resolved = []
    for index, item in enumerate(given):
        if item.get("type") == "item_reference":
            if item.get("id") not in found:
                raise BadRequest(f"Item with id '{item.get('id')}' not found.", code="item_not_found",
                                 details={"param": f"input.{index}.id"})
            item = found[item["id"]]
        resolved.append(item)
    return resolved


def items_by_id(item_ids: list[str], reader: Any) -> dict[str, dict[str, Any]]:
    """The stored items with these ids among the responses `reader` may see: input items by their
    index, output items by a text match on the output column, then checked."""
    found: dict[str, dict[str, Any]] = {}
    with database.connection_context():
        rows: list[Any] = list(InputItem.select(InputItem.item_id, InputItem.item).join(StoredResponse)
                               .where(InputItem.item_id.in_(item_ids) & owned_by(StoredResponse.owner, reader))
                               .tuples())
        found.update((item_id, item) for item_id, item in rows)
        for item_id in set(item_ids) - set(found):
            holders = (StoredResponse.select(StoredResponse.output)
                       .where(StoredResponse.output.contains(f'"id":"{item_id}"')
                              & owned_by(StoredResponse.owner, reader))
                       .order_by(StoredResponse.created_at.desc()))
            for row in holders:  # LIKE's `_` matches any character: the match is checked here
                found.update((item["id"], item) for item in row.output if item.get("id") == item_id)
                if item_id in found:
                    break
    return found


def chain_to(row: StoredResponse) -> list[StoredResponse]:
    """`row` and the responses it continues, oldest first: back to the first, or to a deleted one."""
    chain = [row]
    while chain[0].previous_response_id:
        earlier = StoredResponse.get_or_none(StoredResponse.id == chain[0].previous_response_id)
        if earlier is None:
            break
        chain.insert(0, earlier)
    return chain


def inputs_of(response_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The input items of each response, in the order given."""
    rows: list[Any] = list(InputItem.select(InputItem.response, InputItem.item)
                           .where(InputItem.response.in_(response_ids)).order_by(InputItem.seq).tuples())
    inputs: dict[str, list[dict[str, Any]]] = {}
    for response_id, item in rows:
        inputs.setdefault(response_id, []).append(item)
    return inputs


def input_items(response_id: str, reader: Any, limit: int, order: str, after: str | None) -> dict[str, Any]:
    """A page of the input items `response_id` was given, as OpenAI lists them: `data`, `first_id`,
    `last_id`, `has_more`. `order` is "asc" or "desc"; `after` an item id of this response (400 if not)."""
    with database.connection_context():
        readable(response_id, reader)
        query = InputItem.select(InputItem.item).where(InputItem.response == response_id)
        if after is not None:
            query = query.where(InputItem.seq > after_seq(response_id, after) if order == "asc"
                                else InputItem.seq < after_seq(response_id, after))
        rows = list(query.order_by(InputItem.seq if order == "asc" else InputItem.seq.desc()).limit(limit + 1))
    data = [row.item for row in rows[:limit]]
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": len(rows) > limit}


def after_seq(response_id: str, after: str) -> int:
    """Where item `after` is in the response's input; 400 if the response has no such item."""
    row = (InputItem.select(InputItem.seq).where((InputItem.response == response_id) & (InputItem.item_id == after))
           .order_by(InputItem.seq).first())
    if row is None:
        raise BadRequest(f"after: response '{response_id}' has no input item '{after}'.", details={"param": "after"})
    return row.seq


def delete(response_id: str, reader: Any) -> None:
    """Delete the response and its input items; ResponseNotFound if `reader` may not see it."""
    with database.connection_context(), write_transaction():
        readable(response_id, reader)
        InputItem.delete().where(InputItem.response == response_id).execute()
        StoredResponse.delete().where(StoredResponse.id == response_id).execute()
