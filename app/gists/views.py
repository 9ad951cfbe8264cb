"""`/gists...` (GitHub gists, and the server's own record of the gists it changed) and
`POST /chat/gist` (a model decides how to create or update a gist).

Who asked, for the record: the `X-Client-Id` header when sent (printable, cut to 200 characters),
and the client's address (behind the local Caddy, the one it forwarded).
"""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request, url_for

from app.core.caller import current_caller
from app.core.http import parse_body, parse_query
from app.core.openapi import documented
from app.gists import service
from app.gists.chat import action_request, chat_gist, recent_for_prompt, stream_chat_gist
from app.gists.schemas import ChatGistSchema, CreateGistSchema, ListGistsQuery, LocalGistsQuery, UpdateGistSchema
from app.integrations.github import GitHubClient, require_client
from app.llm.responses import event_stream, gateway, note_answer, registry
from app.llm.sse import NativeEvents

bp = Blueprint("gists", __name__)


def github() -> GitHubClient:
    return require_client(current_app.extensions.get("github"))


def requester(endpoint: str) -> service.Requester:
    raw = request.headers.get("X-Client-Id", "")
    client_id = "".join(ch for ch in raw if ch.isprintable()).strip()[:200] or None
    return service.Requester(endpoint, client_id, client_address(), current_caller().owner)


def may_write_gists(action: str) -> None:
    """Gists are the GitHub token's, shared by every key: changing them needs the `gists` scope."""
    current_caller().require_scope("gists", action)


def client_address() -> str | None:
    """The peer's address; behind the local reverse proxy (a loopback peer), the address the proxy
    saw, which it appends last to `X-Forwarded-For`."""
    peer = request.remote_addr
    forwarded = request.headers.get("X-Forwarded-For", "").split(",")[-1].strip()
    if forwarded and peer in ("127.0.0.1", "::1"):
        return forwarded[:64]
    return peer


@bp.post("/gists")
@documented(body=CreateGistSchema)
def create_gist():
    """Create a gist: {"description", "public", "files": [{"filename", "content"}]} (or GitHub's files map)."""
    may_write_gists("Creating a gist")
    client = github()
    gist = service.create_gist(client, parse_body(CreateGistSchema), requester("POST /gists"))
    response = jsonify({**gist, "success": True})
    response.status_code = 201
    response.headers["Location"] = url_for("gists.get_gist", gist_id=gist["id"])
    return response


@bp.get("/gists")
@documented(query=ListGistsQuery)
def list_gists():
    """List the token owner's gists: page, per_page (max 100), since/until (ISO 8601, updated time)."""
    client = github()
    query = parse_query(ListGistsQuery)
    listed = service.list_gists(client, **query)
    carried = {k: request.args[k] for k in ("since", "until") if request.args.get(k)}
    links = {rel: url_for("gists.list_gists", page=number, per_page=query["per_page"], **carried, _external=True)
             for rel, number in listed["pages"].items()}
    response = jsonify({**listed, "links": links, "success": True})
    if links:
        response.headers["Link"] = ", ".join(f'<{url}>; rel="{rel}"' for rel, url in links.items())
    return response


@bp.get("/gists/local")
@documented(query=LocalGistsQuery)
def local_gists():
    """Gists created or changed through this server, newest first; `cursor` from next_cursor continues."""
    query = parse_query(LocalGistsQuery)
    return jsonify({**service.local_gists(query["limit"], query["cursor"], current_caller().reader),
                    "success": True})


@bp.get("/gists/local/<gist_id>")
def local_gist(gist_id: str):
    """One gist recorded by this server, with every revision (who asked, from which endpoint, what changed)."""
    return jsonify({**service.local_gist(gist_id, current_caller().reader), "success": True})


@bp.get("/gists/<gist_id>")
def get_gist(gist_id: str):
    """One gist, with its files' contents."""
    return jsonify({**service.get_gist(github(), gist_id), "success": True})


@bp.patch("/gists/<gist_id>")
@documented(body=UpdateGistSchema)
def update_gist(gist_id: str):
    """Update a gist: description and/or files; "content": null deletes a file, "new_filename" renames it."""
    may_write_gists("Editing a gist")
    client = github()
    body = parse_body(UpdateGistSchema)
    gist = service.update_gist(client, gist_id, body, requester("PATCH /gists/{gist_id}"))
    return jsonify({**gist, "success": True})


@bp.delete("/gists/<gist_id>")
def delete_gist(gist_id: str):
    """Delete a gist."""
    may_write_gists("Deleting a gist")
    return jsonify({**service.delete_gist(github(), gist_id, requester("DELETE /gists/{gist_id}")),
                    "success": True})


@bp.post("/chat/gist")
@documented(body=ChatGistSchema)
def chat_gist_view():
    """Let the model create or update a gist from the conversation; SSE with "stream": true."""
    may_write_gists("Writing a gist")
    client = github()
    body = parse_body(ChatGistSchema)
    routes = registry().plan(body["provider"])
    completion = action_request(body["messages"], max_tokens=body["max_tokens"], temperature=body["temperature"],
                                recent=recent_for_prompt(reader=current_caller().reader))
    asker = requester("POST /chat/gist")
    if body["stream"]:
        events = stream_chat_gist(client, gateway(), routes, completion, asker)
        return event_stream(events, NativeEvents(error_status=True))
    result = chat_gist(client, gateway(), routes, completion, asker)
    note_answer(result["provider"], result["model"], result["usage"]["total_tokens"])
    response = jsonify({**result, "success": True})
    response.status_code = 201 if result["action"] == "create" else 200
    return response
