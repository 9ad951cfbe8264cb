"""Marshmallow schemas of the request bodies and queries, one module per feature: `gateway` (ask,
chat, the OpenAI-compatible API), `chat` (persisted conversations), `gists` and `deploy`.

What they share lives here: `BaseSchema` (unknown fields are ignored: clients of the older servers
send extra ones, such as `model` to `/chat/{provider}`; known fields are checked strictly) and the
one reader of `data:` URIs (`decode_data_uri`), used for image parts and deployment attachments.
"""
from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime
from typing import Any
from urllib.parse import unquote_to_bytes

from marshmallow import EXCLUDE, Schema, ValidationError, fields

from app.core.clock import parse_iso

DATA_URI = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[\w.+-]+=[^;,]*)*)(?P<b64>;base64)?,"
                      r"(?P<data>.*)$", re.DOTALL)
# The image types every vendor here takes (OpenAI, Anthropic and Gemini alike); an SVG or an HTML page
# given as an "image" is refused before it reaches one.
IMAGE_MEDIA_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")


class BaseSchema(Schema):
    class Meta:
        unknown = EXCLUDE


class StrictBoolean(fields.Boolean):
    """A JSON body's boolean: `true` or `false` only. marshmallow's own also takes `"yes"`, `"on"`, `1`
    and `0`, which the document (`type: boolean`) and every vendor's API refuse; a query string's
    booleans, text by nature, keep `fields.Boolean`."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


def decode_data_uri(uri: str, *, base64_only: bool = False) -> tuple[str, bytes]:
    """(media type, bytes) of a `data:` URI (RFC 2397: `text/plain` when it names no type); ValueError
    saying why when it is not one, or, with `base64_only`, when it is not base64 with a named type."""
    match = DATA_URI.match(uri.strip())
    if not match:
        raise ValueError("not a data: URI")
    if base64_only and not (match["b64"] and match["type"]):
        raise ValueError("not base64 data with a media type")
    media_type = (match["type"] or "text/plain").lower()
    if match["b64"]:
        try:
            return media_type, base64.b64decode(re.sub(r"\s", "", unquote_to_bytes(match["data"]).decode("ascii")),
                                                validate=True)
        except (binascii.Error, UnicodeDecodeError):
            raise ValueError("the base64 data is malformed") from None
    return media_type, unquote_to_bytes(match["data"])


def decode_image_uri(uri: str) -> tuple[str, bytes]:
    """(media type, bytes) of a base64 `data:` URI holding an image of a supported type
    (IMAGE_MEDIA_TYPES); ValueError saying why not otherwise (a `text/html` page is no image)."""
    media_type, data = decode_data_uri(uri, base64_only=True)
    if media_type not in IMAGE_MEDIA_TYPES:
        raise ValueError(f"{media_type} is not an image type accepted here ({', '.join(IMAGE_MEDIA_TYPES)})")
    if not data:
        raise ValueError("it holds no data")
    return media_type, data


def check_image_type(media_type: str) -> str:
    """`media_type` in lower case when it is an accepted image type; ValueError otherwise."""
    if media_type.lower() not in IMAGE_MEDIA_TYPES:
        raise ValueError(f"{media_type} is not an image type accepted here ({', '.join(IMAGE_MEDIA_TYPES)})")
    return media_type.lower()


class Moment(fields.Field):
    """An ISO 8601 time ("2024-05-01", "2024-05-01T12:00:00Z", with any offset), as naive UTC."""

    def _deserialize(self, value: Any, attr, data, **kwargs) -> datetime:
        moment = parse_iso(value)
        if moment is None:
            raise ValidationError("Must be an ISO 8601 time, e.g. 2024-05-01T00:00:00Z.")
        return moment
