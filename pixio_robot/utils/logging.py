"""Rank-aware logging: only rank 0 prints INFO; other ranks print warnings and errors."""

from __future__ import annotations

import logging
import os
import sys


def get_logger(name: str = "pixio_robot") -> logging.Logger:
    logger = logging.getLogger(name)
    root = logging.getLogger("pixio_robot")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("[%(asctime)s %(name)s] %(message)s", "%H:%M:%S"))
        root.addHandler(handler)
        rank = int(os.environ.get("RANK", "0"))
        root.setLevel(logging.INFO if rank == 0 else logging.WARNING)
        root.propagate = False
    return logger
