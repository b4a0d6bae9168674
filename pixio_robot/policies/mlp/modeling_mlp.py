"""CortexBench MLP policy: fused embedding history + proprioception -> BatchNorm -> MLP -> action.

Several cameras: each frame's embedding is the concatenation of every camera's embedding from the
one shared adapter (E = C x adapter.out_dim, in `spec.image_keys` order)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lerobot.utils.constants import ACTION
from torch import nn

from pixio_robot.policies.base import PixioPolicy, register_policy
from pixio_robot.policies.mlp.configuration_mlp import MLPConfig


def fuse_history(frames: torch.Tensor, fusion: str) -> torch.Tensor:
    """[B,T,E] -> [B,T*E]. flare: (e1-e0, ..., e_{T-1}-e_{T-2}, e_{T-1}); concat: e0..e_{T-1}."""
    if fusion == "concat" or frames.shape[1] == 1:
        return frames.flatten(1)
    deltas = frames[:, 1:] - frames[:, :-1]  # (B, T-1, E)
    return torch.cat([deltas, frames[:, -1:]], dim=1).flatten(1)  # (B, T*E)


@register_policy
class MLPPolicy(PixioPolicy):
    policy_type = "mlp"
    config_class = MLPConfig

    def __init__(self, config, encoder, spec) -> None:
        super().__init__(config, encoder, spec)
        c: MLPConfig = self.config
        if len(self.adapter.feature_shape) != 1 and self.adapter.config.embedding != "spatial":
            raise ValueError("the MLP head needs one embedding vector per frame")
        state_dim = spec.state_dim if c.use_state else 0
        self.embed_dim = len(self.camera_keys) * self.adapter.out_dim  # cameras joined, spec.image_keys order
        in_dim = c.history * self.embed_dim + state_dim
        layers: list[nn.Module] = [nn.BatchNorm1d(in_dim)] if c.input_batchnorm else []
        width = in_dim
        for h in c.hidden_sizes:
            layers += [nn.Linear(width, h), nn.ReLU()]
            if c.dropout > 0:
                layers.append(nn.Dropout(c.dropout))
            width = h
        layers.append(nn.Linear(width, spec.action_dim))
        self.mlp = nn.Sequential(*layers)
        self.in_dim = in_dim

    @property
    def n_obs_steps(self) -> int:
        return self.config.history

    def normalize_state(self, state: torch.Tensor) -> torch.Tensor:
        return super().normalize_state(state) if self.config.normalize_state else state

    def normalize_action(self, action: torch.Tensor) -> torch.Tensor:
        return super().normalize_action(action) if self.config.normalize_action else action

    def unnormalize_action(self, action: torch.Tensor) -> torch.Tensor:
        return super().unnormalize_action(action) if self.config.normalize_action else action

    def predict(self, frames: torch.Tensor, state: torch.Tensor | None) -> torch.Tensor:
        if frames.shape[1] != self.config.history:
            raise ValueError(f"expected a history of {self.config.history} frames, got {frames.shape[1]}")
        x = fuse_history(frames, self.config.fusion)  # (B, T*E)
        if state is not None:
            x = torch.cat([x, state], dim=1)  # (B, T*E + S)
        return self.mlp(x)  # (B, A)

    def compute_loss(self, frames, state, batch):
        target = batch[ACTION].to(self.device).float()
        if target.ndim == 3:  # (B, chunk, A): the MLP predicts the current action only
            target = target[:, 0]
        pred = self.predict(frames, state)
        loss = F.mse_loss(pred, self.normalize_action(target))
        return loss, {"mse": loss.detach()}
