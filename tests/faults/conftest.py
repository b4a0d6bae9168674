"""Shared helpers of the fault suite: tiny configs, file snapshots, a process holding a run-dir lock."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}


def pytest_collection_modifyitems(items):
    for item in items:
        if "/faults/" in str(item.fspath):
            item.add_marker(pytest.mark.faults)


@pytest.fixture(autouse=True)
def _no_git_lookup(monkeypatch):
    """prepare_run_dir's `git status` takes seconds on a busy shared checkout; not under test here."""
    monkeypatch.setattr("pixio_robot.utils.run.git_revision", lambda *a, **k: "test")


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """{relative path: (sha256 of the bytes, mtime_ns)} of every file below `root` but the lock file."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != ".pixio.lock":
            out[str(p.relative_to(root))] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
    return out


def compose(entry: str, *overrides: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from omegaconf import OmegaConf

    if entry == "train":
        from pixio_robot.train import register_configs

        register_configs()
    elif entry == "pretrain":
        from pixio_robot.pretrain.config import register_configs

        register_configs()
    with initialize_config_module(f"pixio_robot.configs.{entry}", version_base="1.3"):
        return OmegaConf.to_object(hydra_compose("config", overrides=list(overrides)))


@pytest.fixture
def lock_holder():
    """Start a real process that holds the lock of a run dir (`start(dir)` -> Popen); killed at the end."""
    procs = []

    def start(run_dir: Path, lock_path: Path | None = None) -> subprocess.Popen:
        code = ("import sys, time; from pixio_robot.utils.rundir import run_dir_lock\n"
                f"with run_dir_lock({str(run_dir)!r}, {str(lock_path) if lock_path else None!r}):\n"
                "    print('held', flush=True); time.sleep(120)\n")
        p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
        procs.append(p)
        assert p.stdout.readline().strip() == "held"
        return p

    yield start
    for p in procs:
        p.kill()
        p.wait()


def run_cli(*args: str, cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, env=ENV, cwd=cwd,
                          timeout=timeout)


def wait_for(pred, timeout: float = 60.0) -> bool:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return True
        time.sleep(0.1)
    return False
