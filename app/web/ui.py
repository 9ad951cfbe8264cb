"""`GET /ui`: the web chat page, and `GET /ui/admin`: the admin page (plain HTML, CSS and JavaScript;
they only call this server's endpoints, with the key typed into them)."""
from __future__ import annotations

from flask import render_template
from flask_smorest import Blueprint

from app.core.openapi import text_answer
from app.core.version import __version__

bp = Blueprint("ui", __name__, description="The web chat page and the admin page.")


@bp.get("/ui")
@bp.get("/ui/")
@text_answer("text/html", "The chat page.")
def chat_page():
    """The web chat: streamed Markdown answers, past chats (search, rename, export), model choice, images, dark mode."""
    return page("chat.html")


@bp.get("/ui/admin")
@text_answer("text/html", "The admin page.")
def admin_page():
    """The admin page (it asks for an admin key): keys (create, revoke, rotate, edit limits), usage and spend
    by key, model and day, budgets, upstream health, and the call log."""
    return page("admin.html")


def page(template: str) -> tuple[str, int, dict[str, str]]:
    """A page with the headers both share: the CSP allows this server's scripts, styles and calls only."""
    return render_template(template, version=__version__), 200, {
        "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}


CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
