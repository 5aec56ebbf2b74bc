"""Benchmarks run with `python -m pytest benchmarks --benchmark-enable`; see docs/performance.md and docs/development.md."""
