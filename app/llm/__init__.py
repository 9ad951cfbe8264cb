"""The LLM gateway: one module per provider SDK, the registry of routes, the retry and fallback policy, streaming."""
