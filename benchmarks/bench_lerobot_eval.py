"""The project's evaluator vs LeRobot's own `eval_policy` (what `lerobot-eval` runs) on PushT, for
the SAME LeRobot policy directory, episodes, seeds and episode limit.

Both run in this process with the same torch threads, under torch.no_grad, timed from the first
reset to the last step (building envs / worker processes not counted: start-up is printed apart).
  - ours:    pixio_robot.evaluation.evaluate_policy(LeRobotPolicy.load(dir), "lerobot/pusht", ...)
             in `serial` (in-process envs) and `subproc` (one worker per env) modes;
  - LeRobot: lerobot.envs.make_env(PushtEnv) (a SyncVectorEnv: `--eval.use_async_envs=false`) +
             make_policy + the saved processors -> lerobot.scripts.lerobot_eval.eval_policy.
             Its AsyncVectorEnv does not get through a PushT rollout with lerobot 0.6.1 here: the
             rollout's `env.call("task_description")` raises in the workers (gym-pusht has no such
             attribute), which shut themselves down, and the next step fails.
Steps = env.step calls made: LeRobot steps every env of a batch until all are done (finished ones
included), ours only running episodes; with no early success both equal n_episodes x max_steps.
Success with Wilson 95% intervals for both (the same gym-pusht seeds `seed + i`).

The default policy is a freshly built tiny `pixio_act` (random init: the cost, not the skill, is
measured); `--policy DIR` takes any LeRobot pretrained_model dir (e.g. lerobot-train's output).

    MUJOCO_GL=egl python benchmarks/bench_lerobot_eval.py --episodes 8 --n-envs 4 --max-steps 100
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed copy

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ENV = "lerobot/pusht"


def build_policy_dir(kind: str, out: Path, side: int = 96) -> Path:
    """A tiny random-init LeRobot policy (`pixio_act` on pixio_vittest, or built-in `act` on a
    ResNet-18) with PushT-scale processor stats, saved as lerobot-train saves pretrained_model."""
    import torch
    from lerobot.configs import FeatureType, PolicyFeature
    from lerobot.policies.factory import get_policy_class, make_pre_post_processors
    from lerobot.utils.import_utils import register_third_party_plugins

    register_third_party_plugins()
    torch.manual_seed(0)
    inp = {"observation.image": PolicyFeature(FeatureType.VISUAL, (3, side, side)),
           "observation.state": PolicyFeature(FeatureType.STATE, (2,))}
    outp = {"action": PolicyFeature(FeatureType.ACTION, (2,))}
    tiny = dict(chunk_size=8, n_action_steps=8, dim_model=64, n_heads=2, dim_feedforward=128, n_encoder_layers=1,
                n_vae_encoder_layers=1, latent_dim=8, device="cpu")
    cls = get_policy_class(kind)
    extra = {} if kind == "pixio_act" else {"pretrained_backbone_weights": None}
    config = cls.config_class(input_features=inp, output_features=outp, **tiny, **extra)
    policy = cls(config)
    board = {"mean": torch.full((2,), 256.0), "std": torch.full((2,), 100.0), "min": torch.zeros(2),
             "max": torch.full((2,), 512.0)}
    stats = {"observation.state": board, "action": board}
    if kind == "act":  # MEAN_STD images: ImageNet statistics, as lerobot-train uses for ACT
        stats["observation.image"] = {"mean": torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1),
                                      "std": torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)}
    pre, post = make_pre_post_processors(policy.config, dataset_stats=stats)
    for obj in (policy, pre, post):
        obj.save_pretrained(out)
    return out


def run_ours(policy_dir: Path, args, mode: str) -> dict:
    from pixio_robot.evaluation import evaluate_policy
    from pixio_robot.evaluation.lerobot_policy import LeRobotPolicy

    policy = LeRobotPolicy.load(policy_dir)
    size = policy.env_defaults(ENV)["image_size"]
    res = evaluate_policy(policy, ENV, n_episodes=args.episodes, n_envs=args.n_envs, seed=args.seed,
                          image_size=size, max_episode_steps=args.max_steps, vector_mode=mode, progress=False)
    return {"name": f"ours ({mode}, {args.n_envs} envs)", "steps": res.steps, "wall_s": res.wall_s - res.startup_s,
            "startup_s": res.startup_s, "successes": res.successes, "n": res.n_episodes, "errors": res.n_errors}


def run_lerobot(policy_dir: Path, args, use_async: bool) -> dict:
    import torch
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.envs.configs import PushtEnv
    from lerobot.envs.factory import make_env, make_env_pre_post_processors
    from lerobot.envs.utils import close_envs
    from lerobot.policies.factory import make_policy, make_pre_post_processors
    from lerobot.scripts.lerobot_eval import eval_policy

    t0 = time.perf_counter()
    env_cfg = PushtEnv(episode_length=args.max_steps)
    envs = make_env(env_cfg, n_envs=args.n_envs, use_async_envs=use_async)
    vec = envs["pusht"][0]
    cfg = PreTrainedConfig.from_pretrained(policy_dir)  # what lerobot-eval --policy.path does
    cfg.pretrained_path, cfg.device = policy_dir, "cpu"
    policy = make_policy(cfg, env_cfg=env_cfg)
    policy.eval()
    pre, post = make_pre_post_processors(cfg, pretrained_path=str(policy_dir),
                                         preprocessor_overrides={"device_processor": {"device": "cpu"}})
    env_pre, env_post = make_env_pre_post_processors(env_cfg, cfg)
    calls = [0]
    select = policy.select_action

    def counted(batch):
        calls[0] += 1
        return select(batch)

    policy.select_action = counted  # one call per rollout iteration, every env of the batch stepped
    startup = time.perf_counter() - t0
    t1 = time.perf_counter()
    with torch.no_grad():
        info = eval_policy(vec, policy, env_pre, env_post, pre, post, n_episodes=args.episodes,
                           start_seed=args.seed)
    wall = time.perf_counter() - t1
    close_envs(envs)
    succ = [bool(e["success"]) for e in info["per_episode"]][:args.episodes]
    kind = "AsyncVectorEnv" if use_async else "SyncVectorEnv"
    return {"name": f"lerobot eval_policy ({kind}, {args.n_envs})", "steps": calls[0] * args.n_envs,
            "wall_s": wall, "startup_s": startup, "successes": sum(succ), "n": len(succ), "errors": 0}


def main() -> None:
    from pixio_robot.utils.logging import setup_logging

    setup_logging()  # the library's INFO records (it installs no handler itself)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policy", default=None, help="a LeRobot policy dir; default: build a tiny one")
    ap.add_argument("--kind", default="pixio_act", choices=["pixio_act", "act"], help="the tiny policy built")
    ap.add_argument("--episodes", type=int, default=8)
    ap.add_argument("--n-envs", type=int, default=4)
    ap.add_argument("--max-steps", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=2, help="runs per evaluator (median steps/s reported)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args()

    import torch

    from pixio_robot.evaluation.metrics import wilson_interval

    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        policy_dir = Path(args.policy) if args.policy else build_policy_dir(args.kind, Path(tmp) / "pretrained_model")
        kind = json.loads((policy_dir / "config.json").read_text())["type"]
        warm = argparse.Namespace(**{**vars(args), "episodes": 1, "n_envs": 1, "max_steps": 5})
        run_ours(policy_dir, warm, "serial")  # untimed: torch's one-off kernel set-up
        runs = [[run_lerobot(policy_dir, args, use_async=False), run_ours(policy_dir, args, "serial"),
                 run_ours(policy_dir, args, "subproc")]
                for _ in range(args.repeats)]  # interleaved, so a load spike hits every evaluator
        rows = []
        for reps in zip(*runs):
            sps = sorted(r["steps"] / r["wall_s"] for r in reps)
            rows.append({**reps[0], "all_steps_per_s": sps, "steps_per_s": statistics.median(sps)})
    base = rows[0]["steps_per_s"]
    print(f"{ENV} policy={policy_dir if args.policy else 'tiny ' + kind} type={kind} episodes={args.episodes} "
          f"n_envs={args.n_envs} max_steps={args.max_steps} seed={args.seed} torch_threads={args.threads} "
          f"cores={os.cpu_count()} load(1 min)={load:.2f} repeats={args.repeats} (median steps/s)")
    print(f"{'evaluator':<40}{'steps':>7}{'steps/s':>10}{'ratio':>8}{'start-up s':>12}  success [Wilson 95%]")
    for r in rows:
        lo, hi = wilson_interval(r["successes"], r["n"])
        r["success_ci"] = [lo, hi]
        print(f"{r['name']:<40}{r['steps']:>7}{r['steps_per_s']:>10.1f}{r['steps_per_s'] / base:>7.2f}x"
              f"{r['startup_s']:>12.1f}  {r['successes']}/{r['n']} = {100 * r['successes'] / r['n']:.0f}% "
              f"[{100 * lo:.0f}, {100 * hi:.0f}]" + (f"  ({r['errors']} env errors)" if r["errors"] else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "load_average": load, "results": rows}, f, indent=2)


if __name__ == "__main__":
    main()
