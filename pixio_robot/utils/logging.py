"""Library logging: every module logs to a child of the `pixio_robot` logger and installs no
handler of its own, so records propagate to whatever the application configured: hydra's job
logging for the `python -m pixio_robot.<entry>` apps (console + `<run_dir>/<entry>.log`), pytest's
caplog in tests, `setup_logging()` in the scripts that are not hydra apps. Only rank 0 of a
distributed run logs INFO; the other ranks log warnings and errors (a level, not a handler)."""

from __future__ import annotations

import logging
import os
import sys

ROOT = "pixio_robot"


def get_logger(name: str = ROOT) -> logging.Logger:
    root = logging.getLogger(ROOT)
    if int(os.environ.get("RANK", "0")) != 0 and root.level == logging.NOTSET:
        root.setLevel(logging.WARNING)
    return logging.getLogger(name)


def setup_logging(level: int = logging.INFO) -> None:
    """For scripts that are not hydra apps (benchmarks, small CLIs): INFO records of the library
    to stdout, `[time name] message`. Does nothing when the application already configured the
    root logger."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("[%(asctime)s %(name)s] %(message)s", "%H:%M:%S"))
        root.addHandler(handler)
    if root.level > level or root.level == logging.NOTSET:
        root.setLevel(level)
    if int(os.environ.get("RANK", "0")) == 0 and logging.getLogger(ROOT).level == logging.NOTSET:
        logging.getLogger(ROOT).setLevel(level)
