"""`python -m pixio_robot.evaluate policy=<dir>`: roll a saved policy out and report.

Writes into the run directory: `summary.json` (success rate with a Wilson 95% interval, mean
return with a t interval, lengths, errors), `episodes.csv` (one row per episode), `videos/`
(mp4 of the first `n_videos` episodes) and the resolved config.

    python -m pixio_robot.evaluate policy=runs/train/<ts>/policy n_episodes=50 n_envs=4
    python -m pixio_robot.evaluate policy=... env=metaworld/hammer-v3 vector_mode=serial
    python -m pixio_robot.evaluate policy=<lerobot-train out>/checkpoints/last/pretrained_model env=lerobot/pusht

A LeRobot policy directory (config.json with a LeRobot `type`: act, diffusion, pixio_act, ...)
runs through LeRobot's own processors (see pixio_robot.evaluation.lerobot_policy).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from pixio_robot.evaluate.config import EvaluateConfig
from pixio_robot.utils.device import resolve_device
from pixio_robot.utils.logging import get_logger

log = get_logger(__name__)


_ENV_KEYS = ("env_name", "env")
_SIZE_KEYS = ("image_size",)
_CAMERA_KEYS = ("camera",)


def _find(obj: Any, keys: tuple[str, ...]) -> Any:
    """First value of any of `keys` in a nested dict (breadth-first), else None."""
    queue = [obj]
    while queue:
        cur = queue.pop(0)
        if isinstance(cur, dict):
            for k in keys:
                if cur.get(k) not in (None, ""):
                    return cur[k]
            queue.extend(v for v in cur.values() if isinstance(v, dict))
    return None


def policy_env_defaults(policy_dir: str | Path) -> dict:
    """Env name, image size and camera recorded in a saved policy's `config.json` (if any)."""
    path = Path(policy_dir) / "config.json"
    if not path.is_file():
        return {}
    cfg = json.loads(path.read_text())
    return {"env": _find(cfg, _ENV_KEYS), "image_size": _find(cfg, _SIZE_KEYS), "camera": _find(cfg, _CAMERA_KEYS)}


# what an evaluation writes into its run dir (moved aside together by resume=false)
EVALUATE_ARTIFACTS = ("summary.json", "episodes.csv", "videos", "config.yaml", "git.txt", "command.txt")
EVALUATE_FREE_KEYS = ("run_dir", "resume", "progress", "num_threads", "device", "n_envs", "vector_mode")


def run_evaluate(cfg: EvaluateConfig, run_dir: str | Path | None = None) -> dict:
    """Load `cfg.policy`, evaluate it, write summary.json / episodes.csv / videos; return the summary.
    The run dir is locked and guarded (`utils.rundir.RunDir`): a finished evaluation with the same
    settings is returned as it is, one with other settings refused, `resume=false` moves it aside."""
    from pixio_robot.utils.rundir import RunDir

    out = Path(cfg.run_dir or run_dir or Path("runs/evaluate") / time.strftime("%Y-%m-%d_%H-%M-%S"))
    with RunDir(out, "evaluate", artifacts=EVALUATE_ARTIFACTS, finished=("summary.json",),
                free_keys=EVALUATE_FREE_KEYS) as rd:
        return _run_evaluate(cfg, out, rd)


def _run_evaluate(cfg: EvaluateConfig, out: Path, rd) -> dict:
    import json

    from pixio_robot.evaluation import evaluate_policy, write_results
    from pixio_robot.utils.run import prepare_run_dir, to_plain

    policy_dir = Path(cfg.policy)
    if cfg.num_threads:
        import torch

        torch.set_num_threads(cfg.num_threads)
    if not policy_dir.exists():
        raise FileNotFoundError(f"policy directory {policy_dir} does not exist: pass policy=<dir written by "
                                "`python -m pixio_robot.train`, or a LeRobot pretrained_model dir "
                                "(holds model.safetensors + config.json)>")
    from pixio_robot.evaluation.lerobot_policy import lerobot_policy_type

    lerobot_type = lerobot_policy_type(policy_dir)
    policy = None
    if lerobot_type:  # a LeRobot pretrained_model / save_pretrained dir (act, diffusion, pixio_act, ...)
        from pixio_robot.evaluation.lerobot_policy import LeRobotPolicy, lerobot_env_name

        policy = LeRobotPolicy.load(policy_dir, device=str(resolve_device(cfg.device)))
        defaults = {"env": lerobot_env_name(policy_dir)}
    else:
        defaults = policy_env_defaults(policy_dir)
    env = cfg.env or defaults.get("env")
    if not env:
        raise ValueError(f"no env given and none recorded in {policy_dir}: pass env=<name>, "
                         "e.g. env=metaworld/drawer-open-v3 or env=lerobot/pusht")
    from pixio_robot.envs import parse_name
    from pixio_robot.envs.registry import unknown_env_short

    try:
        parse_name(env)
    except ValueError:
        raise ValueError(unknown_env_short(env)) from None
    if policy is not None:
        defaults.update(policy.env_defaults(env))  # the image size / camera its image feature declares
    image_size = cfg.image_size or defaults.get("image_size") or 128
    image_size = int(image_size) if isinstance(image_size, int) else tuple(int(v) for v in image_size)
    camera = cfg.camera or defaults.get("camera")
    state = rd.check(to_plain(cfg), resume=cfg.resume)
    if state == "done":
        log.info("evaluate: %s already holds this finished evaluation: nothing to do (resume=false runs it "
                 "again)", out)
        return {**json.loads((out / "summary.json").read_text()), "run_dir": str(out)}
    if state == "resume":  # an unfinished evaluation (no summary): rollouts have no checkpoints
        rd.restart("an unfinished evaluation with these settings")
    prepare_run_dir(out, cfg)
    if policy is None:
        try:
            from pixio_robot.policies import load_policy
        except ImportError as exc:  # pragma: no cover - the policies package ships with the project
            raise ImportError(f"pixio_robot.policies.load_policy is unavailable ({exc})") from exc
        policy = load_policy(policy_dir, device=str(resolve_device(cfg.device)))
    if hasattr(policy, "eval"):
        policy.eval()
    log.info("evaluating %s on %s: %d episodes over %d envs (%s)", policy_dir, env, cfg.n_episodes,
             cfg.n_envs, cfg.vector_mode)
    result = evaluate_policy(
        policy, env, n_episodes=cfg.n_episodes, n_envs=cfg.n_envs, seed=cfg.seed, image_size=image_size,
        camera=camera, max_episode_steps=cfg.max_episode_steps, video_dir=out / "videos",
        n_videos=cfg.n_videos, progress=cfg.progress, stop_on_success=cfg.stop_on_success,
        vector_mode=cfg.vector_mode, video_fps=cfg.video_fps)
    paths = write_results(result, out, extra={"policy": str(policy_dir), "image_size": image_size,
                                              "camera": camera, "seed": cfg.seed,
                                              "lerobot_policy_type": lerobot_type})
    lo, hi = result.success_ci
    log.info("%s: success %.1f%% [%.1f, %.1f] (Wilson 95%%), return %.2f, %d env errors, %.1f steps/s",
             env, 100 * result.success_rate, 100 * lo, 100 * hi, result.mean_return, result.n_errors,
             result.steps_per_s)
    log.info("results: %s and %s", paths["summary"], paths["csv"])
    return {**result.summary(), "run_dir": str(out)}


