"""What every entry that writes a run directory shares: writability check, exclusive lock,
settings guard helpers (flatten, diff) and the move-aside convention.

- `ensure_writable(run_dir)`: create the directory and prove a file can be written there; any
  failure (a read-only parent, a path under a regular file, a full disk) is one `RunDirError`
  naming the path (the entry's `user_errors` prints it as one `error:` line).
- `run_dir_lock(run_dir)`: an exclusive POSIX record lock (`fcntl.lockf`) on
  `<run_dir>/.pixio.lock` held for the whole run. The kernel drops it when the process dies (also
  SIGKILL), so it never goes stale; unlike `flock`, it is not inherited by forked children
  (DataLoader workers, env workers), so a killed run's orphaned workers, which live on for a few
  seconds, do not keep a re-run out. A second process stops at once with `RunDirBusy` naming the
  holder's pid, host and command (written into the lock file while held); the same process taking
  the same lock twice is refused as well (POSIX locks do not see that).
- `config_diff(old, new, ignore)`: "key: old -> new" lines between two plain config trees.
- `move_aside(run_dir, names)`: `resume=false` moves a run's artifacts to `previous/<time>/`
  inside the run directory (never deletes them).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from pixio_robot.utils.cli import RunError

LOCK_NAME = ".pixio.lock"
_HELD: set[str] = set()  # lock files this process holds


class RunDirError(OSError):
    """A run directory that cannot be created or written."""


class RunDirBusy(RunError):
    """A run directory another live process holds the lock of."""


def _os_reason(e: OSError) -> str:
    return e.strerror or type(e).__name__


def ensure_writable(run_dir: str | Path) -> Path:
    """Create `run_dir` (and parents) and write + remove a probe file there; raise one
    `RunDirError` naming the path otherwise."""
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".pixio-write-test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        where = f" ({e.filename})" if e.filename and str(e.filename) != str(run_dir) else ""
        raise RunDirError(e.errno or errno.EACCES, f"cannot write the run directory {run_dir}: {_os_reason(e)}"
                          f"{where}; choose a run_dir= you can write to") from None
    return run_dir


def holder_info() -> dict:
    """Who holds a lock: pid, host, command, start time (written into the lock file)."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv)[:300],
            "since": time.strftime("%Y-%m-%d %H:%M:%S")}


def describe_holder(lock_path: Path) -> str:
    try:
        h = json.loads(Path(lock_path).read_text() or "{}")
    except (OSError, ValueError):
        h = {}
    if not h.get("pid"):
        return "another process"
    return f"pid {h['pid']} on {h.get('host', '?')} (`{h.get('command', '?')}`, since {h.get('since', '?')})"


@contextlib.contextmanager
def run_dir_lock(run_dir: str | Path, lock_path: str | Path | None = None) -> Iterator[Path]:
    """Hold an exclusive, non-blocking lock on `run_dir` for the block (see module doc);
    `lock_path` puts the lock file elsewhere (e.g. beside a dataset root that must not exist yet)."""
    run_dir = Path(run_dir)
    path = Path(lock_path) if lock_path is not None else ensure_writable(run_dir) / LOCK_NAME
    if lock_path is not None:
        ensure_writable(path.parent)
    key = os.path.realpath(path)
    if key in _HELD:  # POSIX locks are per process: a second lockf here would succeed silently
        raise RunDirBusy(f"{run_dir} is in use by this process (pid {os.getpid()}): one run per run_dir")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno not in (errno.EACCES, errno.EAGAIN):
            raise
        raise RunDirBusy(f"{run_dir} is in use by {describe_holder(path)}: wait for that run to end (or stop it), "
                         "or choose another run_dir=") from None
    _HELD.add(key)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder_info()) + "\n").encode(), 0)
        yield path
    finally:
        _HELD.discard(key)
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        fcntl.lockf(fd, fcntl.LOCK_UN)
        os.close(fd)  # (closing any fd of the file drops a POSIX lock: nothing else here opens it)


def flat(tree, prefix: str = "") -> dict:
    """Nested dicts -> {"a.b.c": leaf} (leaves made JSON-plain, so tuples and lists compare equal)."""
    if isinstance(tree, dict) and tree:
        return {k: v for key, sub in tree.items() for k, v in flat(sub, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): json.loads(json.dumps(tree, default=str))}


def config_diff(old: dict, new: dict, ignore: Iterable[str] = ()) -> list[str]:
    """`key: old -> new` for every flattened key that differs, leaving out keys under `ignore`."""
    a, b = flat(old), flat(new)
    skip = tuple(ignore)

    def kept(k: str) -> bool:
        return not any(k == s or k.startswith(s + ".") for s in skip)

    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if kept(k) and a.get(k) != b.get(k)]


def read_config(run_dir: Path) -> dict | None:
    """The `config.yaml` a previous run wrote into `run_dir` (None when absent or unreadable)."""
    import yaml

    p = Path(run_dir) / "config.yaml"
    try:
        return yaml.safe_load(p.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None


def move_aside(run_dir: Path, names: Iterable[str]) -> Path | None:
    """Move the artifacts `names` present in `run_dir` to `run_dir/previous/<time>/`; None if none."""
    present = [a for a in names if (run_dir / a).exists()]
    if not present:
        return None
    dest = run_dir / "previous" / time.strftime("%Y-%m-%d_%H-%M-%S")
    i = 1
    while dest.exists():
        dest = dest.with_name(f"{dest.name.split('.')[0]}.{i}")
        i += 1
    dest.mkdir(parents=True)
    for a in present:
        shutil.move(str(run_dir / a), str(dest / a))
    return dest


def refuse_message(run_dir: Path, diffs: list[str]) -> str:
    more = f" (+{len(diffs) - 6} more)" if len(diffs) > 6 else ""
    return (f"run_dir={run_dir} holds a run with other settings: {'; '.join(diffs[:6])}{more}. Choose another "
            "run_dir=, or pass resume=false to move its outputs to previous/<time>/ and start afresh")


__all__ = ["LOCK_NAME", "RunDirBusy", "RunDirError", "config_diff", "describe_holder", "ensure_writable", "flat",
           "move_aside", "read_config", "refuse_message", "run_dir_lock"]
