"""The models file (`MODELS_FILE`, `models.yaml` beside `.env`): endpoints, the models clients name,
the upstreams that serve each, fallbacks, aliases, prices and per-upstream limits.

    endpoints:                      # an account: a kind, its credentials and address
      openai-a: {kind: openai, api_key: env:OPENAI_KEY_A}
      azure-eu: {kind: azure, base_url: https://eu.openai.azure.com, api_key: env:AZURE_EU_KEY,
                 api_version: "2024-10-21"}
    models:                         # a name clients send, served by one or more upstreams
      gpt-5.4:
        upstreams:
          - {endpoint: openai-a, weight: 2, rpm: 500, tpm: 200000}
          - {endpoint: azure-eu, model: gpt54-prod}      # the Azure deployment's name
        fallbacks: [claude-sonnet-5-5]                    # tried once every upstream has failed
        price: {input: 2.5, output: 10, cached_input: 0.25}   # USD per million tokens
    aliases:
      smart: [claude-sonnet-5-5, gpt-5.4]

Secrets are never written in the file: a secret field (`api_key`, ...) must be `env:NAME`, read from
the environment (or `.env`) when the file is loaded. Every error names the file and line. LiteLLM's
`model_list` and Portkey's targets say the same with more keys; this keeps to what routing needs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import yaml
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from app.core.errors import problems

KINDS = ("openai", "azure", "anthropic", "bedrock", "vertex", "gemini", "ollama", "openai-compatible")
SECRET_FIELDS = ("api_key", "azure_ad_token", "aws_access_key_id", "aws_secret_access_key", "aws_session_token",
                 "access_token")
ENV_PREFIX = "env:"
SNAPSHOT_VARIABLE = "AISERVER_MODELS_SNAPSHOT"  # the copy of the models file the Gunicorn master last found valid


class ModelsFileError(ValueError):
    """A models file that cannot be used; the message names the file and line of each problem."""


class EndpointSchema(Schema):
    class Meta:
        unknown = RAISE

    kind = fields.String(required=True, validate=validate.OneOf(KINDS))
    api_key = fields.String()
    base_url = fields.Url(require_tld=False, schemes={"http", "https"})
    api_version = fields.String()
    azure_ad_token = fields.String()
    region = fields.String()
    aws_access_key_id = fields.String()
    aws_secret_access_key = fields.String()
    aws_session_token = fields.String()
    project = fields.String()
    location = fields.String()
    credentials_file = fields.String()
    access_token = fields.String()
    max_tokens = fields.Integer(validate=validate.Range(min=1))
    responses_api = fields.Boolean(metadata={"description": "Whether an openai, ollama or openai-compatible "
                                                            "endpoint offers /v1/responses (openai: true)."})

    @validates_schema
    def secrets_from_the_environment(self, data: dict[str, Any], **kwargs: Any) -> None:
        for name in SECRET_FIELDS:
            if name in data and not data[name].startswith(ENV_PREFIX):
                raise ValidationError("write the secret as env:VARIABLE, never in the file", name)


class PriceSchema(Schema):
    class Meta:
        unknown = RAISE

    input = fields.Float(required=True, validate=validate.Range(min=0))
    output = fields.Float(required=True, validate=validate.Range(min=0))
    cached_input = fields.Float(validate=validate.Range(min=0))  # a prompt token read from the prompt cache
    cache_write_input = fields.Float(validate=validate.Range(min=0))  # one written to it (Anthropic)
    cache_write_1h_input = fields.Float(validate=validate.Range(min=0))  # one written for an hour


class UpstreamSchema(Schema):
    class Meta:
        unknown = RAISE

    endpoint = fields.String(required=True)
    model = fields.String(validate=validate.Length(min=1))
    weight = fields.Float(load_default=1.0, validate=validate.Range(min=0, min_inclusive=False))
    rpm = fields.Integer(load_default=0, validate=validate.Range(min=0))
    tpm = fields.Integer(load_default=0, validate=validate.Range(min=0))


class UpstreamField(fields.Field):
    """An upstream: a mapping, or just the endpoint's name."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> dict[str, Any]:
        return UpstreamSchema().load({"endpoint": value} if isinstance(value, str) else value)


