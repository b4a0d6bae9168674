"""One cell of a LeRobot benchmark suite (`suite.policy: act | diffusion`): LeRobot's own policy
trained by the project's train entry, rolled out by the project's evaluator.

The column's encoder picks the trunk: `source: resnet18` trains LeRobot's built-in `act` /
`diffusion` with its own torchvision ResNet-18 (random init, trained with the policy, as
LeRobot builds it; with `path: ResNet18_Weights.IMAGENET1K_V1` it starts from torchvision's
ImageNet weights, LeRobot's own default, read from torch's hub cache where the user has them);
any other column trains `pixio_act` / `pixio_diffusion` with that encoder as its trunk (frozen:
the suites' protocol). Both get the suite's `policy_options`, epochs and batch size, and are evaluated once after training through `pixio_robot.evaluate.run_evaluate`
(LeRobot's processors, the env the suite names); the train entry runs no rollouts for LeRobot
policies, so best = final (one evaluation, recorded as both).
"""

from __future__ import annotations

from pathlib import Path

from pixio_robot.evaluation.grid import Cell
from pixio_robot.evaluation.suites import RESNET18, EncoderSpec


def lerobot_train_config(cfg, cell: Cell, enc: EncoderSpec, root: Path, run_dir: Path):
    """The train entry's config of a LeRobot cell (no rollouts during training)."""
    from pixio_robot.policies import AdapterConfig
    from pixio_robot.policies.lerobot.training import LeRobotPolicyChoice
    from pixio_robot.train import DatasetConfig, EvalConfig, OptimConfig, TrainConfig

    s = cfg.suite
    options = dict(s.policy_options)
    if enc.source == RESNET18 and enc.path:  # torchvision weights for LeRobot's ResNet (e.g. ImageNet's)
        options["pretrained_backbone_weights"] = enc.path
    return TrainConfig(
        dataset=DatasetConfig(root=str(root), val_fraction=s.val_fraction),
        # resnet18: LeRobot builds its own trunk and the encoder config is unused
        encoder=AdapterConfig() if enc.source == RESNET18 else enc.adapter_config(),
        policy=LeRobotPolicyChoice(type=s.lerobot_type(enc), options=options),
        optim=OptimConfig(batch_size=s.batch_size, epochs=s.epochs),
        eval=EvalConfig(env=None, n_episodes=0),
        cache_dir=cfg.cache_dir, device=cfg.device, seed=cell.seed, num_threads=cfg.num_threads,
        run_dir=str(run_dir), resume=False, tensorboard=cfg.tensorboard, progress=cfg.progress)


def run_lerobot_cell(cfg, cell: Cell, enc: EncoderSpec, root: Path, run_dir: Path) -> dict:
    """Train -> evaluate the final policy -> the cell record (the MLP cells' fields)."""
    from pixio_robot.evaluate import EvaluateConfig, run_evaluate
    from pixio_robot.train import run_train
    from pixio_robot.utils.device import resolve_device

    s = cfg.suite
    res = run_train(lerobot_train_config(cfg, cell, enc, root, run_dir))
    ev = run_evaluate(EvaluateConfig(
        policy=res["policy_dir"], env=cell.task, n_episodes=s.n_episodes, n_envs=cfg.n_envs, seed=cell.seed,
        camera=s.camera, max_episode_steps=s.max_episode_steps, n_videos=0, vector_mode=cfg.vector_mode,
        stop_on_success=s.metric == "success", device=str(resolve_device(cfg.device)), progress=cfg.progress,
        run_dir=str(run_dir / "eval")))
    success, ret = float(ev["success_rate"]), float(ev["mean_return"])
    return {
        "best_success": success, "best_epoch": s.epochs, "final_success": success, "best_return": ret,
        "final_return": ret, "n_eval_episodes": s.n_episodes, "curve": [[s.epochs, success, ret]],
        "final_train_loss": res["final_train_loss"], "policy_dir": res["policy_dir"], "demos": str(root),
        "cache": res["cache"], "train_wall_s": res["wall_s"], "policy_type": res["policy_type"],
        "trainable_params": res["trainable_params"], "eval_dir": ev["run_dir"],
    }
