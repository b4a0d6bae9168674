"""`python -m pixio_robot.train policy=pixio_act|pixio_diffusion`: LeRobot's own ACT / Diffusion Policy
(the `lerobot_policy_pixio` classes: CVAE + transformer, U-Net + diffusers scheduler) trained from the
project's train entry on a LeRobotDataset, saved the LeRobot way.

    build_lerobot_policy(choice, encoder, demo, cams, device) -> (policy, pre, post)
    LeRobotBatcher(demo, frames, policy)                         rows -> LeRobot batch (before `pre`)
    TrunkCacheEncoder(policy)                                    the frozen ACT trunk as a FeatureCache encoder
    save_lerobot_policy(policy, pre, post, dir)                  save_pretrained of the policy and processors

Batches follow LeRobot's `delta_timestamps`: observations at t-(n_obs_steps-1) .. t (clamped to the
episode), actions at t+offset .. (ACT: offset 0, chunk_size; Diffusion: offset 1-n_obs_steps,
horizon), indices outside the episode clamped and flagged in `action_is_pad`. Images reach the
processors as float [0,1] (channels first); with a frozen ACT trunk the camera keys hold the cached
trunk maps instead (`act_reads_cached_maps`), so the trunk runs once per frame of the dataset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from lerobot.utils.constants import ACTION, OBS_STATE

from pixio_robot.policies.constants import ACTION_PAD
from pixio_robot.policies.encoder_adapter import AdapterConfig, tensor_digest

PIXIO_POLICIES = ("pixio_act", "pixio_diffusion")  # LeRobot's ACT / Diffusion with a Pixio / timm trunk
BUILTIN_POLICIES = ("act", "diffusion")  # LeRobot's ACT / Diffusion as LeRobot builds them (ResNet-18 trunk)
LEROBOT_POLICIES = PIXIO_POLICIES + BUILTIN_POLICIES


@dataclass
class LeRobotPolicyChoice:
    """`policy=pixio_act|pixio_diffusion`: the type and LeRobot config fields (`options`, e.g.
    chunk_size, dim_model, optimizer_lr); the trunk comes from the train entry's `encoder.*`.

    `type=act|diffusion` (`policy=pixio_act policy.type=act`) trains LeRobot's built-in policy with
    its own torchvision ResNet-18 trunk, trained end to end, `encoder.*` unused: the baseline column
    of the LeRobot benchmark suites. Its trunk starts from random init unless
    `options.pretrained_backbone_weights` names torchvision weights (that downloads them)."""

    type: str = "pixio_act"  # pixio_act | pixio_diffusion (Pixio trunk) | act | diffusion (LeRobot's ResNet-18)
    options: dict[str, Any] = field(default_factory=dict)  # LeRobot ACTConfig / DiffusionConfig fields

    def __post_init__(self) -> None:
        if self.type not in LEROBOT_POLICIES:
            raise ValueError(f"policy.type={self.type!r} is not one of {LEROBOT_POLICIES}")
        bad = sorted(k for k in self.options if k.startswith("pixio_") or k in ("input_features", "output_features"))
        if bad:
            raise ValueError(f"policy.options {bad} are set by the train entry (encoder.* and the dataset); "
                             "remove them")


def trunk_fields(enc: AdapterConfig) -> dict:
    """The plugin's `pixio_*` fields from the train entry's encoder config."""
    return {"pixio_encoder_source": enc.source, "pixio_encoder_name": enc.name, "pixio_encoder_path": enc.path,
            "pixio_mode": enc.mode, "pixio_last_k": enc.last_k, "pixio_image_size": enc.image_size,
            "pixio_init_seed": enc.init_seed}


def build_lerobot_policy(choice: LeRobotPolicyChoice, enc: AdapterConfig, demo, cams: list[str],
                         device: torch.device):
    """LeRobot config from the dataset's features (the chosen cameras, observation.state, action),
    the policy class through LeRobot's factory, and its processors with the dataset's stats."""
    import lerobot_policy_pixio  # noqa: F401  registers pixio_act / pixio_diffusion
    from lerobot.configs import PreTrainedConfig
    from lerobot.policies.factory import get_policy_class, make_pre_post_processors
    from lerobot.utils.feature_utils import dataset_to_policy_features

    if demo.state_key not in (None, OBS_STATE):
        raise ValueError(f"{choice.type} reads the state from {OBS_STATE!r} (LeRobot's key); dataset.state_key="
                         f"{demo.state_key!r} is not supported: rename the feature, or use policy=mlp")
    if demo.action_key != ACTION:
        raise ValueError(f"{choice.type} predicts {ACTION!r} (LeRobot's key), not dataset.action_key="
                         f"{demo.action_key!r}")
    feats = dataset_to_policy_features(demo.dataset.meta.features)
    keep = [*cams] + ([OBS_STATE] if demo.state_key else [])
    inputs = {k: feats[k] for k in keep}
    cls = PreTrainedConfig.get_choice_class(choice.type)
    # built-in act / diffusion: LeRobot's ResNet trunk, random init offline (LeRobot's default downloads ImageNet)
    trunk = trunk_fields(enc) if choice.type in PIXIO_POLICIES else {"pretrained_backbone_weights": None}
    trunk.update(_typed_options(cls, choice.options))
    config = cls(input_features=inputs, output_features={ACTION: feats[ACTION]}, device=str(device),
                 push_to_hub=False, **trunk)
    policy = get_policy_class(choice.type)(config).to(device)
    pre, post = make_pre_post_processors(config, dataset_stats=demo.dataset.meta.stats)
    return policy, pre, post


def _typed_options(cls, options: dict) -> dict:
    """hydra hands lists; LeRobot's tuple fields (crop_shape, down_dims) must be tuples to save."""
    import dataclasses

    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"policy.options {unknown} are not fields of LeRobot's {cls.__name__}")
    out = {}
    for k, v in options.items():
        f = known[k]
        default = f.default if f.default is not dataclasses.MISSING else None
        out[k] = tuple(v) if isinstance(v, list) and (isinstance(default, tuple) or "tuple" in str(f.type)) else v
    return out


