"""Benchmarks measured against physical limits on the machine they run on (see bench/README.md)."""
