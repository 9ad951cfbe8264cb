"""Fake of the Gemini Developer API, as google-genai calls it.

google-genai joins ``base_url``, ``api_version`` and ``models/{model}:{method}``, so
with ``HttpOptions(base_url=fake.url, api_version="v1beta")`` requests arrive at
``/v1beta/models/gemini-2.5-flash:generateContent``. Streams are requested with
``?alt=sse`` and parsed line by line: only ``data: `` lines count (with the space).

Tool calls are ``functionCall`` parts (no ids; a stream sends each call whole, parallel calls as
parts of one response); Gemini 3 models attach a ``thoughtSignature`` to the first call of a turn
and, like the real API, refuse a later request whose history drops it or alters it, while taking
the dummy signature Google documents for calls Gemini did not make (``DUMMY_SIGNATURE``). Thought summaries are
``thought: true`` text parts, sent only when ``thinkingConfig.includeThoughts`` asks for them.
Embeddings answer ``:batchEmbedContents``.

``generationConfig.candidateCount`` (N, default 1) asks for N candidates, each under its ``index``:
candidate ``i`` of several says the reply's text followed by `` (i)``, in a whole answer and in a
stream (each streamed response carries every candidate's next piece; the last each one's
``finishReason``), and ``usageMetadata`` counts all of them together. As Google documents, the
count must be 1 to 8, and models without multiple candidates refuse more than one (Gemini 1.0, and
the Gemini 3 models, which answer 400 "Multiple candidates is not enabled for this model").

Implicit caching, as Google documents it for Gemini 2.5: a prompt of MIN_CACHED_PREFIX tokens or more
(one per four characters of its JSON: system instruction, tools, then the contents) is cached by its
prefixes at each content, and a later prompt that starts with one reads it: ``usageMetadata``
gets ``cachedContentTokenCount`` (left out when 0, as Google leaves out zero counts), which
``promptTokenCount``, then the whole prompt, includes.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from typing import Any, Iterator

from .server import FakeServer, Frame, Handler, RecordedRequest, Reply, embedding, sse, text_of

FINISH_REASONS = {"stop": "STOP", "length": "MAX_TOKENS"}
STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
GENERATE = re.compile(r"^/(?:v1|v1beta|v1alpha)/models/([^/:]+):(generateContent|streamGenerateContent)$")
EMBED = re.compile(r"^/(?:v1|v1beta|v1alpha)/models/([^/:]+):batchEmbedContents$")
EMBEDDING_DIMENSIONS = 8
SIGNATURE = base64.b64encode(b"fake-thought-signature").decode()
DUMMY_SIGNATURE = "skip_thought_signature_validator"  # the value Google documents for calls it did not make
MAX_CANDIDATES = 8
SINGLE_CANDIDATE_MODELS = ("gemini-1.0", "gemini-pro", "gemini-3")  # refuse candidateCount > 1
LIST_MODELS = re.compile(r"^/(?:v1|v1beta|v1alpha)/models$")


class FakeGemini(FakeServer):
    default_models = ("gemini-2.5-flash", "gemini-2.5-pro")

    def route(self, handler: Handler, request: RecordedRequest) -> None:
        generate = GENERATE.match(request.path)
        if request.method == "POST" and generate:
            model, method = generate.groups()
            self.serve(handler, request, model, stream=method == "streamGenerateContent")
        elif request.method == "POST" and EMBED.match(request.path):
            handler.send_json(200, _embeddings(request.json))
        elif request.method == "GET" and LIST_MODELS.match(request.path):
            handler.send_json(200, {"models": [_model_info(model) for model in self.models()]})
        else:
            self.reject(handler, 404, f"The requested URL {request.path} was not found on this server.")

    def auth_error(self, request: RecordedRequest) -> tuple[int, str] | None:
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        if key is None:
            return 403, "Method doesn't allow unregistered callers. Please use API Key or other form of API consumer."
        return None if key == self.api_key else (400, "API key not valid. Please pass a valid API key.")

    def error_body(self, status: int, message: str, reply: Reply | None = None) -> dict:
        error = {"code": status, "message": message, "status": STATUSES.get(status, "UNKNOWN")}
        if reply is not None and reply.retry_after is not None:
            # The real API tells the delay in the body rather than in headers.
            retry_info = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{reply.retry_after:g}s"}
            error["details"] = [retry_info]
        return {"error": error}

    def stream_error(self, status: int, message: str) -> Frame:
        """Google's error object as one more event of the stream (google-genai raises it as APIError)."""
        return sse(self.error_body(status, message), eol="\r\n")

    def invalid(self, request: RecordedRequest) -> str | None:
        generate = GENERATE.match(request.path)
        if not generate:
            return None
        count = _candidate_count(request)
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_CANDIDATES:
            return (f"* GenerateContentRequest.generation_config.candidate_count: must be between 1 and "
                    f"{MAX_CANDIDATES}, got {count!r}.")
        if count > 1 and generate.group(1).startswith(SINGLE_CANDIDATE_MODELS):
            return "Multiple candidates is not enabled for this model"
        for content in request.json.get("contents") or ():
            for part in content.get("parts") or ():
                if "functionResponse" in part and not (part["functionResponse"] or {}).get("name"):
                    return "* GenerateContentRequest.contents: function_response.name: Name cannot be empty."
            calls = [part for part in content.get("parts") or () if "functionCall" in part]
            if generate.group(1).startswith("gemini-3") and calls and "thoughtSignature" not in calls[0]:
                return ("Function call is missing a thought_signature in functionCall parts. This is required for "
                        "tools to work correctly, and missing thought_signature may lead to degraded model "
                        "performance. Additional data, function call `default_api:"
                        f"{calls[0]['functionCall'].get('name')}` , position 1.")
            signed = [part["thoughtSignature"] for part in content.get("parts") or () if "thoughtSignature" in part]
            if any(signature not in (SIGNATURE, DUMMY_SIGNATURE) for signature in signed):
                return "Corrupted thought signature."
        return None

    def retry_headers(self, reply: Reply) -> dict[str, str]:
        return {} if reply.retry_after is None else {"Retry-After": f"{reply.retry_after:g}"}

    def last_user_text(self, request: RecordedRequest) -> str:
        contents = [c for c in request.json.get("contents", []) if isinstance(c, dict)]
        users = [c for c in contents if c.get("role", "user") == "user"]
        return text_of(users[-1].get("parts")) if users else ""

    def offered_tools(self, request: RecordedRequest) -> list[tuple[str, dict]]:
        # proto JSON field names are read in either case; google-genai sends this one in snake case
        schema_keys = ("parametersJsonSchema", "parameters_json_schema", "parameters")
        return [(d["name"], next((d[key] for key in schema_keys if d.get(key)), {}))
                for tool in request.json.get("tools") or () for d in tool.get("functionDeclarations") or ()]

    def tool_result(self, request: RecordedRequest) -> str | None:
        parts = ((request.json.get("contents") or [{}])[-1]).get("parts") or ()
        results = [p["functionResponse"].get("response") for p in parts if "functionResponse" in p]
        return " ".join(json.dumps(r) for r in results) if results else None

    def completion(self, reply: Reply, model: str, request: RecordedRequest) -> dict:
        count = _candidate_count(request)
        candidates = []
        for index in range(count):
            text = reply.full_text + (f" ({index})" if count > 1 else "")
            candidates.append(_thoughts(reply, request) + ([{"text": text}] if reply.full_text or not reply.tool_calls
                                                           else []) + _function_calls(reply, request, model))
        return _response(model, candidates, reply, response_id=_response_id(), final=True,
                         counts=self.prompt_counts(reply, request))

    def prompt_counts(self, reply: Reply, request: RecordedRequest) -> tuple[int, int]:
        """(prompt tokens, cached tokens) of the request, reading and filling this fake's prompt cache."""
        body = request.json
        head, contents = [body.get("systemInstruction"), body.get("tools")], list(body.get("contents") or ())
        prefixes = [[*head, contents[:end]] for end in range(1, len(contents) + 1)]
        return self.prompt_cache.automatic(reply, prefixes)

    def frames(self, reply: Reply, model: str, request: RecordedRequest) -> Iterator[Frame]:
        """Thoughts, one response per piece, then the function calls; the last carries finishReason
        and usageMetadata. With several candidates, each response carries every candidate's part."""
        response_id, count = _response_id(), _candidate_count(request)
        counts = self.prompt_counts(reply, request)
        batches = [[thought] for thought in _thoughts(reply, request)]
        pieces = reply.pieces() or ([] if reply.tool_calls else [""])
        batches += [[{"text": piece}] for piece in pieces + ([" (i)"] if count > 1 and pieces else [])]
        calls = _function_calls(reply, request, model)
        if calls:
            batches.append(calls)
        for number, parts in enumerate(batches):
            candidates = [[{**part, "text": part["text"].replace("(i)", f"({index})")} if "text" in part else part
                           for part in parts] for index in range(count)]
            response = _response(model, candidates, reply, response_id=response_id, final=number == len(batches) - 1,
                                 counts=counts)
            yield sse(response, content=True, eol="\r\n")


