"""Talking to OpenAI-compatible endpoints: the client (retries, schema re-asks, cache, usage), model
profiles, rate limits, the response cache, token and cost accounting, and the embedded offline provider.

This wing knows nothing of generators, pipelines, judges or evaluation (an import-linter contract)."""
