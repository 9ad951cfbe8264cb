"""Anthropic's Messages API (`POST /v1/messages`, also under `/anthropic`), over every provider."""
