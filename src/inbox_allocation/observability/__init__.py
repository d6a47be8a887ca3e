"""Operating the service: Prometheus metrics (`metrics`) and request tracing (`tracing`).

Both are cheap on the request path: the request-context middleware records one counter and
one histogram sample per request and binds the trace ids to the log context; everything
expensive (the per-tenant queue query, OTLP export) happens on scrape or in the background.
"""
