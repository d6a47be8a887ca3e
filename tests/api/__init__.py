"""The HTTP surface: envelopes, identity and auth modes, idempotency, docs, metrics."""
