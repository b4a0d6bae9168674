"""Run directories: resolved config, git revision, environment, in one folder per run."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

from pixio_robot.utils.io import atomic_write_text, save_json


def git_revision(cwd: str | Path | None = None) -> str:
    """`<sha>[-dirty]` of the checkout holding this package, or 'unknown'."""
    cwd = cwd or Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (sha + ("-dirty" if dirty else "")) if sha else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def to_plain(cfg: Any) -> Any:
    """Dataclass / DictConfig / nested containers -> plain Python for YAML or JSON."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: to_plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(cfg, DictConfig | ListConfig):
            return OmegaConf.to_container(cfg, resolve=True)
    except ImportError:
        pass
    if isinstance(cfg, dict):
        return {str(k): to_plain(v) for k, v in cfg.items()}
    if isinstance(cfg, list | tuple):
        return [to_plain(v) for v in cfg]
    if isinstance(cfg, Path):
        return str(cfg)
    return cfg


def prepare_run_dir(run_dir: str | Path, cfg: Any) -> Path:
    """Create `run_dir` and write `config.yaml` (resolved), `git.txt` and `command.txt`."""
    import yaml

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(to_plain(cfg), sort_keys=False))
    atomic_write_text(run_dir / "git.txt", git_revision() + "\n")
    atomic_write_text(run_dir / "command.txt", " ".join([sys.executable, *sys.argv]) + "\n")
    return run_dir


__all__ = ["git_revision", "prepare_run_dir", "save_json", "to_plain"]