def _thoughts(reply: Reply, request: RecordedRequest) -> list[dict]:
    """Thought summaries, when asked for (the API reads proto field names in either case, and
    google-genai sends this one's in snake case)."""
    thinking = (request.json.get("generationConfig") or {}).get("thinkingConfig") or {}
    asked = thinking.get("includeThoughts", thinking.get("include_thoughts"))
    return [{"text": reply.reasoning, "thought": True}] if reply.reasoning and asked else []


def _function_calls(reply: Reply, request: RecordedRequest, model: str) -> list[dict]:
    tools = request.json.get("tools") or ()
    declared = [d.get("name") for tool in tools for d in tool.get("functionDeclarations") or ()]
    parts = [{"functionCall": {"name": name, "args": json.loads(args)}} for name, args in reply.calls(declared)]
    if parts and model.startswith("gemini-3"):
        parts[0]["thoughtSignature"] = SIGNATURE
    return parts


def _candidate_count(request: RecordedRequest) -> Any:
    """``generationConfig.candidateCount`` as sent (either case), 1 when absent."""
    config = request.json.get("generationConfig") or {}
    count = config.get("candidateCount", config.get("candidate_count"))
    return 1 if count is None else count


def _response(model: str, candidates_parts: list[list[dict]], reply: Reply, *, response_id: str, final: bool,
              counts: tuple[int, int]) -> dict:
    """One response with a candidate per list of parts (``index`` in order); the final one says each
    candidate's finishReason and the usage of them all, ``counts`` its (prompt, cached) tokens."""
    candidates = [{"content": {"role": "model", "parts": parts}, "index": index}
                  for index, parts in enumerate(candidates_parts)]
    response: dict = {"candidates": candidates, "modelVersion": model, "responseId": response_id}
    if final:
        for candidate in candidates:
            candidate["finishReason"] = FINISH_REASONS.get(reply.finish_reason, reply.finish_reason)
        thoughts = len(reply.reasoning.split()) * len(candidates) if reply.reasoning else 0
        output = reply.output_tokens * len(candidates)
        prompt, cached = counts
        response["usageMetadata"] = {
            "promptTokenCount": prompt,
            "candidatesTokenCount": output,
            "totalTokenCount": prompt + output + thoughts,
            **({"thoughtsTokenCount": thoughts} if thoughts else {}),
            **({"cachedContentTokenCount": cached} if cached else {}),
        }
    return response


def _embeddings(body: dict) -> dict:
    vectors = []
    for request in body.get("requests") or ():
        config = request.get("embedContentConfig") or {}
        dimensions = request.get("outputDimensionality") or config.get("outputDimensionality") or EMBEDDING_DIMENSIONS
        vectors.append({"values": embedding(text_of(request["content"].get("parts")), dimensions)})
    return {"embeddings": vectors}


def _response_id() -> str:
    return uuid.uuid4().hex[:22]


def _model_info(model: str) -> dict:
    return {
        "name": f"models/{model}",
        "version": "001",
        "displayName": model.replace("-", " ").title(),
        "inputTokenLimit": 1048576,
        "outputTokenLimit": 65536,
        "supportedGenerationMethods": ["generateContent", "countTokens"],
    }
