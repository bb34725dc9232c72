"""Harnesses that start real processes (dagster-daemon, stand-ins) for tests and benchmarks."""
