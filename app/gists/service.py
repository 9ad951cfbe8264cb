"""The gist service: create, update, get, list and delete gists through the GitHub client, and
record every change made through this server (see `app.gists.models`).

Bodies arrive already loaded by `app.gists.schemas` (our list form of `files`); this module turns
them into GitHub's `files` map, shapes GitHub's answers into ours, and writes one `GistRevision`
per change, after GitHub accepted it. A failure to record is logged and reported in the answer
(`"recorded": false`) rather than hiding a change GitHub already made.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from peewee import PeeweeException, fn

from app.core.caller import EVERYONE, owned_by
from app.core.clock import isoformat, parse_iso, utcnow
from app.core.db import database
from app.core.errors import BadRequest, NotFound
from app.core.paging import Keyset, row_id
from app.gists.models import Gist, GistRevision
from app.gists.schemas import GIST_ID
from app.integrations.github.client import GitHubClient

log = logging.getLogger("aiserver.gists")
GISTS_NEWEST_FIRST = Keyset(Gist.id, readers=(row_id,))  # the row id grows with each new record


@dataclass(frozen=True)
class Requester:
    """Who asked for a change and through which endpoint, for the revision row."""

    endpoint: str
    client_id: str | None = None
    client_ip: str | None = None
    owner_key: str | None = None  # the client key; a gist's record belongs to the key that first changed it


# -- GitHub ---------------------------------------------------------------------------------------


def create_gist(github: GitHubClient, body: dict[str, Any], requester: Requester,
                details: dict[str, Any] | None = None) -> dict[str, Any]:
    """Create a gist from a `CreateGistSchema` body; our shape of it, with `recorded`."""
    payload = {"description": body["description"], "public": body["public"],
               "files": {f["filename"]: {"content": f["content"]} for f in body["files"]}}
    gist = github.post("/gists", payload)
    changes = {"added": [f["filename"] for f in body["files"]]}
    return {**present(gist), "recorded": record(gist, "create", requester, changes, details)}


def update_gist(github: GitHubClient, gist_id: str, body: dict[str, Any], requester: Requester,
                details: dict[str, Any] | None = None) -> dict[str, Any]:
    """Apply an `UpdateGistSchema` body to gist `gist_id`; 404 if GitHub has no such gist."""
    path = gist_path(gist_id)
    payload: dict[str, Any] = {"files": {}}
    if body.get("description") is not None:
        payload["description"] = body["description"]
    changes: dict[str, Any] = {"added_or_updated": [], "deleted": [], "renamed": {}}
    for change in body.get("files") or ():
        name = change["filename"]
        if "content" in change and change["content"] is None:
            payload["files"][name] = None
            changes["deleted"].append(name)
            continue
        spec = {key: change[key] for key in ("content",) if key in change}
        if change.get("new_filename"):
            spec["filename"] = change["new_filename"]
            changes["renamed"][name] = change["new_filename"]
        if "content" in change:
            changes["added_or_updated"].append(change.get("new_filename") or name)
        payload["files"][name] = spec
    if "description" in payload:
        changes["description"] = True
    if not payload["files"]:
        del payload["files"]
    gist = github.patch(path, payload)
    changes = {key: value for key, value in changes.items() if value}
    return {**present(gist), "recorded": record(gist, "update", requester, changes, details)}


def get_gist(github: GitHubClient, gist_id: str) -> dict[str, Any]:
    return present(github.get(gist_path(gist_id)))


def delete_gist(github: GitHubClient, gist_id: str, requester: Requester) -> dict[str, Any]:
    github.delete(gist_path(gist_id))
    return {"id": gist_id, "deleted": True, "recorded": record_deletion(gist_id, requester)}


def list_gists(github: GitHubClient, *, page: int = 1, per_page: int = 30, since: datetime | None = None,
               until: datetime | None = None) -> dict[str, Any]:
    """One page of the token owner's gists as GitHub pages them (`since`: updated at or after, passed
    to GitHub); `until` (updated at or before) is applied here to the page GitHub returned, so a page
    may hold fewer than `per_page` gists. `pages` maps GitHub's Link relations to page numbers.
    Times are naive UTC (`app.core.clock.parse_iso`)."""
    params: dict[str, Any] = {"page": page, "per_page": per_page}
    if since is not None:
        params["since"] = isoformat(since, timespec="seconds")
    items, links = github.page("/gists", params)
    gists = [present(g) for g in items if until is None or (parse_iso(g.get("updated_at")) or until) <= until]
    pages = {rel: number for rel, number in ((rel, page_number(url)) for rel, url in links.items()) if number}
    return {"gists": gists, "page": page, "per_page": per_page, "pages": pages}


def gist_path(gist_id: str) -> str:
    """The API path of a gist; the id is checked first, so it can never reach another endpoint."""
    if not GIST_ID.fullmatch(gist_id or ""):
        raise BadRequest(f"'{gist_id[:100]}' is not a gist id (letters and digits only).", code="invalid_gist_id",
                         details={"param": "gist_id"})
    return f"/gists/{gist_id}"


# -- shapes -----------------------------------------------------------------------------------------


def present(gist: dict[str, Any]) -> dict[str, Any]:
    """Our shape of a GitHub gist: `files` is a list; contents only where GitHub sent them."""
    files = []
    for name, file in (gist.get("files") or {}).items():
        entry = {"filename": file.get("filename") or name, "language": file.get("language"),
                 "size": file.get("size"), "raw_url": file.get("raw_url")}
        if "content" in file:
            entry.update(content=file["content"], truncated=bool(file.get("truncated")))
        files.append(entry)
    return {"id": gist.get("id"), "html_url": gist.get("html_url"), "description": gist.get("description") or "",
            "public": bool(gist.get("public")), "owner": owner_login(gist), "files": files,
            "created_at": gist.get("created_at"), "updated_at": gist.get("updated_at")}


def owner_login(gist: dict[str, Any]) -> str:
    owner = gist.get("owner") or {}
    return owner.get("login", "") if isinstance(owner, dict) else ""


def page_number(url: str) -> int | None:
    try:
        return int(parse_qs(urlsplit(url).query).get("page", [""])[0])
    except ValueError:
        return None


# -- the record ---------------------------------------------------------------------------------------


def record(gist: dict[str, Any], action: str, requester: Requester, changes: dict[str, Any],
           details: dict[str, Any] | None = None) -> bool:
    """Upsert the gist's row and add a revision; False (and an error logged) if the database failed."""
    history = gist.get("history") or [{}]
    values = {"owner": owner_login(gist), "description": gist.get("description") or "",
              "public": bool(gist.get("public")), "files": list(gist.get("files") or {}),
              "html_url": gist.get("html_url") or "", "created_at": parse_iso(gist.get("created_at")),
              "updated_at": parse_iso(gist.get("updated_at"))}
    try:
        with database.connection_context(), database.atomic():
            row = upsert(str(gist.get("id")), values, requester.owner_key)
            add_revision(row, action, requester, changes, details, version=history[0].get("version"))
    except (PeeweeException, ValueError):
        log.exception("could not record the %s of gist %s", action, gist.get("id"))
        return False
    log.info("gist %s: %s by %s via %s", gist.get("id"), action, requester.client_id or requester.client_ip,
             requester.endpoint)
    return True


