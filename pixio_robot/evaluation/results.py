"""Evaluation records and their files: a per-episode CSV and a summary JSON (both atomic)."""

from __future__ import annotations

import csv
import dataclasses
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pixio_robot.evaluation.metrics import mean_interval, wilson_interval
from pixio_robot.utils.io import atomic_write_text, save_json


@dataclass
class EpisodeRecord:
    """One evaluated episode. `success`: success reached at any step (MetaWorld convention);
    `final_success`: success at the last step; `error`: non-empty when the env failed."""

    episode: int
    env_index: int
    seed: int
    success: bool
    final_success: bool
    episode_return: float
    length: int
    first_success_step: int | None
    error: str
    wall_s: float
    video: str


CSV_FIELDS = [f.name for f in dataclasses.fields(EpisodeRecord)]


@dataclass
class EvalResult:
    """Summary of an evaluation plus its per-episode rows."""

    env_name: str
    n_episodes: int
    successes: int
    success_rate: float
    success_ci: tuple[float, float]
    mean_return: float
    return_ci: tuple[float, float]
    mean_length: float
    lengths: list[int]
    n_errors: int
    errors: list[str]
    steps: int
    wall_s: float
    steps_per_s: float  # over the whole evaluation, env start-up included
    startup_s: float = 0.0  # building the envs / worker processes
    rollout_steps_per_s: float = 0.0  # steady state: steps / (wall_s - startup_s)
    episodes: list[EpisodeRecord] = field(default_factory=list)

    def summary(self) -> dict:
        """Everything except the per-episode rows, as plain JSON-able values."""
        out = dataclasses.asdict(self)
        out.pop("episodes")
        out["success_ci"] = list(self.success_ci)
        out["return_ci"] = list(self.return_ci)
        out["ci_method"] = {"success": "wilson 95%", "return": "student-t 95%"}
        return out


def summarise(env_name: str, records: list[EpisodeRecord], wall_s: float = 0.0, steps: int = 0,
              startup_s: float = 0.0) -> EvalResult:
    """Aggregate episode records into an :class:`EvalResult` (Wilson / t 95% intervals)."""
    records = sorted(records, key=lambda r: r.episode)
    n = len(records)
    succ = sum(bool(r.success) for r in records)
    returns = [r.episode_return for r in records]
    lengths = [int(r.length) for r in records]
    errors = [f"episode {r.episode} (seed {r.seed}): {r.error}" for r in records if r.error]
    lo, hi = mean_interval(returns)
    return EvalResult(
        env_name=env_name, n_episodes=n, successes=succ, success_rate=succ / n if n else float("nan"),
        success_ci=wilson_interval(succ, n), mean_return=float(np.mean(returns)) if n else float("nan"),
        return_ci=(lo, hi), mean_length=float(np.mean(lengths)) if n else float("nan"), lengths=lengths,
        n_errors=len(errors), errors=errors, steps=int(steps), wall_s=float(wall_s),
        steps_per_s=float(steps / wall_s) if wall_s > 0 else 0.0, startup_s=float(startup_s),
        rollout_steps_per_s=float(steps / (wall_s - startup_s)) if wall_s > startup_s else 0.0, episodes=records)


def write_results(result: EvalResult, out_dir: str | Path, extra: dict | None = None) -> dict[str, Path]:
    """Write `episodes.csv` and `summary.json` into `out_dir`; return their paths."""
    out_dir = Path(out_dir)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS)
    writer.writeheader()
    for r in result.episodes:
        row = dataclasses.asdict(r)
        row["episode_return"] = f"{r.episode_return:.6g}"
        row["wall_s"] = f"{r.wall_s:.4f}"
        row["first_success_step"] = "" if r.first_success_step is None else r.first_success_step
        writer.writerow(row)
    paths = {"csv": out_dir / "episodes.csv", "summary": out_dir / "summary.json"}
    atomic_write_text(paths["csv"], buf.getvalue())
    save_json(paths["summary"], {**result.summary(), **(extra or {})})
    return paths


def read_episodes_csv(path: str | Path) -> list[EpisodeRecord]:
    """Read back a CSV written by :func:`write_results`."""
    out = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            out.append(EpisodeRecord(
                episode=int(row["episode"]), env_index=int(row["env_index"]), seed=int(row["seed"]),
                success=row["success"] == "True", final_success=row["final_success"] == "True",
                episode_return=float(row["episode_return"]), length=int(row["length"]),
                first_success_step=int(row["first_success_step"]) if row["first_success_step"] else None,
                error=row["error"], wall_s=float(row["wall_s"]), video=row["video"]))
    return out
