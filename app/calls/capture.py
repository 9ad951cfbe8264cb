"""The request hooks that open a front door's call and close it when its response is closed (for a
stream, after its last byte), with who asked, what was asked for and what was answered; and, when
LOG_PAYLOADS keeps them, the request's body and the answer's bytes (a stream's events as sent, up to
a little past LOG_PAYLOADS_MAX_BYTES: the writer redacts, then cuts)."""
from __future__ import annotations

from typing import Any, Iterable, Iterator

from flask import Flask, Response, g, request

from app.calls.service import CallInProgress, CallLog, front_door_of
from app.core.caller import calling_key
from app.core.credentials import redact_tokens

MARGIN = 4096  # bytes kept past the cap, so a secret cut at the cap is still whole when it is redacted


def init_capture(app: Flask, calls: CallLog) -> None:
    """Register the hooks; after the authentication hook and the limits, so a request they refuse (401,
    403, an rpm 429) is not a call: it never reached the front door."""

    @app.before_request
    def open_call() -> None:
        rule = request.url_rule.rule if request.url_rule is not None and request.method == "POST" else None
        g.call = calls.begin(front_door_of(rule))

    @app.after_request
    def close_call(response: Response) -> Response:
        call: CallInProgress | None = g.pop("call", None)
        calls.end()
        if call is None:
            return response
        body = request_json()
        streamed = response.mimetype == "text/event-stream"
        call.answered(response.status_code, error_type_of(response), streamed, who_asked(body))
        if calls.payloads != "off":
            call.request_body = request.get_data(cache=True) if response.status_code != 408 else None
            if streamed:
                response.response = Tee(response.response, calls.max_bytes + MARGIN, call)
            else:
                call.response_body = response.get_data()
        response.call_on_close(lambda: calls.finish(call))
        return response


def request_json() -> Any:
    """The request's JSON body as its view read it (None if it was not JSON or did not arrive)."""
    try:
        return request.get_json(silent=True)
    except Exception:  # the body did not arrive in time: the 408 is the call's answer
        return None


def who_asked(body: Any) -> dict[str, Any]:
    caller = calling_key()
    key = caller.key if caller is not None else None
    model = body.get("model") if isinstance(body, dict) else None
    return {"key_id": caller and caller.key_id, "key_name": key.name if key is not None else None,
            "client_id": caller and caller.client_id, "user_id": caller and caller.user_id,
            "request_id": (caller and caller.request_id) or g.get("request_id"),
            "requested_model": redact_tokens(model)[:200] if isinstance(model, str) and model else None}


def error_type_of(response: Response) -> str | None:
    """An error answer's code (`model_not_allowed`, `upstream_error`...), from whichever of the three
    error shapes it was sent in (ours and OpenAI's `error.code`, Anthropic's `error.type`)."""
    if response.status_code < 400 or response.is_streamed:
        return None
    body = response.get_json(silent=True)
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "error"
    found = error.get("code") or error.get("type") or "error"
    return str(found)[:64]


class Tee:
    """A streamed body passed on unchanged, its first `limit` bytes kept as the call's answer payload."""

    def __init__(self, chunks: Iterable[Any], limit: int, call: CallInProgress):
        self.chunks, self.limit, self.call = chunks, limit, call
        self.kept = bytearray()

    def __iter__(self) -> Iterator[Any]:
        try:
            for chunk in self.chunks:
                if len(self.kept) < self.limit:
                    data = chunk.encode() if isinstance(chunk, str) else bytes(chunk)
                    self.kept += data[:self.limit - len(self.kept)]
                yield chunk
        finally:
            self.call.response_body = bytes(self.kept)

    def close(self) -> None:
        self.call.response_body = bytes(self.kept)
        close = getattr(self.chunks, "close", None)
        if close is not None:
            close()
