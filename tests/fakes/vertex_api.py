"""Fake of Google Cloud's Vertex AI for publisher models: Gemini (``publishers/google``), as
google-genai calls it with ``vertexai=True``, and Claude (``publishers/anthropic``), as
``anthropic.AnthropicVertex`` calls it; plus an OAuth token endpoint for service accounts.

Paths, under one project and location (``project``, ``location``):

- Gemini: ``POST /{v1|v1beta1}/projects/{p}/locations/{l}/publishers/google/models/{m}:generateContent``
  and ``:streamGenerateContent?alt=sse`` (google-genai 3.4.0 uses ``v1beta1`` on Vertex unless told
  otherwise, and puts ``projects/{p}/locations/{l}/`` before the model); ``GET /{v}/publishers/google/models``.
  The body and answers are the Gemini API's (the Developer API fake's protocol, reused).
- Claude: ``POST /v1/projects/{p}/locations/{l}/publishers/anthropic/models/{m}:rawPredict`` and
  ``:streamRawPredict`` (the SDK's base URL ends in ``/v1``); the body is Anthropic's Messages body
  without ``model`` and with ``anthropic_version: vertex-2023-10-16`` (Vertex's reference), ``stream``
  kept; answers and stream events are Anthropic's. ``count-tokens:rawPredict`` counts tokens.
- ``POST /token``: Google's OAuth 2.0 token endpoint for a service account's signed JWT
  (``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``); the fake checks the RS256 signature
  with the account's public key, the audience and expiry, and issues an access token. Point a
  service-account file's ``token_uri`` at ``fake.token_uri``.

Every other request needs ``Authorization: Bearer <token>`` with a token the fake issued or was
given (``access_token``); without one it answers Google's 401 UNAUTHENTICATED, and a project or
location other than its own is a 403 PERMISSION_DENIED. Errors are Google's shape
(``{"error": {"code", "message", "status"}}``); Claude's own failures (overloaded, 5xx, 400) keep
Anthropic's shape as Vertex passes them through.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from dataclasses import replace
from typing import Iterable
from urllib.parse import parse_qsl

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from .anthropic_api import FakeAnthropic, counted_tokens
from .gemini_api import FakeGemini
from .server import Frame, Handler, RecordedRequest, Reply

VERTEX_ANTHROPIC_VERSION = "vertex-2023-10-16"
PREDICT = re.compile(r"^/(v1|v1beta1)/projects/([^/]+)/locations/([^/]+)/publishers/(google|anthropic)/models/"
                     r"([^/:]+):(generateContent|streamGenerateContent|rawPredict|streamRawPredict)$")
LIST_MODELS = re.compile(r"^/(v1|v1beta1)/publishers/google/models$")
GEMINI_METHODS = {"generateContent": False, "streamGenerateContent": True}
CLAUDE_METHODS = {"rawPredict": False, "streamRawPredict": True}
UNAUTHENTICATED = ("Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
                   "other valid authentication credential. See "
                   "https://developers.google.com/identity/sign-in/web/devconsole-project.")
# the audience Google's service-account flow documents for the JWT (google-auth sends it whatever token_uri says)
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
GOOGLE_SHAPED = (401, 403, 404, 429)  # what Vertex itself refuses; Claude's other failures pass through


class _ClaudeOnVertex(FakeAnthropic):
    """The Claude protocol of the fake (never started itself): Anthropic's answers and events."""

    def invalid(self, request: RecordedRequest) -> str | None:
        body = request.json
        if body.get("anthropic_version") != VERTEX_ANTHROPIC_VERSION:
            return f"anthropic_version: Input should be '{VERTEX_ANTHROPIC_VERSION}'"
        if "model" in body:
            return "model: Extra inputs are not permitted"
        rest = {key: value for key, value in body.items() if key != "anthropic_version"}
        return super().invalid(replace(request, path="/v1/messages", json={**rest, "model": "m"}))


