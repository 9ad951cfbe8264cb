"""OpenAI's Responses API (`POST /v1/responses`), over every provider."""
