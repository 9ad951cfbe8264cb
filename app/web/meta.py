"""`GET /` (what this server is and every endpoint), `/openapi.json`, and its two readers: the
interactive `/docs` (Swagger UI, from the swagger-ui-bundle package) and the `/redoc` reference (a
vendored ReDoc bundle under static/vendor/redoc). Nothing is fetched from a CDN."""
from __future__ import annotations

from typing import Any

from flask import Blueprint as AssetsBlueprint
from flask import jsonify, render_template, send_from_directory
from flask_smorest import Blueprint, current_api
from marshmallow import Schema, fields
from swagger_ui_bundle import swagger_ui_path

from app.core.openapi import text_answer
from app.core.version import __version__

bp = Blueprint("meta", __name__, description="What this server is, and its API documentation.")
assets = AssetsBlueprint("docs_assets", __name__)

REDOC_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
             "font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; base-uri 'none'; "
             "form-action 'none'; frame-ancestors 'none'")
"""ReDoc inlines its styles and runs its search in a blob: worker; nothing may load from elsewhere
(its sidebar would otherwise fetch the Redocly logo from a CDN)."""


class EndpointSchema(Schema):
    path = fields.String(required=True, metadata={"description": "OpenAPI path template, e.g. /chat/{provider}."})
    method = fields.String(required=True, metadata={"example": "POST"})
    description = fields.String(required=True, metadata={"description": "What it does, in one line."})


class IndexSchema(Schema):
    name = fields.String(required=True)
    version = fields.String(required=True)
    docs = fields.String(required=True, metadata={"description": "Swagger UI."})
    redoc = fields.String(required=True, metadata={"description": "ReDoc reference."})
    openapi = fields.String(required=True, metadata={"description": "The OpenAPI 3 document."})
    endpoints = fields.List(fields.Nested(EndpointSchema), required=True,
                            metadata={"description": "Every endpoint, sorted by path then method."})


@bp.get("/")
@bp.response(200, IndexSchema)
def index():
    """Name, version, documentation links and every endpoint with what it does."""
    return jsonify({"name": "aiserver", "version": __version__, "docs": "/docs", "redoc": "/redoc",
                    "openapi": "/openapi.json", "endpoints": endpoints(spec())})


def endpoints(document: dict[str, Any]) -> list[dict[str, str]]:
    """`{"path", "method", "description"}` of every operation in the OpenAPI document, sorted."""
    return [{"path": path, "method": method.upper(), "description": operation.get("summary", "")}
            for path, item in sorted(document["paths"].items())
            for method, operation in sorted(item.items()) if method != "parameters"]


@bp.get("/openapi.json")
@bp.response(200, {"type": "object"}, description="The OpenAPI 3 document.")
def openapi():
    """The OpenAPI 3 document of this server: every route, its body, answers and errors."""
    return jsonify(spec())


def spec() -> dict[str, Any]:
    return current_api.document()


@bp.get("/docs")
@text_answer("text/html", "The Swagger UI page.")
def docs():
    """Interactive API documentation (Swagger UI): try any endpoint from the browser."""
    return render_template("docs.html"), 200, DOCS_HEADERS


# Swagger UI sets inline styles and draws icons as data: images; everything else comes from here.
DOCS_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY",
}


@bp.get("/redoc")
@text_answer("text/html", "The ReDoc page.")
def redoc():
    """API reference (ReDoc): every endpoint, body, answer and error status on one page."""
    return render_template("redoc.html"), 200, {"Content-Security-Policy": REDOC_CSP,
                                                "X-Content-Type-Options": "nosniff"}


@assets.get("/docs/assets/<path:filename>")
def swagger_asset(filename: str):
    return send_from_directory(swagger_ui_path, filename, max_age=86400)
