"""Frozen-trunk feature reuse for `pixio_act`: encode every frame once, train on the maps.

    maps = encode_act_frames(policy, images)       uint8/float frames -> (N, C, h, w) trunk maps
    with act_reads_cached_maps(policy): ...         batch[camera] holds maps instead of images

LeRobot's path re-encodes every frame of every batch; with a frozen trunk the map of a frame never
changes, so reading it back gives the same loss (benchmarks/bench_lerobot_policies.py times both).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn


class PassThroughMap(nn.Module):
    """ACT's backbone contract for an input that already is the trunk's map."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"feature_map": x}


def _frozen_trunk(policy):
    trunk = policy.model.backbone.trunk
    if not trunk.frozen:
        raise ValueError(f"cached maps need a frozen trunk (pixio_mode=frozen), this one is {trunk.spec.mode}: "
                         "a training trunk changes the map of the same frame")
    return trunk


@torch.no_grad()
def encode_act_frames(policy, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Frames (N, 3, H, W) in [0,1] (as LeRobot's processors hand them over) -> maps (N, C, h, w)."""
    trunk = _frozen_trunk(policy)
    dev = next(trunk.parameters()).device
    return torch.cat([trunk(images[i:i + batch_size].to(dev)).cpu() for i in range(0, len(images), batch_size)])


@contextmanager
def act_reads_cached_maps(policy):
    """Inside, `policy.forward(batch)` takes trunk maps in the camera keys (the trunk is bypassed)."""
    _frozen_trunk(policy)
    real = policy.model.backbone
    policy.model.backbone = PassThroughMap()
    try:
        yield policy
    finally:
        policy.model.backbone = real
