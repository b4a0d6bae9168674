"""Atomic file writes: temporary file in the same directory, fsync, os.replace.

A plain write to the final path leaves a corrupt file when the process is killed mid-write;
these helpers leave either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success fsync it and rename it onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        default_mode(tmp)  # mkstemp (and safetensors' own writer) make 0600
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        with contextlib.suppress(OSError):  # persist the rename itself
            dfd = os.open(path.parent, os.O_RDONLY)
            os.fsync(dfd)
            os.close(dfd)
    finally:
        if tmp.exists():
            tmp.unlink()


_UMASK = os.umask(0)  # read once, at import (setting it briefly to 0 later could race other threads)
os.umask(_UMASK)


def default_mode(path: str | os.PathLike) -> None:
    """Give a finished file the mode the umask allows (0644 usually): others on a shared cluster
    can read the run's checkpoints."""
    os.chmod(path, 0o666 & ~_UMASK)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def save_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=False, default=str) + "\n")


def atomic_save_file(path: str | os.PathLike, writer: Callable[[str], None]) -> None:
    """Run `writer(tmp_path)` (e.g. ``lambda p: safetensors.torch.save_file(sd, p)``) atomically."""
    with atomic_path(path) as tmp:
        writer(str(tmp))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def torch_load_reason(e: BaseException) -> str:
    """Why `torch.load(weights_only=True)` failed, in one clause, without torch's advice to retry with
    `weights_only=False` (which would run arbitrary code from the file)."""
    import re

    msg = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    if "Weights only load failed" in msg:
        m = re.search(r"WeightsUnpickler error: Unsupported global: GLOBAL (\S+)", msg)
        what = f" (the global {m.group(1)})" if m else ""
        return f"it holds pickled Python objects beyond tensors{what}, which are not loaded, for safety"
    if "central directory" in msg or "failed reading zip archive" in msg or isinstance(e, EOFError):
        return "it is truncated or not a torch checkpoint"
    first = next((ln.strip() for ln in msg.splitlines() if ln.strip()), type(e).__name__)
    first = re.sub(r"[^.]*weights_only[^.]*\.?", "", first).strip()  # never relay advice about weights_only
    return (first or type(e).__name__)[:200]


def load_tensors(path: str | os.PathLike) -> Any:
    """`torch.load(path, map_location="cpu", weights_only=True)`; a file that does not load raises
    ValueError naming it and why (`torch_load_reason`)."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:
        raise ValueError(f"cannot read {path} ({torch_load_reason(e)}): the file is truncated, not a checkpoint, "
                         "or holds pickled objects (not loaded, for safety)") from None


def clean_torch_error(e: BaseException, path: str | os.PathLike) -> BaseException:
    """A library's (e.g. SB3's) load error that relays torch's `weights_only` advice -> a ValueError
    without it; any other error unchanged."""
    import pickle
    import zipfile

    if "weights_only" in str(e) or isinstance(e, pickle.UnpicklingError | zipfile.BadZipFile | EOFError):
        return ValueError(f"cannot load {path} ({torch_load_reason(e)}): the file is truncated, not a checkpoint "
                          "of this kind, or holds pickled objects (not loaded, for safety)")
    return e


_FILE_LOCKS: set[str] = set()  # lock files this process holds through file_lock


@contextlib.contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """Exclusive advisory lock, waiting for it (e.g. two cells collecting the same task's demos at
    once). A POSIX record lock, as `utils.rundir.run_dir_lock` takes on the same files: the two
    exclude each other, a killed holder's forked workers do not keep it, and it is per process
    (nested use in one process does not deadlock)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = os.path.realpath(path)
    if key in _FILE_LOCKS:  # held by this process already: a second fd's close would drop the lock
        yield
        return
    with open(path, "a+") as f:
        fcntl.lockf(f.fileno(), fcntl.LOCK_EX)
        _FILE_LOCKS.add(key)
        try:
            yield
        finally:
            _FILE_LOCKS.discard(key)
            fcntl.lockf(f.fileno(), fcntl.LOCK_UN)
