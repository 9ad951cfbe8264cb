"""`flask --app app.wsgi models check`: validate the models file offline, naming each problem's line."""
from __future__ import annotations

import sys

import click
from flask import current_app
from flask.cli import AppGroup

from app.llm import modelsfile
from app.llm.registry import build_registry

models_cli = AppGroup("models", help="The models file: endpoints, models, aliases.")


@models_cli.command("check")
def check() -> None:
    """Validate MODELS_FILE as the server would load it (no network): exit 1 naming each problem's line."""
    config = current_app.config
    path = modelsfile.find(config)
    if path is None:
        click.echo(f"No models file at {config['MODELS_FILE'] or '(MODELS_FILE is empty)'}; routing comes from the "
                   "environment variables alone.")
        return
    try:
        registry = build_registry({**config, "MODELS_FILE": path}, fresh=True)
    except modelsfile.ModelsFileError as error:
        click.echo(str(error), err=True)
        sys.exit(1)
    click.echo(f"{path}: valid: {len(registry.groups)} models, "
               f"{sum(len(group.routes) for group in registry.groups.values())} upstreams, "
               f"{len(registry.model_aliases)} aliases.")
