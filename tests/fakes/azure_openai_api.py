"""Fake of Azure OpenAI's data-plane Chat Completions and Embeddings, as ``openai.AzureOpenAI`` calls it.

With ``azure_endpoint=fake.url`` the pinned SDK (openai 3.54.0, ``lib/azure.py``) sets the base URL to
``{endpoint}/openai`` and, for the deployment endpoints (``/chat/completions``, ``/embeddings``...),
moves the body's ``model`` into the path: ``POST /openai/deployments/{deployment}/chat/completions
?api-version=...``. The key travels in the ``api-key`` header (an Entra ID token as
``Authorization: Bearer``). The newer version-less ``/openai/v1/chat/completions`` (model in the
body) is served too, as Azure does; ``GET /openai/models`` lists the resource's models.

What Azure adds to OpenAI's wire, and clients must tolerate: ``prompt_filter_results`` (top level
of an answer, and alone in a first stream chunk whose ``choices`` is empty, with empty ``id`` and
``model``), ``content_filter_results`` on each choice, the underlying model's name (not the
deployment's) in ``model``, and errors in Azure's own shape (``{"error": {"code": "401", "message"}}``)
for what the gateway in front of the model refuses: a missing or wrong key (401), no
``api-version`` (404 "Resource not found"), an unknown deployment (404 DeploymentNotFound), rate
limits (429 with ``retry-after`` and ``retry-after-ms``).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import replace
from typing import Iterator

from .openai_api import FakeOpenAI
from .server import Frame, Handler, RecordedRequest, Reply, sse

DEPLOYMENT_PATH = re.compile(r"^/openai/deployments/([^/]+)/(chat/completions|embeddings)$")
V1_PATH = re.compile(r"^/openai/v1/(chat/completions|embeddings)$")
API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")
UNAUTHORIZED = ("Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid "
                "key for an active subscription and use a correct regional API endpoint for your resource.")
NO_DEPLOYMENT = ("The API deployment for this resource does not exist. If you created the deployment within the last "
                 "5 minutes, please wait a moment and try again.")
SAFE = {"filtered": False, "severity": "safe"}
CONTENT_FILTER_RESULTS = {"hate": SAFE, "self_harm": SAFE, "sexual": SAFE, "violence": SAFE}
PROMPT_FILTER_RESULTS = [{"prompt_index": 0, "content_filter_results": CONTENT_FILTER_RESULTS}]
AZURE_CODES = {401: "401", 404: "404", 429: "429"}  # statuses the Azure gateway answers in its own shape


class FakeAzureOpenAI(FakeOpenAI):
    """``api_key``: the resource key (``api-key`` header); ``ad_token``: an Entra ID token accepted as a
    bearer instead. ``deployments`` maps deployment names to the model each serves (None: any name
    is a deployment of a model of the same name). Replies set with ``set_model_reply`` are keyed by
    deployment name."""

    base_path = "/openai"

    def __init__(self, *, api_key: str | None = None, ad_token: str | None = None,
                 deployments: dict[str, str] | None = None, **options) -> None:
        super().__init__(api_key=api_key, **options)
        self.ad_token = ad_token
        self.deployments = deployments

    def route(self, handler: Handler, request: RecordedRequest) -> None:
        if request.method == "GET" and request.path in ("/openai/models", "/openai/v1/models"):
            return super().route(handler, replace(request, path="/v1/models"))
        match = DEPLOYMENT_PATH.match(request.path) or V1_PATH.match(request.path)
        if request.method != "POST" or match is None:
            return self.reject(handler, 404, "Resource not found")
        if match.re is DEPLOYMENT_PATH:
            deployment, operation = match.groups()
        else:
            deployment, operation = str(request.json.get("model", "")), match.group(1)
        if self.deployments is not None and deployment not in self.deployments:
            return handler.send_json(404, {"error": {"code": "DeploymentNotFound", "message": NO_DEPLOYMENT}},
                                     self.response_headers())
        model = (self.deployments or {}).get(deployment, deployment)
        body = {**request.json, "model": model}
        if operation == "embeddings":
            return handler.send_json(200, self.embeddings(body), self.response_headers())
        self.serve(handler, replace(request, json=body), deployment, stream=bool(body.get("stream")))

    def auth_error(self, request: RecordedRequest) -> tuple[int, str] | None:
        key = request.headers.get("api-key")
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        if (key is not None and key == self.api_key) or (self.ad_token and bearer == self.ad_token):
            return None
        return 401, UNAUTHORIZED

    def _handle(self, handler: Handler, request: RecordedRequest) -> None:
        """The data plane wants an ``api-version`` (the v1 API alone does without) before anything else."""
        version = request.query.get("api-version")
        if version is None and not request.path.startswith("/openai/v1/"):
            with self._changed:
                self._requests.append(request)
                self._changed.notify_all()
            return handler.send_json(404, {"error": {"code": "404", "message": "Resource not found"}},
                                     self.response_headers())
        if version is not None and not API_VERSION.match(version) and version not in ("latest", "preview"):
            with self._changed:
                self._requests.append(request)
                self._changed.notify_all()
            error = {"code": "BadRequest", "message": "API version not supported"}
            return handler.send_json(400, {"error": error}, self.response_headers())
        super()._handle(handler, request)

    def invalid(self, request: RecordedRequest) -> str | None:
        if DEPLOYMENT_PATH.match(request.path) or V1_PATH.match(request.path):
            return super().invalid(replace(request, path="/v1/chat/completions"))
        return None

    def error_body(self, status: int, message: str, reply: Reply | None = None) -> dict:
        if status in AZURE_CODES:
            return {"error": {"code": AZURE_CODES[status], "message": message}}
        return super().error_body(status, message, reply)

    def response_headers(self) -> dict[str, str]:
        request_id = str(uuid.uuid4())
        return {"apim-request-id": request_id, "x-request-id": request_id, "x-ms-region": "West Europe"}

    def completion(self, reply: Reply, model: str, request: RecordedRequest) -> dict:
        answer = super().completion(reply, self._model_of(reply, request), request)
        for choice in answer["choices"]:
            choice["content_filter_results"] = CONTENT_FILTER_RESULTS
        return {**answer, "prompt_filter_results": PROMPT_FILTER_RESULTS}

    def frames(self, reply: Reply, model: str, request: RecordedRequest) -> Iterator[Frame]:
        """First a chunk with the prompt's filter results and no choices, then OpenAI's chunks, each
        choice with its content filter results once it carries content."""
        yield sse({"choices": [], "created": 0, "id": "", "model": "", "object": "",
                   "prompt_filter_results": PROMPT_FILTER_RESULTS})
        for frame in super().frames(reply, self._model_of(reply, request), request):
            data = frame.data.decode().removeprefix("data: ").strip()
            chunk = json.loads(data) if data.startswith("{") else None
            if not isinstance(chunk, dict) or not any(c.get("delta") for c in chunk.get("choices") or ()):
                yield frame
                continue
            for choice in chunk["choices"]:
                choice["content_filter_results"] = CONTENT_FILTER_RESULTS
            yield sse(chunk, content=frame.content)

    @staticmethod
    def _model_of(reply: Reply, request: RecordedRequest) -> str:
        return reply.model or request.json["model"]
