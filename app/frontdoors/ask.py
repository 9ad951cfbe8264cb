"""`POST /v1/ask`: a question (with optional history) answered in OpenAI's completion shapes."""
from flask_smorest import Blueprint

from app.core.caller import current_caller
from app.core.http import parse_body
from app.core.openapi import errors, json_body, streams
from app.frontdoors.completions import openai_response
from app.llm.providers.base import CompletionRequest
from app.llm.responses import GATEWAY_ERRORS, registry
from app.llm.schemas import OPENAI_EVENTS, OPENAI_STREAM, OPENAI_STREAM_END, AskSchema, ChatCompletionSchema

bp = Blueprint("ask", __name__, description="A question answered in OpenAI's completion shapes.")


@bp.post("/v1/ask")
@bp.post("/api/v1/ask")
@json_body(AskSchema)
@bp.response(200, ChatCompletionSchema, description="The answer; with `stream: true`, an SSE stream.")
@streams(OPENAI_STREAM, *OPENAI_EVENTS, end=OPENAI_STREAM_END)
@errors(*GATEWAY_ERRORS)
def ask():
    """Ask a question (optionally with history); OpenAI chat.completion or chunk stream."""
    body = parse_body(AskSchema)
    current_caller().attribute(body["client_id"], body["user_id"])
    messages = [*body["history"], {"role": "user", "content": body["question"]}]
    routes = registry().plan(body["provider"])
    return openai_response(CompletionRequest(messages), routes, stream=body["stream"])
