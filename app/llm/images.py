"""Bounds on the images of one request, whichever front door it came through.

An image part is a base64 `data:` URI (its bytes are in the body, so MAX_BODY_BYTES bounds them) or an
http(s) URL, which a vendor that takes URLs fetches itself and which this server fetches, through the
SSRF guard, for a vendor that needs the bytes (Gemini). Without bounds one 6 kB request of 60 URLs of
9 MB each grew a worker by 2.6 GB, and a request retried on a failing Gemini fetched its image once
per attempt. So:

- `check_image_parts`: at most IMAGE_MAX_PARTS image parts per request, counted by the gateway before
  anything is fetched or sent (a 400 `too_many_images`);
- `ImageFetcher`: each URL fetched once per request (kept in the request's `FetchedImages` for every
  retry and fallback), each image at most IMAGE_FETCH_MAX_BYTES and all of them together at most
  IMAGE_FETCH_TOTAL_BYTES (a 413 `images_too_large`), each fetch within IMAGE_FETCH_TIMEOUT_S overall.
"""
from __future__ import annotations

from typing import Any, Callable

from app.core.errors import BadRequest, PayloadTooLarge
from app.llm.providers.base import CompletionRequest, FetchedImages

Fetch = Callable[[str, int], tuple[str, bytes]]  # (url, max_bytes) -> (media type, bytes)


def image_parts(messages: list[dict[str, Any]]) -> int:
    """How many image parts the messages hold."""
    return sum(1 for message in messages if isinstance(message.get("content"), list)
               for part in message["content"] if part.get("type") == "image")


def check_image_parts(request: CompletionRequest, max_parts: int) -> None:
    """400 `too_many_images` when the request holds more than `max_parts` images."""
    count = image_parts(request.messages)
    if count > max_parts:
        raise BadRequest(f"The request holds {count} images; at most {max_parts} images are accepted per request "
                         "(IMAGE_MAX_PARTS).", code="too_many_images", details={"param": "messages"})


class ImageFetcher:
    """Fetches an image URL for a provider that needs the bytes, at most once per request, within the
    request's byte budget. `fetch(url, max_bytes)` does the download (the SSRF guard's `fetch_image`)."""

    def __init__(self, fetch: Fetch, max_bytes: int, total_bytes: int):
        self.fetch = fetch
        self.max_bytes = max_bytes
        self.total_bytes = total_bytes

    def __call__(self, url: str, fetched: FetchedImages) -> tuple[str, bytes]:
        if url in fetched.by_url:
            return fetched.by_url[url]
        left = self.total_bytes - fetched.total
        if left <= 0:
            raise self.too_large()
        try:
            media_type, data = self.fetch(url, min(self.max_bytes, left))
        except BadRequest as error:
            if error.code == "download_too_large" and left < self.max_bytes:
                raise self.too_large() from None
            raise
        fetched.by_url[url] = (media_type, data)
        fetched.total += len(data)
        return media_type, data

    def too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"The request's image URLs add up to more than {self.total_bytes} bytes, the most "
                               "fetched for one request (IMAGE_FETCH_TOTAL_BYTES).", code="images_too_large",
                               details={"param": "messages"})
