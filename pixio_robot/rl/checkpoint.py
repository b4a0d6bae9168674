"""The run directory of `python -m pixio_robot.rl`: checkpoints (SB3's `CheckpointCallback`),
resume, refusal, move-aside (the shared `pixio_robot.utils.rundir.RunDir`).

A run writes `checkpoints/<algo>_<steps>_steps.zip` (SB3's names; SAC also its newest replay
buffer, `<algo>_replay_buffer_<steps>_steps.pkl`) and `run_state.json`. Re-running the same command
resumes from the newest checkpoint (or from the final model when `total_timesteps` was raised); a
directory holding another run (algo, env, obs, encoder, ...) is refused with the differences;
`resume=false` moves the old contents to `previous/<time>/`. Nothing is deleted but older replay
buffers (one per checkpoint would be ~0.6 GB each for a pixel SAC).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from stable_baselines3.common.callbacks import CheckpointCallback

from pixio_robot.utils.logging import get_logger
from pixio_robot.utils.rundir import RunDir, read_config

log = get_logger("pixio_robot.rl")
# config keys that must match for a run directory to be resumed (the rest may change between runs)
IDENTITY_KEYS = ("algo", "env", "obs", "n_envs", "image_size", "camera", "frame_stack", "action_repeat",
                 "max_episode_steps", "env_options", "encoder", "share_features_extractor", "net_arch",
                 "algo_kwargs", "seed")
# what a run writes into its directory (moved aside by resume=false; hydra's own files stay)
RUN_ARTIFACTS = ("model.zip", "agent.json", "results.json", "run_state.json", "best", "eval", "checkpoints",
                 "tb", "config.yaml", "git.txt", "command.txt")
CKPT_RE = re.compile(r"^(ppo|sac)_(\d+)_steps\.zip$")


def atomic_save(model, path: Path) -> None:
    """`model.save(path)` through a temporary file: a killed run never leaves half a zip."""
    tmp = path.with_name(f".{path.stem}.tmp.zip")
    model.save(str(tmp))
    os.replace(tmp, path)


class RLCheckpoint(CheckpointCallback):
    """SB3's `CheckpointCallback`, counted in env steps (`every`, whatever `n_envs`; 0: only on
    `save()`, e.g. at Ctrl-C) instead of callback calls, so a resumed run keeps the same schedule;
    written atomically; SAC keeps only its newest replay buffer."""

    def __init__(self, run_dir: Path, algo: str, every: int, replay_buffer: bool) -> None:
        super().__init__(save_freq=max(every, 1), save_path=str(run_dir / "checkpoints"), name_prefix=algo,
                         save_replay_buffer=replay_buffer)
        self.every = every

    def _on_training_start(self) -> None:
        self._next = (self.num_timesteps // self.every + 1) * self.every if self.every else None

    def _on_step(self) -> bool:
        if self._next is not None and self.num_timesteps >= self._next:
            while self._next <= self.num_timesteps:
                self._next += self.every
            self.save(self.model)
        return True

    def save(self, model) -> Path:
        self.model, self.num_timesteps = model, int(model.num_timesteps)  # also outside a callback call (Ctrl-C)
        Path(self.save_path).mkdir(parents=True, exist_ok=True)
        path = Path(self._checkpoint_path(extension="zip"))
        atomic_save(model, path)
        if self.save_replay_buffer and getattr(model, "replay_buffer", None) is not None:
            buf = Path(self._checkpoint_path("replay_buffer_", extension="pkl"))
            tmp = buf.with_name(f".{buf.stem}.tmp.pkl")
            model.save_replay_buffer(str(tmp))
            os.replace(tmp, buf)
            for old in Path(self.save_path).glob(f"{self.name_prefix}_replay_buffer_*_steps.pkl"):
                if old != buf:
                    old.unlink(missing_ok=True)
        return path


def replay_buffer_path(checkpoint: Path, algo: str, steps: int) -> Path:
    """The replay buffer saved with the checkpoint of `steps` (it may not exist)."""
    return Path(checkpoint).parent / f"{algo}_replay_buffer_{steps}_steps.pkl"


def checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    d = run_dir / "checkpoints"
    found = [(int(m.group(2)), p) for p in d.glob("*.zip") if (m := CKPT_RE.match(p.name))] if d.is_dir() else []
    return sorted(found)


def _identity(plain: dict) -> dict:
    return {k: plain.get(k) for k in IDENTITY_KEYS}


def _previous_config(run_dir: Path) -> dict | None:
    cfg = read_config(run_dir)
    if cfg is None and (run_dir / "agent.json").is_file():
        try:
            cfg = json.loads((run_dir / "agent.json").read_text()).get("config")
        except ValueError:
            cfg = None
    return cfg


def rl_run_dir(run_dir: Path) -> RunDir:
    return RunDir(run_dir, "rl", artifacts=RUN_ARTIFACTS, finished=("results.json", "model.zip"),
                  identity=_identity, previous_config=_previous_config)


def plan_run(rd: RunDir, plain: dict, total_timesteps: int, resume: bool) -> dict:
    """What a run into `rd` does: {"mode": "fresh" | "resume" | "done", ...} (see the module doc)."""
    state = rd.check(plain, resume=resume)
    if state == "fresh":
        return {"mode": "fresh"}
    run_dir = rd.path
    cands = []
    if state == "done":
        status = json.loads((run_dir / "run_state.json").read_text()) if (run_dir / "run_state.json").is_file() else {}
        done_steps = int(status.get("timesteps", 0))
        if done_steps >= total_timesteps:
            return {"mode": "done", "results": json.loads((run_dir / "results.json").read_text())}
        cands.append((done_steps, run_dir / "model.zip"))
    cands += checkpoints(run_dir)
    if not cands:  # nothing to resume from: keep what it wrote (tb, logs) under previous/ and start afresh
        rd.restart("an unfinished run with these settings and no checkpoint yet")
        return {"mode": "fresh"}
    steps, path = max(cands, key=lambda c: c[0])
    return {"mode": "resume", "path": path, "timesteps": steps}


def write_state(run_dir: Path, status: str, timesteps: int, **extra) -> None:
    from pixio_robot.utils.io import save_json

    save_json(run_dir / "run_state.json", {"status": status, "timesteps": int(timesteps), **extra})


__all__ = ["IDENTITY_KEYS", "RLCheckpoint", "RUN_ARTIFACTS", "atomic_save", "checkpoints", "plan_run",
           "replay_buffer_path", "rl_run_dir", "write_state"]
