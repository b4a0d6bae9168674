"""utils.rundir directly: the fresh / resume / done / refuse decision, move-aside, the lock
(another process is refused naming its pid; a SIGKILLed holder and its forked children leave
nothing stuck), and the diff lines, checked against hand-written expectations and against the
kernel's own view of the lock (fcntl from this test process)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from pixio_robot.utils.rundir import (
    LOCK_NAME,
    RunDir,
    RunDirBusy,
    RunDirError,
    config_diff,
    ensure_writable,
    flat,
    move_aside,
    run_dir_lock,
)


def _rd(path, **kw):
    return RunDir(path, "test", artifacts=("model", "results.json", "config.yaml"), finished=("results.json",), **kw)


def _write_run(path: Path, config: dict, finished: bool = False) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    (path / "model").mkdir(exist_ok=True)
    (path / "model" / "w.bin").write_bytes(b"first run")
    if finished:
        (path / "results.json").write_text("{}")


def test_flat_and_config_diff_by_hand():
    assert flat({"a": {"b": 1, "c": (1, 2)}, "d": {}}) == {"a.b": 1, "a.c": [1, 2], "d": {}}
    old = {"optim": {"lr": 0.1, "wd": 0.0}, "seed": 0, "threads": 2}
    new = {"optim": {"lr": 0.2, "wd": 0.0}, "seed": 0, "threads": 4, "extra": True}
    assert config_diff(old, new) == ["extra: None -> True", "optim.lr: 0.1 -> 0.2", "threads: 2 -> 4"]
    assert config_diff(old, new, ignore=("threads", "extra")) == ["optim.lr: 0.1 -> 0.2"]
    assert config_diff({"a": [1, 2]}, {"a": (1, 2)}) == []  # lists and tuples are one value
    assert config_diff({"opt": {"lr": 1}}, {"opt": {"lr": 1}}, ignore=("op",)) == []  # a prefix is not a key


def test_fresh_resume_done_and_refusal(tmp_path):
    cfg = {"lr": 0.1, "seed": 0, "threads": 1}
    with _rd(tmp_path / "r") as rd:
        assert rd.check(cfg) == "fresh"
    assert not (tmp_path / "r").exists()  # a run that wrote nothing leaves no empty directory
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.yaml").write_text(yaml.safe_dump(cfg))  # the record alone is no run
    with _rd(tmp_path / "r") as rd:
        assert rd.check(cfg) == "fresh"
    _write_run(tmp_path / "r", cfg)
    with _rd(tmp_path / "r", free_keys=("threads",)) as rd:
        assert rd.check({**cfg, "threads": 8}) == "resume"
        with pytest.raises(ValueError, match=r"lr: 0.1 -> 0.3.*resume=false"):
            rd.check({**cfg, "lr": 0.3})
    (tmp_path / "r" / "results.json").write_text("{}")
    with _rd(tmp_path / "r") as rd:
        assert rd.check(cfg) == "done"
    # identity(): only what the function keeps is compared
    with _rd(tmp_path / "r", identity=lambda d: {"seed": d["seed"]}) as rd:
        assert rd.check({**cfg, "lr": 9.0}) == "done"
    assert (tmp_path / "r" / "model" / "w.bin").read_bytes() == b"first run"  # nothing was touched


def test_resume_false_moves_the_run_aside_and_keeps_every_byte(tmp_path):
    run = tmp_path / "r"
    _write_run(run, {"lr": 0.1}, finished=True)
    (run / "notes.txt").write_text("mine")  # not an artifact: stays
    with _rd(run) as rd:
        assert rd.check({"lr": 0.5}, resume=False) == "fresh"
        dest = rd.moved_to
    assert dest is not None and dest.parent == run / "previous"
    assert (dest / "model" / "w.bin").read_bytes() == b"first run" and (dest / "results.json").exists()
    assert not (run / "model").exists() and (run / "notes.txt").read_text() == "mine"
    # two move-asides within one second get two folders
    _write_run(run, {"lr": 0.5})
    second = move_aside(run, ("model",))
    assert second is not None and second != dest and (second / "model" / "w.bin").exists()
    assert move_aside(run, ("model",)) is None  # nothing left to move


def test_unreadable_config_is_refused_not_guessed(tmp_path):
    run = tmp_path / "r"
    _write_run(run, {"lr": 0.1})
    (run / "config.yaml").write_text("{ not: [yaml")
    with _rd(run) as rd, pytest.raises(ValueError, match="without a readable config.yaml"):
        rd.check({"lr": 0.1})


def test_ensure_writable_names_the_path(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunDirError, match=r"cannot write the run directory .*file/run.*run_dir="):
        ensure_writable(tmp_path / "file" / "run")


def _kernel_sees_lock(path: Path) -> bool:
    """Whether some other process holds a POSIX lock on `path` (asked of the kernel directly)."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


HOLDER = textwrap.dedent("""
    import os, sys, time
    from pixio_robot.utils.rundir import run_dir_lock
    with run_dir_lock(sys.argv[1]):
        if len(sys.argv) > 2:  # a forked child (a DataLoader / env worker) lives on
            if os.fork() == 0:
                time.sleep(30); os._exit(0)
        print("held", flush=True)
        time.sleep(60)
""")


def _hold(run: Path, *extra: str) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(run), *extra], stdout=subprocess.PIPE, text=True,
                         start_new_session=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_lock_refuses_another_process_and_frees_on_sigkill(tmp_path):
    run = tmp_path / "r"
    p = _hold(run)
    try:
        assert _kernel_sees_lock(run / LOCK_NAME)
        with pytest.raises(RunDirBusy, match=rf"in use by pid {p.pid} on .*choose another run_dir="):
            with run_dir_lock(run):
                pass
    finally:
        p.kill()
        p.wait()
    with run_dir_lock(run) as lock:  # the kernel dropped the killed holder's lock
        assert lock == run / LOCK_NAME
        with pytest.raises(RunDirBusy, match="in use by this process"):  # POSIX would allow it silently
            with run_dir_lock(run):
                pass
    assert not _kernel_sees_lock(run / LOCK_NAME) and (run / LOCK_NAME).read_text() == ""


def test_a_killed_holders_forked_children_do_not_keep_the_lock(tmp_path):
    run = tmp_path / "r"
    p = _hold(run, "fork")
    try:
        p.kill()
        p.wait()
        time.sleep(0.2)
        with run_dir_lock(run):  # its child is still sleeping, yet the directory is free
            pass
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)  # the orphaned child
