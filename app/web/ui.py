"""`GET /ui`: the web chat page (plain HTML, CSS and JavaScript; it only calls this server's endpoints)."""
from __future__ import annotations

from flask import render_template
from flask_smorest import Blueprint

from app.core.openapi import text_answer
from app.core.version import __version__

bp = Blueprint("ui", __name__, description="The web chat page.")


@bp.get("/ui")
@bp.get("/ui/")
@text_answer("text/html", "The chat page.")
def chat_page():
    """The web chat: streamed Markdown answers, past chats (search, rename, export), model choice, images, dark mode."""
    response = render_template("chat.html", version=__version__)
    return response, 200, {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                           "Referrer-Policy": "same-origin"}


CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