class ModelSchema(Schema):
    class Meta:
        unknown = RAISE

    upstreams = fields.List(UpstreamField(), required=True, validate=validate.Length(min=1))
    fallbacks = fields.List(fields.String(), load_default=list)
    price = fields.Nested(PriceSchema)


class ModelsFileSchema(Schema):
    class Meta:
        unknown = RAISE

    endpoints = fields.Dict(keys=fields.String(validate=validate.Regexp(r"^[a-z0-9][a-z0-9._-]*$", error=(
        "an endpoint's name is lower-case letters, digits, '.', '_' and '-'"))),
        values=fields.Nested(EndpointSchema), load_default=dict)
    models = fields.Dict(keys=fields.String(validate=validate.Length(min=1)), values=fields.Nested(ModelSchema),
                         load_default=dict)
    aliases = fields.Dict(keys=fields.String(), values=fields.List(fields.String(), validate=validate.Length(min=1)),
                          load_default=dict)

    @validates_schema
    def names_that_exist(self, data: dict[str, Any], **kwargs: Any) -> None:
        errors: dict[str, Any] = {}
        for name, model in data.get("models", {}).items():
            for index, upstream in enumerate(model["upstreams"]):
                if upstream["endpoint"] not in data.get("endpoints", {}):
                    errors.setdefault("models", {}).setdefault(name, {}).setdefault("upstreams", {})[index] = {
                        "endpoint": [f"no endpoint named {upstream['endpoint']!r} under endpoints"]}
        if errors:
            raise ValidationError(errors)


@dataclass(frozen=True)
class Upstream:
    endpoint: str
    model: str
    weight: float = 1.0
    rpm: int = 0
    tpm: int = 0


@dataclass(frozen=True)
class ModelEntry:
    upstreams: tuple[Upstream, ...]
    fallbacks: tuple[str, ...] = ()
    price: dict[str, float] | None = None


@dataclass(frozen=True)
class ModelsFile:
    """A valid models file, its secrets resolved."""

    path: str
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    models: dict[str, ModelEntry] = field(default_factory=dict)
    aliases: dict[str, list[str]] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict, repr=False)  # a dotted path's line, for later errors

    def line_of(self, path: str) -> int:
        """The line of `path` (or of its nearest enclosing entry)."""
        while path and path not in self.lines:
            path = path.rpartition(".")[0]
        return self.lines.get(path, 1)

    def error(self, path: str, message: str) -> ModelsFileError:
        return ModelsFileError(f"{self.path}:{self.line_of(path)}: {path}: {message}")


