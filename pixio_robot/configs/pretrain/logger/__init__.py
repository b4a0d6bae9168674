"""Hydra config group (package data)."""
