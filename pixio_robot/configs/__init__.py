"""Hydra configs shipped as package data; one config root per entry point."""
