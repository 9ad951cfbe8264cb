"""Blueprints: thin views that parse with a schema, call a service and shape the answer."""
from flask import Flask


def register_blueprints(app: Flask) -> None:
    from app.api import ask, chat, deploy, gists, health, meta, metrics, openai_v1, ui

    for module in (meta, health, metrics, ask, chat, openai_v1, gists, deploy, ui):
        app.register_blueprint(module.bp)
