"""`POST /v1/ask`: a question (with optional history) answered in OpenAI's completion shapes."""
from flask import Blueprint

from app.api.common import parse_body, registry
from app.api.completions import openai_response
from app.providers.base import CompletionRequest
from app.openapi import documented
from app.schemas.gateway import AskSchema

bp = Blueprint("ask", __name__)


@bp.post("/v1/ask")
@bp.post("/api/v1/ask")
@documented(body=AskSchema)
def ask():
    """Ask a question (optionally with history); OpenAI chat.completion or chunk stream."""
    body = parse_body(AskSchema)
    messages = [*body["history"], {"role": "user", "content": body["question"]}]
    routes = registry().plan(body["provider"])
    return openai_response(CompletionRequest(messages), routes, stream=body["stream"])
