"""Benchmark suites (tasks, demos, protocol, evaluation)."""
