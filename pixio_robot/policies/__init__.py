"""Policies on a Pixio backbone: encoder adapter, the CortexBench MLP head (LeRobot's own ACT / Diffusion with a
Pixio trunk: `policies.lerobot` and the `lerobot_policy_pixio` plugin), policy
I/O and the stable-baselines3 feature extractor (imported lazily: SB3 is only needed for RL)."""

from pixio_robot.policies.base import POLICY_REGISTRY, PixioPolicy, PolicySpec, register_policy
from pixio_robot.policies.encoder_adapter import AdapterConfig, EncoderAdapter, build_adapter
from pixio_robot.policies.io import PolicyLoadError, load_policy, make_policy, read_policy_config, save_policy
from pixio_robot.policies.mlp import MLPConfig, MLPPolicy

__all__ = [
    "AdapterConfig",
    "EncoderAdapter",
    "MLPConfig",
    "MLPPolicy",
    "POLICY_REGISTRY",
    "PixioFeaturesExtractor",
    "PixioPolicy",
    "PolicyLoadError",
    "PolicySpec",
    "build_adapter",
    "load_policy",
    "make_policy",
    "read_policy_config",
    "register_policy",
    "save_policy",
]


def __getattr__(name: str):
    if name == "PixioFeaturesExtractor":
        from pixio_robot.policies.sb3_extractor import PixioFeaturesExtractor

        return PixioFeaturesExtractor
    raise AttributeError(f"module 'pixio_robot.policies' has no attribute {name!r}")
