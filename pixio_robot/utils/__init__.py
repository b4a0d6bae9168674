"""Shared helpers: seeding, atomic file I/O, logging, run directories, distributed."""

from pixio_robot.utils.io import (
    atomic_save_file,
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_text,
    save_json,
)
from pixio_robot.utils.seed import seed_everything

__all__ = [
    "atomic_save_file",
    "atomic_torch_save",
    "atomic_write_bytes",
    "atomic_write_text",
    "save_json",
    "seed_everything",
]
