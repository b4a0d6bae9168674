"""Imitation learning on a Pixio backbone: `python -m pixio_robot.train` (hydra).

    python -m pixio_robot.train dataset.root=data/metaworld-drawer-open eval.env=metaworld/drawer-open-v3
    python -m pixio_robot.train policy=pixio_act dataset.root=demos/pusht +policy.options.chunk_size=16
    python -m pixio_robot.train encoder.source=checkpoint encoder.path=runs/pretrain/x/encoder ...

Frozen encoders train from the feature cache (every frame encoded once, memory-mapped);
fine-tuned ones from a decoded-frame memmap. Periodic rollouts go through
`pixio_robot.evaluation.evaluate_policy`; the best and the final success are both recorded.
The run directory gets config.yaml, git.txt, TensorBoard events, `policy/` (final),
`policy_best/` (best rollout success) and results.json. `run_train(cfg)` is the hydra-free API.
`policy=pixio_act|pixio_diffusion` trains LeRobot's own ACT / Diffusion Policy instead
(`pixio_robot.train.lerobot`), saved in LeRobot's pretrained format in `policy/`.
"""

from __future__ import annotations

from pixio_robot.train.config import (
    RETIRED_POLICIES,
    DatasetConfig,
    EvalConfig,
    OptimConfig,
    TrainConfig,
    register_configs,
    retired_policy_message,
)


def __getattr__(name: str):
    """The loop's public names (`run_train`, ...) load on first use: importing the package
    for its config classes stays light."""
    if name.startswith("__") or name == "loop":
        raise AttributeError(name)
    import importlib

    loop = importlib.import_module("pixio_robot.train.loop")

    try:
        return getattr(loop, name)
    except AttributeError:
        raise AttributeError(f"module 'pixio_robot.train' has no attribute {name!r}") from None


__all__ = ['DatasetConfig', 'EvalConfig', 'OptimConfig', 'RETIRED_POLICIES', 'TrainConfig', 'register_configs', 'retired_policy_message', 'run_train']
