"""`/gists...` (GitHub gists, and the server's own record of the gists it changed) and
`POST /chat/gist` (a model decides how to create or update a gist).

Who asked, for the record: the `X-Client-Id` header when sent (printable, cut to 200 characters),
and the client's address (behind Caddy, the one it saw: see `TRUSTED_PROXIES`).
"""
from __future__ import annotations

from flask import current_app, jsonify, request, url_for
from flask_smorest import Blueprint

from app.core.caller import client_label, current_caller
from app.core.http import parse_body, parse_query
from app.core.openapi import errors, json_body, query_args, streams
from app.gists import service
from app.gists.chat import action_request, chat_gist, recent_for_prompt, stream_chat_gist
from app.gists.schemas import (
    GIST_EVENTS,
    GIST_STREAM,
    ChangedGistSchema,
    ChatGistResultSchema,
    ChatGistSchema,
    CreateGistSchema,
    DeletedGistSchema,
    GistPageSchema,
    ListGistsQuery,
    LocalGistHistorySchema,
    LocalGistPageSchema,
    LocalGistsQuery,
    OneGistSchema,
    UpdateGistSchema,
)
from app.integrations.github import GitHubClient, require_client
from app.llm.responses import GATEWAY_ERRORS, event_stream, gateway, honouring_routes, note_answer, registry
from app.llm.sse import NativeEvents

bp = Blueprint("gists", __name__, description="GitHub gists, and this server's record of the gists it changed.")

GITHUB_ERRORS = ((400, "GitHub refused the change as invalid (422), or a bad gist id."),
                 (403, "GitHub refused the token this action."),
                 (404, "No such gist on GitHub."),
                 (409, "GitHub reported a conflict."),
                 (410, "The gist is gone on GitHub."),
                 (429, "GitHub's rate limit: `Retry-After` says when to try again."),
                 (502, "GitHub failed, rejected the token, or answered nonsense."),
                 (503, "GITHUB_TOKEN is not set, or the database is unavailable."),
                 (504, "GitHub did not answer in time."))


def github() -> GitHubClient:
    return require_client(current_app.extensions.get("github"))


def requester(endpoint: str) -> service.Requester:
    client_id = client_label(request.headers.get("X-Client-Id"))
    return service.Requester(endpoint, client_id, client_address(), current_caller().owner)


def may_write_gists(action: str) -> None:
    """Gists are the GitHub token's, shared by every key: changing them needs the `gists` scope."""
    current_caller().require_scope("gists", action)


def client_address() -> str | None:
    """The client's address: behind the reverse proxy, the one it saw (`TRUSTED_PROXIES`, ProxyFix)."""
    return (request.remote_addr or "")[:64] or None


@bp.post("/gists")
@json_body(CreateGistSchema)
@bp.response(201, ChangedGistSchema, headers={"Location": {"schema": {"type": "string"},
                                                           "description": "The gist's URL here."}})
@errors(*GITHUB_ERRORS)
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
@query_args(ListGistsQuery)
@bp.response(200, GistPageSchema)
@errors(*GITHUB_ERRORS)
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
@query_args(LocalGistsQuery)
@bp.response(200, LocalGistPageSchema)
@errors((400, "An invalid limit or cursor."), (503, "The database is unavailable or busy."))
def local_gists():
    """Gists created or changed through this server, newest first; `cursor` from next_cursor continues."""
    query = parse_query(LocalGistsQuery)
    return jsonify({**service.local_gists(query["limit"], query["cursor"], current_caller().reader),
                    "success": True})


@bp.get("/gists/local/<gist_id>")
@bp.response(200, LocalGistHistorySchema)
@errors((404, "This server never changed that gist."), (503, "The database is unavailable or busy."))
def local_gist(gist_id: str):
    """One gist recorded by this server, with every revision (who asked, from which endpoint, what changed)."""
    return jsonify({**service.local_gist(gist_id, current_caller().reader), "success": True})


@bp.get("/gists/<gist_id>")
@bp.response(200, OneGistSchema)
@errors(*GITHUB_ERRORS)
def get_gist(gist_id: str):
    """One gist, with its files' contents."""
    return jsonify({**service.get_gist(github(), gist_id), "success": True})


@bp.patch("/gists/<gist_id>")
@json_body(UpdateGistSchema)
@bp.response(200, ChangedGistSchema)
@errors(*GITHUB_ERRORS)
def update_gist(gist_id: str):
    """Update a gist: description and/or files; "content": null deletes a file, "new_filename" renames it."""
    may_write_gists("Editing a gist")
    client = github()
    body = parse_body(UpdateGistSchema)
    gist = service.update_gist(client, gist_id, body, requester("PATCH /gists/{gist_id}"))
    return jsonify({**gist, "success": True})


@bp.delete("/gists/<gist_id>")
@bp.response(200, DeletedGistSchema)
@errors(*GITHUB_ERRORS)
def delete_gist(gist_id: str):
    """Delete a gist."""
    may_write_gists("Deleting a gist")
    return jsonify({**service.delete_gist(github(), gist_id, requester("DELETE /gists/{gist_id}")),
                    "success": True})


@bp.post("/chat/gist")
@json_body(ChatGistSchema)
@bp.response(200, ChatGistResultSchema, description='The gist was updated; with `"stream": true`, an SSE stream.')
@bp.alt_response(201, schema=ChatGistResultSchema, description="The gist was created.", success=True)
@streams(GIST_STREAM, *GIST_EVENTS)
@errors(*GATEWAY_ERRORS, *GITHUB_ERRORS, (502, "The model's action did not validate, twice."))
def chat_gist_view():
    """Let the model create or update a gist from the conversation; SSE with "stream": true."""
    may_write_gists("Writing a gist")
    client = github()
    body = parse_body(ChatGistSchema)
    completion = action_request(body["messages"], max_tokens=body["max_tokens"], temperature=body["temperature"],
                                recent=recent_for_prompt(reader=current_caller().reader))
    routes = honouring_routes(completion, registry().plan(body["provider"]))
    asker = requester("POST /chat/gist")
    if body["stream"]:
        events = stream_chat_gist(client, gateway(), routes, completion, asker)
        return event_stream(events, NativeEvents(error_status=True))
    result = chat_gist(client, gateway(), routes, completion, asker)
    note_answer(result["provider"], result["model"], result["usage"]["total_tokens"])
    response = jsonify({**result, "success": True})
    response.status_code = 201 if result["action"] == "create" else 200
    return response
