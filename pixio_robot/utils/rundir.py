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
- `RunDir`: the one guard every entry uses (pretrain, train, rl, collect, benchmark, probe):
  lock + writability on enter, then `check(config)` decides, before anything is written,
  "fresh" / "resume" / "done" by one rule set: nothing of a run there -> fresh; `resume=false` ->
  its artifacts moved to `previous/<time>/` -> fresh; a run with other identity settings -> refused
  with `key: old -> new`; the same settings -> "done" when its finished marker exists, else
  "resume" (the entry resumes from its checkpoints, or moves the unfinished outputs aside when it
  has none: `restart()`).
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
    created = lock_path is None and not run_dir.exists()
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
        if created:  # a run that wrote nothing (bad input) leaves no empty directory behind
            with contextlib.suppress(OSError):
                if [p.name for p in run_dir.iterdir()] == [LOCK_NAME]:
                    path.unlink()
                    run_dir.rmdir()
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


def move_aside(run_dir: Path, names: Iterable[str], dest: Path | None = None) -> Path | None:
    """Move the artifacts `names` present in `run_dir` to `run_dir/previous/<time>/` (a name may be a
    relative path, `cells/<key>.json`, kept as such there), or into `dest` (one earlier run's files
    moved in two steps stay together); None if none."""
    present = [a for a in names if (run_dir / a).exists()]
    if not present:
        return None
    if dest is None:
        dest = run_dir / "previous" / time.strftime("%Y-%m-%d_%H-%M-%S")
        i = 1
        while dest.exists():
            dest = dest.with_name(f"{dest.name.split('.')[0]}.{i}")
            i += 1
    dest.mkdir(parents=True, exist_ok=True)
    for a in present:
        (dest / a).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(run_dir / a), str(dest / a))
    return dest


def keep_previous_records(run_dir: Path, config: dict, free_keys: Iterable[str], entry: str) -> Path | None:
    """For a grid entry (benchmark, probe), whose cells carry their own fingerprints: when `run_dir`'s
    `config.yaml` records other settings, move it (with git.txt, command.txt) to `previous/<time>/`
    before the new run writes its own, so no record of the earlier run is overwritten."""
    old = read_config(run_dir)
    diffs = config_diff(old, config, free_keys) if old is not None else []
    if not diffs:
        return None
    dest = move_aside(run_dir, _RECORD_FILES)
    _log().warning("%s: %s was run with other settings (%s): its config.yaml moved to %s", entry, run_dir,
                   "; ".join(diffs[:4]) + (" ..." if len(diffs) > 4 else ""), dest)
    return dest


def refuse_message(run_dir: Path, diffs: list[str]) -> str:
    more = f" (+{len(diffs) - 6} more)" if len(diffs) > 6 else ""
    return (f"run_dir={run_dir} holds a run with other settings: {'; '.join(diffs[:6])}{more}. Choose another "
            "run_dir=, or pass resume=false to move its outputs to previous/<time>/ and start afresh")


class RunDir:
    """One run directory of one entry (see the module doc).

    `artifacts`: what a run writes there (moved aside together; hydra's and the user's other files
    stay). `finished`: the file(s) whose presence means the run completed. `free_keys`: config keys
    that may change between a run and its resume (threads, progress bars, device, ...): every other
    key is identity. `identity`: optional function plain-config -> the dict compared instead (e.g.
    pretraining compares model/data/seed, not its step count, which a resume may raise).
    `previous_config`: optional function run_dir -> the earlier run's plain config (default: its
    config.yaml).

        with RunDir(path, "train", artifacts=(...), finished=("results.json",)) as rd:
            state = rd.check(to_plain(cfg), resume=cfg.resume)   # "fresh" | "resume" | "done"
    """

    def __init__(self, path: str | Path, entry: str, *, artifacts: Iterable[str], finished: Iterable[str] = (),
                 free_keys: Iterable[str] = (), identity=None, previous_config=None, lock: bool = True,
                 lock_path: str | Path | None = None) -> None:
        self.path, self.entry = Path(path), entry
        self.artifacts, self.finished = tuple(artifacts), tuple(finished)
        self.free_keys, self.identity, self.previous_config = tuple(free_keys), identity, previous_config
        self.lock, self.lock_path = lock, lock_path
        self.moved_to: Path | None = None
        self._ctx = None

    def __enter__(self) -> RunDir:
        if self.lock:
            self._ctx = run_dir_lock(self.path, self.lock_path)
            self._ctx.__enter__()
        else:
            ensure_writable(self.path)
        return self

    def __exit__(self, *exc) -> None:
        if self._ctx is not None:
            ctx, self._ctx = self._ctx, None
            ctx.__exit__(*exc)

    def has_run(self) -> bool:
        return any((self.path / a).exists() for a in self.artifacts if a not in _RECORD_FILES)

    def is_finished(self) -> bool:
        return bool(self.finished) and all((self.path / f).exists() for f in self.finished)

    def restart(self, why: str = "") -> Path | None:
        """Move this run's artifacts to `previous/<time>/` (nothing is deleted)."""
        dest = move_aside(self.path, self.artifacts)
        if dest is not None:
            self.moved_to = dest
            _log().warning("%s: %smoved the earlier outputs of %s to %s", self.entry, f"{why}: " if why else "",
                           self.path, dest)
        return dest

    def check(self, config: dict, *, resume: bool = True) -> str:
        """"fresh" | "resume" | "done" for a run with plain `config` (see the class doc); raises
        ValueError naming the differences when the directory holds another run."""
        if not self.has_run():
            return "fresh"
        if not resume:
            self.restart("resume=false")
            return "fresh"
        old = self.previous_config(self.path) if self.previous_config else read_config(self.path)
        if old is None:
            raise ValueError(f"run_dir={self.path} holds {self.entry} outputs without a readable config.yaml, so it "
                             "cannot be resumed: choose another run_dir=, or pass resume=false to move them to "
                             "previous/<time>/")
        pick = self.identity or (lambda d: d)
        diffs = config_diff(pick(old), pick(config), self.free_keys)
        if diffs:
            raise ValueError(refuse_message(self.path, diffs))
        return "done" if self.is_finished() else "resume"


# files every entry writes at the start (they alone do not make a run worth guarding)
_RECORD_FILES = ("config.yaml", "git.txt", "command.txt")


def _log():
    from pixio_robot.utils.logging import get_logger

    return get_logger("pixio_robot.rundir")


__all__ = ["RunDir", "LOCK_NAME", "RunDirBusy", "RunDirError", "config_diff", "describe_holder", "ensure_writable", "flat",
           "keep_previous_records", "move_aside", "read_config", "refuse_message", "run_dir_lock"]
