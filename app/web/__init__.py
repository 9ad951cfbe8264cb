"""The web layer: what wires the features into one Flask app (blueprints, error handlers, request
logging, the OpenAPI document, the index, docs and chat pages)."""
from flask import Flask


def register_blueprints(app: Flask) -> None:
    """Register every feature's blueprint through the one `Api`, which documents each route."""
    from app.calls import views as calls
    from app.conversations import views as conversations
    from app.deployments import views as deployments
    from app.frontdoors import ask, openai_v1
    from app.frontdoors.anthropic import views as anthropic_messages
    from app.frontdoors.responses import views as responses
    from app.gists import views as gists
    from app.keys import views as keys
    from app.ops import metrics
    from app.ops import views as health
    from app.web import meta, ui
    from app.web.openapi import make_api

    api = make_api(app)
    for module in (meta, health, metrics, ask, conversations, openai_v1, responses, anthropic_messages, gists,
                   deployments, keys, calls, ui):
        api.register_blueprint(module.bp)
    app.register_blueprint(meta.assets)
