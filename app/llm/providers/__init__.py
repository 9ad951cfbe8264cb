"""LLM providers: one module per vendor SDK behind the interface in `base`, mapped by `registry`."""