class FakeVertex(FakeGemini):
    """``access_token``: a bearer token it accepts from the start; ``service_accounts`` maps a service
    account's email to its public key (PEM), whose signed JWTs ``/token`` exchanges for tokens.
    Replies are picked by model name (``set_model_reply("claude-sonnet-5-5@20260101", ...)``)."""

    default_models = ("gemini-2.5-flash", "gemini-2.5-pro")

    def __init__(self, *, project: str = "fake-project", location: str = "us-central1",
                 access_token: str | None = "ya29.fake-static-token", service_accounts: dict[str, bytes] | None = None,
                 **options) -> None:
        super().__init__(**options)
        self.project, self.location = project, location
        self.tokens: set[str] = {access_token} if access_token else set()
        self.service_accounts = dict(service_accounts or {})
        self.issued: list[str] = []  # tokens issued by /token, in order
        self.claude = _ClaudeOnVertex()
        self._current = threading.local()  # the publisher of the request this handler thread serves

    @property
    def token_uri(self) -> str:
        return self.url + "/token"

    # -- routing ------------------------------------------------------------------

    def _handle(self, handler: Handler, request: RecordedRequest) -> None:
        if request.path == "/token":
            with self._changed:
                self._requests.append(request)
                self._changed.notify_all()
            return self._token(handler, request)
        match = PREDICT.match(request.path)
        self._current.publisher = match.group(4) if match else "google"
        bearer = request.headers.get("authorization", "")
        if not bearer.startswith("Bearer ") or bearer.removeprefix("Bearer ") not in self.tokens:
            with self._changed:
                self._requests.append(request)
                self._changed.notify_all()
            return handler.send_json(401, self._google_error(401, UNAUTHENTICATED))
        super()._handle(handler, request)

    def route(self, handler: Handler, request: RecordedRequest) -> None:
        if request.method == "GET" and LIST_MODELS.match(request.path):
            models = [{"name": f"publishers/google/models/{m}", "versionId": "001", "launchStage": "GA"}
                      for m in self.models()]
            return handler.send_json(200, {"publisherModels": models})
        match = PREDICT.match(request.path)
        if match and match.group(4, 5, 6) == ("anthropic", "count-tokens", "rawPredict"):
            return handler.send_json(200, {"input_tokens": counted_tokens(request.json)})
        if request.method != "POST" or match is None:
            return self.reject(handler, 404, f"The requested URL {request.path} was not found on this server.")
        _, project, location, publisher, model, method = match.groups()
        if (project, location) != (self.project, self.location):
            resource = (f"//aiplatform.googleapis.com/projects/{project}/locations/{location}/publishers/{publisher}"
                        f"/models/{model}")
            return self.reject(handler, 403, f"Permission 'aiplatform.endpoints.predict' denied on resource "
                                             f"'{resource}' (or it may not exist).")
        methods = GEMINI_METHODS if publisher == "google" else CLAUDE_METHODS
        if method not in methods:
            return self.reject(handler, 400, f"Method {method} is not supported for {publisher} models.")
        self.serve(handler, request, model, stream=methods[method])

    # -- the protocol of the request being served -----------------------------------

    def _claude_request(self) -> bool:
        return getattr(self._current, "publisher", "google") == "anthropic"

    def invalid(self, request: RecordedRequest) -> str | None:
        match = PREDICT.match(request.path)
        if match is None or match.group(5) == "count-tokens":
            return None  # the count takes the model in the body
        if match.group(4) == "anthropic":
            return self.claude.invalid(request)
        # the Gemini API's own checks, on the Developer API's path for the same model and method
        return super().invalid(replace(request, path=f"/v1beta/models/{match.group(5)}:{match.group(6)}"))

    def error_body(self, status: int, message: str, reply: Reply | None = None) -> dict:
        if self._claude_request() and status not in GOOGLE_SHAPED:
            return self.claude.error_body(status, message, reply)
        return self._google_error(status, message, reply)

    def _google_error(self, status: int, message: str, reply: Reply | None = None) -> dict:
        return super().error_body(status, message, reply)

    def stream_error(self, status: int, message: str) -> Frame:
        if self._claude_request():
            return self.claude.stream_error(status, message)
        return super().stream_error(status, message)

    def completion(self, reply: Reply, model: str, request: RecordedRequest) -> dict:
        if self._claude_request():
            return self.claude.completion(reply, model, request)
        return super().completion(reply, model, request)

    def frames(self, reply: Reply, model: str, request: RecordedRequest) -> Iterable[Frame]:
        if self._claude_request():
            return self.claude.frames(reply, model, request)
        return super().frames(reply, model, request)

    def last_user_text(self, request: RecordedRequest) -> str:
        return self.claude.last_user_text(request) if self._claude_request() else super().last_user_text(request)

    def offered_tools(self, request: RecordedRequest) -> list[tuple[str, dict]]:
        return self.claude.offered_tools(request) if self._claude_request() else super().offered_tools(request)

    def tool_result(self, request: RecordedRequest) -> str | None:
        return self.claude.tool_result(request) if self._claude_request() else super().tool_result(request)

    def retry_headers(self, reply: Reply) -> dict[str, str]:
        return {}  # Vertex tells the delay in the body (RetryInfo), not in headers

    # -- OAuth 2.0 token endpoint ---------------------------------------------------

    def _token(self, handler: Handler, request: RecordedRequest) -> None:
        form = dict(parse_qsl(request.body.decode()))
        if form.get("grant_type") != JWT_BEARER:
            error = {"error": "unsupported_grant_type", "error_description": "Invalid grant_type."}
            return handler.send_json(400, error)
        problem = self._jwt_problem(form.get("assertion", ""))
        if problem:
            return handler.send_json(400, {"error": "invalid_grant", "error_description": problem})
        token = f"ya29.fake-{uuid.uuid4().hex}"
        with self._lock:
            self.tokens.add(token)
            self.issued.append(token)
        handler.send_json(200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    def _jwt_problem(self, assertion: str) -> str | None:
        """Why Google would refuse this service account's JWT, or None when it is good."""
        try:
            header_b64, claims_b64, signature_b64 = assertion.split(".")
            header, claims = json.loads(_unb64(header_b64)), json.loads(_unb64(claims_b64))
        except ValueError:
            return "Invalid JWT: malformed."
        key_pem = self.service_accounts.get(claims.get("iss", ""))
        if header.get("alg") != "RS256" or key_pem is None:
            return "Invalid JWT Signature."
        public_key = serialization.load_pem_public_key(key_pem)
        try:
            public_key.verify(_unb64(signature_b64), f"{header_b64}.{claims_b64}".encode(),  # type: ignore[union-attr, call-arg]
                              padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return "Invalid JWT Signature."
        if claims.get("aud") not in (GOOGLE_TOKEN_AUDIENCE, self.token_uri):
            return "Invalid JWT: Failed audience check."
        if not claims.get("exp", 0) > time.time() >= claims.get("iat", 0) - 60:
            return "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe."
        if CLOUD_PLATFORM not in str(claims.get("scope", "")).split():
            return "Invalid OAuth scope or ID token audience provided."
        return None


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

