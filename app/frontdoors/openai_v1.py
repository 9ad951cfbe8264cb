"""The OpenAI-compatible API: the official openai SDK pointed at `http://host:5001/v1` works unchanged."""
from __future__ import annotations

import base64
import struct
from typing import Any

from flask import jsonify
from flask_smorest import Blueprint

from app.core.caller import current_caller
from app.core.errors import NotFound
from app.core.http import parse_body
from app.core.openapi import errors, json_body, streams
from app.frontdoors.completions import openai_response
from app.llm.providers.base import CompletionRequest
from app.llm.registry import Route
from app.llm.responses import GATEWAY_ERRORS, gateway, note_answer, registry
from app.llm.schemas import (
    OPENAI_EVENTS,
    OPENAI_STREAM,
    OPENAI_STREAM_END,
    ChatCompletionSchema,
    ChatCompletionsSchema,
    EmbeddingListSchema,
    EmbeddingsSchema,
    ModelListSchema,
    ModelSchema,
)

bp = Blueprint("openai_v1", __name__, description="The OpenAI-compatible API (point the openai SDK at /v1).")
PASSED_AS_IS = ("temperature", "top_p", "stop", "json_schema", "tools", "tool_choice", "parallel_tool_calls", "n",
                "seed", "reasoning_effort", "logprobs", "top_logprobs", "presence_penalty", "frequency_penalty",
                "logit_bias", "user", "metadata", "extra")


@bp.post("/v1/chat/completions")
@bp.post("/api/v1/chat/completions")
@json_body(ChatCompletionsSchema)
@bp.response(200, ChatCompletionSchema, description="The completion; with `stream: true`, an SSE stream.")
@streams(OPENAI_STREAM, *OPENAI_EVENTS, end=OPENAI_STREAM_END)
@errors(*GATEWAY_ERRORS)
def chat_completions():
    """OpenAI-compatible chat completions: tools, reasoning, structured output, streaming."""
    body = parse_body(ChatCompletionsSchema)
    current_caller().attribute(user_id=body["user"])  # OpenAI's end-user id, for usage rows
    request = CompletionRequest(messages=body["messages"],
                                max_tokens=body["max_completion_tokens"] or body["max_tokens"],
                                **{name: body[name] for name in PASSED_AS_IS})
    include_usage = bool(body["stream_options"] and body["stream_options"]["include_usage"])
    return openai_response(request, registry().routes_for_model(body["model"]), body["stream"], include_usage)


@bp.post("/v1/embeddings")
@bp.post("/api/v1/embeddings")
@json_body(EmbeddingsSchema)
@bp.response(200, EmbeddingListSchema, description="One embedding per input, in order.")
@errors(*GATEWAY_ERRORS)
def embeddings():
    """OpenAI-compatible embeddings (OpenAI, Gemini, Ollama and compatible providers)."""
    body = parse_body(EmbeddingsSchema)
    provider, model = registry().resolve_embedding_model(body["model"])
    result = gateway().embed(Route(provider, model), body["input"], body["dimensions"])
    note_answer(provider.name, result.model, result.usage.prompt_tokens)
    data = [{"object": "embedding", "index": i, "embedding": encode_vector(vector, body["encoding_format"])}
            for i, vector in enumerate(result.vectors)]
    usage = {"prompt_tokens": result.usage.prompt_tokens, "total_tokens": result.usage.prompt_tokens}
    response = jsonify({"object": "list", "data": data, "model": result.model, "usage": usage})
    response.headers.update({"X-Provider": provider.name, "X-Model": result.model})
    if result.estimated:  # the vendor counted no tokens (Gemini's API): this server's estimate, said so
        response.headers["X-Token-Count"] = "estimate"
    return response


def encode_vector(vector: list[float], encoding_format: str) -> list[float] | str:
    """`base64` is OpenAI's: the little-endian float32 array, base64-encoded."""
    if encoding_format == "float":
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


@bp.get("/v1/models")
@bp.get("/api/v1/models")
@bp.response(200, ModelListSchema)
def list_models():
    """OpenAI-compatible model list: aliases and each configured provider's chat and embedding models."""
    return jsonify({"object": "list", "data": [model_object(*listed) for listed in registry().models()]})


@bp.get("/v1/models/<path:model_id>")
@bp.get("/api/v1/models/<path:model_id>")
@bp.response(200, ModelSchema)
@errors((404, "No such model is served here."), (503, "The model's provider is not configured."))
def retrieve_model(model_id: str):
    """One model (ids may contain `/`); 404 in OpenAI's shape when it is not served here."""
    listed = {model: (owner, mode) for model, owner, mode in registry().models()}
    if model_id in listed:
        return jsonify(model_object(model_id, *listed[model_id]))
    try:
        provider, _ = registry().resolve_embedding_model(model_id)
        mode = "embedding"
    except NotFound:
        provider, _ = registry().resolve_model(model_id)  # a 404 in OpenAI's shape when unknown
        mode = "chat"
    return jsonify(model_object(model_id, provider.name, mode))


def model_object(model: str, owner: str, mode: str) -> dict[str, Any]:
    """OpenAI's model object, plus `mode` ("chat" or "embedding", as LiteLLM's model info says it), so a
    client such as the /ui picker can offer only chat models."""
    return {"id": model, "object": "model", "created": 0, "owned_by": owner, "mode": mode}
