"""`GET /` (what this server is and its endpoints), `/openapi.json` and the interactive `/docs`."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, render_template, send_from_directory
from swagger_ui_bundle import swagger_ui_path

from app.core.version import __version__
from app.web.openapi import build_spec

bp = Blueprint("meta", __name__)


@bp.get("/")
def index():
    """Name, version and the list of endpoints."""
    endpoints = sorted({f"{method} {rule.rule}" for rule in current_app.url_map.iter_rules()
                        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
                        if not rule.rule.startswith(("/static", "/docs/"))})
    return jsonify({"name": "aiserver", "version": __version__, "docs": "/docs", "openapi": "/openapi.json",
                    "endpoints": endpoints})


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3 document of this server."""
    spec = current_app.extensions.get("openapi_spec")
    if spec is None:
        spec = current_app.extensions["openapi_spec"] = build_spec(current_app)
    return jsonify(spec)


@bp.get("/docs")
def docs():
    """Interactive API documentation (Swagger UI, served from the swagger-ui-bundle package)."""
    return render_template("docs.html"), 200, DOCS_HEADERS


# Swagger UI sets inline styles and draws icons as data: images; everything else comes from here.
DOCS_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY",
}


@bp.get("/docs/assets/<path:filename>")
def swagger_asset(filename: str):
    return send_from_directory(swagger_ui_path, filename, max_age=86400)
