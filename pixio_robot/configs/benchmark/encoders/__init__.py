"""Encoder sets compared by a benchmark."""
