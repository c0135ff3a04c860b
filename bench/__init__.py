"""Benchmarks behind `make bench` (issue 8). Not tests: they print and record, never fail on a number."""
