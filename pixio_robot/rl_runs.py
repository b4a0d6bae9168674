"""The run directory of `python -m pixio_robot.rl`: checkpoints, resume, refusal, move-aside.

A run writes `checkpoints/<algo>_<steps>_steps.zip` (SAC also its latest replay buffer) and
`run_state.json`. Re-running the same command resumes from the newest checkpoint (or the final
model when `total_timesteps` was raised); a directory holding another run (algo, env, obs,
encoder, ...) is refused with the differences; `resume=false` moves the old contents to
`previous/<time>/`. Nothing is deleted.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from stable_baselines3.common.callbacks import BaseCallback

from pixio_robot.utils.logging import get_logger

if TYPE_CHECKING:
    from pixio_robot.rl import RLConfig

log = get_logger("pixio_robot.rl")
# config keys that must match for a run directory to be resumed (the rest may change between runs)
IDENTITY_KEYS = ("algo", "env_name", "obs", "n_envs", "image_size", "camera", "frame_stack", "action_repeat",
                 "max_episode_steps", "env_options", "encoder", "share_features_extractor", "net_arch",
                 "algo_kwargs", "seed")
# what a run writes into its directory (moved aside by resume=false; hydra's own files stay)
RUN_ARTIFACTS = ("model.zip", "agent.json", "results.json", "run_state.json", "best", "eval", "checkpoints",
                 "tb", "config.yaml", "git.txt", "command.txt")

def atomic_save(model, path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.tmp.zip")
    model.save(str(tmp))
    os.replace(tmp, path)


CKPT_RE = re.compile(r"^(ppo|sac)_(\d+)_steps\.zip$")


def _checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    d = run_dir / "checkpoints"
    found = [(int(m.group(2)), p) for p in d.glob("*.zip") if (m := CKPT_RE.match(p.name))] if d.is_dir() else []
    return sorted(found)


class Checkpointer(BaseCallback):
    """`checkpoints/<algo>_<steps>_steps.zip` every `every` env steps (0: only on `save()`), for SAC
    with the replay buffer (`checkpoints/replay_buffer.pkl`, the latest one only)."""

    def __init__(self, run_dir: Path, algo: str, every: int, replay_buffer: bool) -> None:
        super().__init__()
        self.dir, self.algo, self.every, self.replay_buffer = run_dir / "checkpoints", algo, every, replay_buffer

    def _on_training_start(self) -> None:
        self._next = (self.num_timesteps // self.every + 1) * self.every if self.every else None

    def _on_step(self) -> bool:
        if self._next is not None and self.num_timesteps >= self._next:
            while self._next <= self.num_timesteps:
                self._next += self.every
            self.save(self.model)
        return True

    def save(self, model) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        n = int(model.num_timesteps)
        path = self.dir / f"{self.algo}_{n}_steps.zip"
        atomic_save(model, path)
        if self.replay_buffer and getattr(model, "replay_buffer", None) is not None:
            tmp = self.dir / ".replay_buffer.tmp.pkl"
            model.save_replay_buffer(str(tmp))
            os.replace(tmp, self.dir / "replay_buffer.pkl")
            (self.dir / "replay_buffer.json").write_text(json.dumps({"timesteps": n}) + "\n")
        return path


def _identity(d: dict) -> dict:
    return {k: d.get(k) for k in IDENTITY_KEYS}


def _read_previous_config(run_dir: Path) -> dict | None:
    import yaml

    for name in ("config.yaml", "agent.json"):
        p = run_dir / name
        if p.is_file():
            try:
                d = yaml.safe_load(p.read_text()) or {}
            except yaml.YAMLError:
                continue
            return d.get("config", d) if name == "agent.json" else d
    return None


def _has_artifacts(run_dir: Path) -> bool:
    return any((run_dir / a).exists() for a in ("model.zip", "best", "eval", "checkpoints", "results.json"))


def _move_aside(run_dir: Path) -> Path | None:
    from pixio_robot.utils.rundir import move_aside

    return move_aside(run_dir, RUN_ARTIFACTS)


def prepare_resume(cfg: RLConfig, run_dir: Path) -> dict:
    """Decide what a run into `run_dir` does: {"mode": "fresh" | "resume" | "done", ...}.
    A run dir with artifacts of another algo / env / obs / encoder ... is refused (with the difference);
    resume=false moves the old contents to `previous/<time>/` (nothing is deleted)."""
    from pixio_robot.utils.run import to_plain

    if not run_dir.is_dir() or not _has_artifacts(run_dir):
        return {"mode": "fresh"}
    if not cfg.resume:
        dest = _move_aside(run_dir)
        log.info("rl: resume=false: moved the previous contents of %s to %s", run_dir, dest)
        return {"mode": "fresh", "moved_to": str(dest)}
    old = _read_previous_config(run_dir)
    new = _identity(to_plain(cfg))
    if old is None:
        raise ValueError(f"run_dir={run_dir} holds RL outputs without a config.yaml, so it cannot be resumed: "
                         "choose another run_dir= or pass resume=false to move them aside")
    old = _identity(old)
    diff = []
    for k in IDENTITY_KEYS:
        a, b = old[k], new[k]
        if a == b:
            continue
        if k == "encoder" and isinstance(a, dict) and isinstance(b, dict):  # name the encoder keys that differ
            diff += [f"encoder.{j}: {a.get(j)!r} there, {b.get(j)!r} now" for j in sorted({*a, *b})
                     if a.get(j) != b.get(j)]
        else:
            diff.append(f"{k}: {a!r} there, {b!r} now")
    if diff:
        raise ValueError(f"run_dir={run_dir} holds another run ({'; '.join(diff)}): choose another run_dir=, "
                         "or pass resume=false to move its contents to previous/ and start afresh")
    state_p = run_dir / "run_state.json"
    state = json.loads(state_p.read_text()) if state_p.is_file() else {}
    results_p = run_dir / "results.json"
    if state.get("status") == "done" and results_p.is_file() and (run_dir / "model.zip").is_file():
        done_steps = int(state.get("timesteps", 0))
        if done_steps >= cfg.total_timesteps:
            return {"mode": "done", "results": json.loads(results_p.read_text())}
        cands = [(done_steps, run_dir / "model.zip")]
    else:
        cands = []
    cands += _checkpoints(run_dir)
    if not cands:
        log.warning("rl: %s holds outputs of an unfinished run but no checkpoint: starting afresh over them "
                    "(resume=false moves them aside first)", run_dir)
        return {"mode": "fresh"}
    steps, path = max(cands, key=lambda c: c[0])
    return {"mode": "resume", "path": path, "timesteps": steps}


def write_state(run_dir: Path, status: str, timesteps: int, **extra) -> None:
    from pixio_robot.utils.io import save_json

    save_json(run_dir / "run_state.json", {"status": status, "timesteps": int(timesteps), **extra})