def load(path: str, environ: Mapping[str, str]) -> ModelsFile:
    """The models file at `path`, validated, with `env:` secrets read from `environ`; `ModelsFileError`
    naming every problem's line."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    return parse(text, path, environ)


def parse(text: str, path: str, environ: Mapping[str, str]) -> ModelsFile:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise ModelsFileError(f"{path}:{line}: not valid YAML: {getattr(error, 'problem', error)}") from None
    lines: dict[str, int] = {}
    raw = to_python(node, "", lines) if node is not None else {}
    if not isinstance(raw, dict):
        raise ModelsFileError(f"{path}:1: the file must be a mapping with endpoints, models and aliases")
    try:
        data = ModelsFileSchema().load(raw)
    except ValidationError as error:
        found = [(where.replace(".value.", ".").removesuffix(".value"), message)
                 for where, message in problems(error.messages)]
        raise ModelsFileError("\n".join(f"{path}:{line_near(lines, where)}: {where}: {message}"
                                        for where, message in found)) from None
    result = ModelsFile(path, lines=lines)
    endpoints = {name: resolve_secrets(result, name, spec, environ) for name, spec in data["endpoints"].items()}
    models = {name: ModelEntry(tuple(Upstream(u["endpoint"], u.get("model") or name, u["weight"], u["rpm"], u["tpm"])
                                     for u in entry["upstreams"]), tuple(entry["fallbacks"]), entry.get("price"))
              for name, entry in data["models"].items()}
    result = ModelsFile(path, endpoints, models, data["aliases"], lines)
    check_names(result)
    return result


def resolve_secrets(models_file: ModelsFile, endpoint: str, spec: dict[str, Any],
                    environ: Mapping[str, str]) -> dict[str, Any]:
    resolved = dict(spec)
    for name in SECRET_FIELDS:
        if name in spec:
            variable = spec[name][len(ENV_PREFIX):]
            if not environ.get(variable):
                raise models_file.error(f"endpoints.{endpoint}.{name}", f"the variable {variable} is not set")
            resolved[name] = environ[variable]
    return resolved


def check_names(models_file: ModelsFile) -> None:
    """Fallbacks and alias targets must be models of the file or names the registry may know
    (`provider/model`); an alias may not shadow a model."""
    for name, entry in models_file.models.items():
        for index, fallback in enumerate(entry.fallbacks):
            if fallback == name:
                raise models_file.error(f"models.{name}.fallbacks.{index}", "a model cannot fall back to itself")
    for alias in models_file.aliases:
        if alias in models_file.models:
            raise models_file.error(f"aliases.{alias}", f"{alias!r} is already a model under models")


def to_python(node: yaml.Node, path: str, lines: dict[str, int]) -> Any:
    """A YAML node as plain Python, recording each dotted path's line (1-based) in `lines`."""
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise ModelsFileError(f"line {key_node.start_mark.line + 1}: a key must be a plain name")
            key = key_node.value
            child = f"{path}.{key}".lstrip(".")
            result[key] = to_python(value_node, child, lines)
            lines[child] = key_node.start_mark.line + 1
        return result
    if isinstance(node, yaml.SequenceNode):
        return [to_python(item, f"{path}.{index}".lstrip("."), lines) for index, item in enumerate(node.value)]
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def line_near(lines: dict[str, int], path: str) -> int:
    while path and path not in lines:
        path = path.rpartition(".")[0]
    return lines.get(path, 1)


def configured(config: Mapping[str, Any], fresh: bool = False) -> ModelsFile | None:
    """The models file in force, if any: the one the Gunicorn master last found valid
    (`AISERVER_MODELS_SNAPSHOT`, see gunicorn.conf.py), else MODELS_FILE; secrets from the environment
    and the settings."""
    path = find(config)
    if path is None:
        return None
    environ = {**os.environ, **{name: value for name, value in config.items() if isinstance(value, str)}}
    snapshot = os.environ.get(SNAPSHOT_VARIABLE)
    if snapshot and os.path.isfile(snapshot) and not fresh:
        with open(snapshot, encoding="utf-8") as handle:
            return parse(handle.read(), path, environ)
    return load(path, environ)


def find(config: Mapping[str, Any]) -> str | None:
    """The models file's path from MODELS_FILE (relative to the project), if that file exists."""
    from app.core.config import project_root

    path = config.get("MODELS_FILE") or ""
    if not path:
        return None
    path = path if os.path.isabs(path) else os.path.join(project_root(), path)
    return path if os.path.isfile(path) else None


def main(argv: list[str]) -> int:
    """`python -m app.llm.modelsfile PATH`: the Gunicorn master's check (the file's text on stdin, so
    what is checked is what becomes the snapshot); exit 1 naming each problem's line."""
    import sys

    from dotenv import dotenv_values

    from app.core.config import project_root

    path = argv[0]
    text = sys.stdin.read()
    dotenv = os.environ.get("DOTENV_PATH") or os.path.join(project_root(), ".env")
    environ = {**{k: v for k, v in dotenv_values(dotenv).items() if v is not None}, **os.environ}
    try:
        checked = parse(text, path, environ)
    except ModelsFileError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"valid: {len(checked.endpoints)} endpoints, {len(checked.models)} models, {len(checked.aliases)} aliases")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