def action_window(policy) -> tuple[int, int, int]:
    """(n_obs_steps, first action offset, number of actions) of LeRobot's delta_timestamps."""
    c = policy.config
    if c.type in ("pixio_diffusion", "diffusion"):
        return c.n_obs_steps, 1 - c.n_obs_steps, c.horizon
    return 1, 0, c.chunk_size


class LeRobotBatcher:
    """Rows of a demo -> a LeRobot batch: cameras float [B,(T,)3,H,W] in [0,1] (or cached maps
    [B,C,h,w]), observation.state [B,(T,)S], action [B,K,A], action_is_pad [B,K]."""

    def __init__(self, demo, frames: dict[str, np.ndarray], policy, cached: bool = False) -> None:
        self.demo, self.frames, self.cached = demo, frames, cached
        self.n_obs, self.offset, self.n_act = action_window(policy)

    def batch(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        d = self.demo
        rows = np.asarray(rows, dtype=np.int64)
        start, end = d.ep_start[rows][:, None], d.ep_end[rows][:, None]
        obs = np.maximum(rows[:, None] - np.arange(self.n_obs - 1, -1, -1)[None], start)  # (B, T)
        act = rows[:, None] + self.offset + np.arange(self.n_act)[None]  # (B, K)
        pad = (act < start) | (act >= end)
        act = np.clip(act, start, end - 1)
        out: dict[str, torch.Tensor] = {}
        for key, arr in self.frames.items():
            x = torch.from_numpy(np.ascontiguousarray(arr[obs.reshape(-1)]))  # (B*T, ...)
            if not self.cached:
                x = x.permute(0, 3, 1, 2).float().div_(255.0)  # uint8 (B*T, H, W, 3) -> (B*T, 3, H, W)
            x = x.float().reshape(*obs.shape, *x.shape[1:])  # (B, T, ...)
            out[key] = x[:, 0] if self.n_obs == 1 else x
        if d.state_key:
            s = torch.from_numpy(d.states[obs])  # (B, T, S)
            out[OBS_STATE] = s[:, 0] if self.n_obs == 1 else s
        out[ACTION] = torch.from_numpy(d.actions[act])  # (B, K, A)
        out[ACTION_PAD] = torch.from_numpy(pad)
        return out

    def iterate(self, rows: np.ndarray, batch_size: int, rng: np.random.Generator | None = None):
        rows = rng.permutation(rows) if rng is not None else np.asarray(rows)
        for i in range(0, len(rows), batch_size):
            yield self.batch(rows[i:i + batch_size])


class TrunkCacheEncoder(torch.nn.Module):
    """The frozen trunk of a pixio_act policy in the FeatureCache's encoder contract: uint8
    [b,H,W,3] -> trunk maps [b,C,h,w]; keyed by the trunk weights and its preprocessing."""

    def __init__(self, policy, image_hw: tuple[int, int]) -> None:
        super().__init__()
        from pixio_robot.policies.lerobot.cache import _frozen_trunk

        self.trunk = _frozen_trunk(policy)
        self.feature_shape = tuple(self.trunk.map_shape(image_hw))

    def encoder_digest(self) -> str:
        return tensor_digest(self.trunk.backbone.state_dict())

    def preprocessing_spec(self) -> dict:
        s = self.trunk.spec
        return {"lerobot_trunk": "pixio_act", "source": s.source, "name": s.name, "image_size": s.image_size,
                "mean": self.trunk.mean.flatten().tolist(), "std": self.trunk.std.flatten().tolist(),
                "feature_shape": list(self.feature_shape)}

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        dev = self.trunk.mean.device
        x = images.to(dev).permute(0, 3, 1, 2).float().div_(255.0)  # (b, 3, H, W) in [0,1], as LeRobot's
        return self.trunk(x)  # (b, C, h, w)


def save_lerobot_policy(policy, pre, post, path) -> None:
    """LeRobot's pretrained format: config.json + model.safetensors + processor files."""
    from pathlib import Path

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    policy.save_pretrained(path)
    pre.save_pretrained(path)
    post.save_pretrained(path)
