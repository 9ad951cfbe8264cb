"""The front doors to the gateway: `/v1/ask`, the OpenAI-compatible `/v1` API."""
