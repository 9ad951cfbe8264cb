"""The OpenAI-compatible API: the official openai SDK pointed at `http://host:5001/v1` works unchanged."""
from flask import Blueprint, jsonify

from app.core.caller import current_caller
from app.core.http import json_object, parse_body
from app.core.openapi import documented
from app.frontdoors.completions import openai_response
from app.llm.providers.base import CompletionRequest
from app.llm.responses import registry
from app.llm.schemas import ChatCompletionsSchema

bp = Blueprint("openai_v1", __name__)


@bp.post("/v1/chat/completions")
@bp.post("/api/v1/chat/completions")
@documented(body=ChatCompletionsSchema)
def chat_completions():
    """OpenAI-compatible chat completions (streaming and stream_options.include_usage too)."""
    body = parse_body(ChatCompletionsSchema)
    current_caller().attribute(user_id=json_object().get("user"))  # OpenAI's end-user id, for usage rows
    provider, model = registry().resolve_model(body["model"])
    request = CompletionRequest(messages=body["messages"],
                                max_tokens=body["max_completion_tokens"] or body["max_tokens"],
                                temperature=body["temperature"], top_p=body["top_p"], stop=body["stop"],
                                json_schema=body["json_schema"])
    include_usage = bool(body["stream_options"] and body["stream_options"]["include_usage"])
    return openai_response(request, registry().plan(provider.name, model), body["stream"], include_usage)


@bp.get("/v1/models")
@bp.get("/api/v1/models")
def list_models():
    """OpenAI-compatible model list: aliases and each configured provider's models."""
    data = [{"id": model, "object": "model", "created": 0, "owned_by": owner}
            for model, owner in registry().models()]
    return jsonify({"object": "list", "data": data})