def record_deletion(gist_id: str, requester: Requester) -> bool:
    try:
        with database.connection_context(), database.atomic():
            row = upsert(gist_id, {"deleted_at": utcnow()}, requester.owner_key)
            add_revision(row, "delete", requester, {"deleted": row.files}, None, version=None, files=[])
    except (PeeweeException, ValueError):
        log.exception("could not record the deletion of gist %s", gist_id)
        return False
    log.info("gist %s: delete by %s via %s", gist_id, requester.client_id or requester.client_ip, requester.endpoint)
    return True


def upsert(gist_id: str, values: dict[str, Any], owner_key: str | None = None) -> Gist:
    """The gist's row with `values` written, made if new (owned by `owner_key`): one INSERT ... ON
    CONFLICT, so two first changes of one gist at once both land on the same row instead of one
    failing on `gist_id`."""
    now = utcnow()
    changed = {getattr(Gist, name): value for name, value in values.items()}
    (Gist.insert(gist_id=gist_id, recorded_at=now, changed_at=now, owner_key=owner_key, **values)
     .on_conflict(conflict_target=[Gist.gist_id], update={**changed, Gist.changed_at: now}).execute())
    return Gist.get(Gist.gist_id == gist_id)


def add_revision(row: Gist, action: str, requester: Requester, changes: dict[str, Any],
                 details: dict[str, Any] | None, version: str | None, files: list[str] | None = None) -> None:
    GistRevision.create(gist=row, action=action, endpoint=requester.endpoint, client_id=requester.client_id,
                        client_ip=requester.client_ip, description=row.description,
                        files=row.files if files is None else files, changes=changes, details=details,
                        version=version, created_at=row.changed_at)
    Gist.update(revision_count=Gist.revision_count + 1).where(Gist.id == row.id).execute()


