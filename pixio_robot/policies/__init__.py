"""Policies on a Pixio backbone: encoder adapter, imitation heads (one folder per type), policy
I/O and the stable-baselines3 feature extractor (imported lazily: SB3 is only needed for RL)."""

from pixio_robot.policies.act import ACTConfig, ACTPolicy
from pixio_robot.policies.base import POLICY_REGISTRY, PixioPolicy, PolicySpec, register_policy
from pixio_robot.policies.diffusion import DiffusionConfig, DiffusionPolicy
from pixio_robot.policies.encoder_adapter import AdapterConfig, EncoderAdapter, build_adapter
from pixio_robot.policies.io import PolicyLoadError, load_policy, make_policy, read_policy_config, save_policy
from pixio_robot.policies.mlp import MLPConfig, MLPPolicy

__all__ = [
    "ACTConfig",
    "ACTPolicy",
    "AdapterConfig",
    "DiffusionConfig",
    "DiffusionPolicy",
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
