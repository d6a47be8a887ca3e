"""Benchmark harness: `python -m bench.run` (see bench/results/README.md)."""
