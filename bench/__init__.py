"""Benchmarks of resourced (`make bench`): see bench/README.md and docs/benchmarks.md."""
