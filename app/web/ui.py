"""`GET /ui`: the web chat page (plain HTML, CSS and JavaScript; it only calls this server's endpoints)."""
from __future__ import annotations

from flask import Blueprint, render_template

from app.core.version import __version__

bp = Blueprint("ui", __name__)


@bp.get("/ui")
@bp.get("/ui/")
def chat_page():
    """The web chat: streamed Markdown answers, past chats (search, rename, export), model choice, images, dark mode."""
    response = render_template("chat.html", version=__version__)
    return response, 200, {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                           "Referrer-Policy": "same-origin"}


CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