def local_gists(limit: int = 30, cursor: str | None = None, reader: Any = EVERYONE) -> dict[str, Any]:
    """Recorded gists `reader` may see (`app.core.caller`), most recently recorded first, `limit` at a
    time; `next_cursor` continues (keyset on the row id, so rows added meanwhile never shift a page)."""
    query = Gist.select().where(owned_by(Gist.owner_key, reader))
    with database.connection_context():
        rows, next_cursor = Keyset.split(list(GISTS_NEWEST_FIRST.page(query, limit, cursor)), limit,
                                         key=lambda row: (row.id,))
        latest = latest_revisions([row.id for row in rows])
        gists = [local_record(row, latest.get(row.id)) for row in rows]
    return {"gists": gists, "next_cursor": next_cursor, "limit": limit}


def local_gist(gist_id: str, reader: Any = EVERYONE) -> dict[str, Any]:
    """One recorded gist with every revision, oldest first; 404 if this server never changed it or
    `reader` may not see it."""
    with database.connection_context():
        row = Gist.get_or_none((Gist.gist_id == gist_id) & owned_by(Gist.owner_key, reader))
        if row is None:
            raise NotFound(f"No gist {gist_id[:100]} was created or changed through this server.",
                           code="gist_not_recorded")
        revisions = list(GistRevision.select().where(GistRevision.gist == row).order_by(GistRevision.id))
        return {**local_record(row, revisions[-1] if revisions else None),
                "revisions": [revision_dict(r) for r in revisions]}


def latest_revisions(row_ids: list[int]) -> dict[int, GistRevision]:
    if not row_ids:
        return {}
    newest = (GistRevision.select(fn.MAX(GistRevision.id)).where(GistRevision.gist.in_(row_ids))
              .group_by(GistRevision.gist))
    return {r.gist_row_id: r for r in GistRevision.select().where(GistRevision.id.in_(newest))}


def local_record(row: Gist, last: GistRevision | None) -> dict[str, Any]:
    return {"id": row.gist_id, "owner": row.owner, "description": row.description, "public": row.public,
            "files": row.files, "html_url": row.html_url, "created_at": isoformat(row.created_at),
            "updated_at": isoformat(row.updated_at), "deleted_at": isoformat(row.deleted_at),
            "recorded_at": isoformat(row.recorded_at), "changed_at": isoformat(row.changed_at),
            "revision_count": row.revision_count, "last_revision": revision_dict(last) if last else None}


def revision_dict(revision: GistRevision) -> dict[str, Any]:
    return {"action": revision.action, "endpoint": revision.endpoint, "client_id": revision.client_id,
            "client_ip": revision.client_ip, "description": revision.description, "files": revision.files,
            "changes": revision.changes, "details": revision.details, "version": revision.version,
            "at": isoformat(revision.created_at)}


def recent_gists(limit: int = 10, reader: Any = EVERYONE) -> list[dict[str, Any]]:
    """The gists most recently changed here, not deleted, that `reader` may see: id, description, files."""
    with database.connection_context():
        rows = (Gist.select(Gist.gist_id, Gist.description, Gist.files)
                .where(Gist.deleted_at.is_null() & owned_by(Gist.owner_key, reader))
                .order_by(Gist.changed_at.desc(), Gist.id.desc()).limit(limit))
        return [{"id": row.gist_id, "description": row.description, "files": row.files} for row in rows]
