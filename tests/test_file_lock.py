"""utils.io.file_lock directly: it waits for another process's lock, excludes run_dir_lock on the
same file (and the other way round), and nested use in one process neither deadlocks nor drops
the outer lock (checked with fcntl from another process)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from pixio_robot.utils.io import file_lock
from pixio_robot.utils.rundir import RunDirBusy, run_dir_lock

HOLD = textwrap.dedent("""
    import sys, time
    from pixio_robot.utils.io import file_lock
    with file_lock(sys.argv[1]):
        print("held", flush=True)
        time.sleep(float(sys.argv[2]))
""")

PROBE = textwrap.dedent("""
    import fcntl, os, sys
    fd = os.open(sys.argv[1], os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        print("free")
    except OSError:
        print("locked")
""")


def _probe(path) -> str:
    return subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_file_lock_waits_for_another_process(tmp_path):
    path = tmp_path / "sub" / "task.lock"  # parents are created
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(path), "1.5"], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "held"
        t0 = time.monotonic()
        with file_lock(path):
            waited = time.monotonic() - t0
        assert waited > 0.5, waited  # it blocked until the holder let go (~1.5 s after "held")
        assert p.wait(timeout=30) == 0
    finally:
        p.kill()


def test_file_lock_and_run_dir_lock_exclude_each_other(tmp_path):
    run = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(run / ".pixio.lock"), "30"], stdout=subprocess.PIPE,
                         text=True)
    try:
        assert p.stdout.readline().strip() == "held"
        with pytest.raises(RunDirBusy):
            with run_dir_lock(run):
                pass
    finally:
        p.kill()
        p.wait()
    with run_dir_lock(run):
        assert _probe(run / ".pixio.lock") == "locked"


def test_nested_file_lock_keeps_the_outer_lock(tmp_path):
    path = tmp_path / "x.lock"
    with file_lock(path):
        with file_lock(path):  # would deadlock or, with a second fd, drop the lock on its close
            pass
        assert _probe(path) == "locked"
    assert _probe(path) == "free"
