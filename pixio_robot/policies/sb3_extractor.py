"""stable-baselines3 feature extractor: the Pixio adapter on `pixels` (+ the `state` vector when
`state_key` names one that the observation space holds; `python -m pixio_robot.rl` passes
`state_key=None` for `obs=pixels`, where the env wrapper also drops `state`, and `"state"` for
`obs=pixels_state`).

SB3 calls it once per env step for the whole vectorised batch (one batched encoder call).
SB3 moves channels-last uint8 image spaces to channels-first and divides by 255 before the
extractor (`normalize_images=True`, the default), so `pixels` arrive as float [B,3,H,W] in [0,1];
a frame stack [T,H,W,3] is not an SB3 image space and arrives as float [B,T,H,W,3] in [0,255].
`normalize_images=False` would hand the adapter 0..255 floats: `pixio_robot.rl` refuses it.
"""

from __future__ import annotations

import gymnasium as gym
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from pixio_robot.policies.encoder_adapter import AdapterConfig, EncoderAdapter


class PixioFeaturesExtractor(BaseFeaturesExtractor):
    """Dict(pixels, state) -> concat(adapter embedding of each frame, state) [B, features_dim]."""

    def __init__(self, observation_space: gym.spaces.Dict, encoder: dict | None = None,
                 pixels_key: str = "pixels", state_key: str | None = "state") -> None:
        if not isinstance(observation_space, gym.spaces.Dict) or pixels_key not in observation_space.spaces:
            raise ValueError(f"PixioFeaturesExtractor needs a Dict observation space with {pixels_key!r}; got "
                             f"{observation_space}. Use obs=state for state-only envs")
        adapter = EncoderAdapter(AdapterConfig.from_dict(dict(encoder or {})))
        pix_shape = observation_space[pixels_key].shape
        if len(pix_shape) not in (3, 4):
            raise ValueError(f"{pixels_key!r} must be [H,W,3] or [T,H,W,3], got {pix_shape}")
        n_frames = pix_shape[0] if len(pix_shape) == 4 else 1
        state_dim = 0
        if state_key is not None and state_key in observation_space.spaces:
            state_dim = int(torch.tensor(observation_space[state_key].shape).prod().item())
        else:
            state_key = None
        super().__init__(observation_space, features_dim=n_frames * adapter.out_dim + state_dim)
        self.adapter = adapter
        self._encoder_config = dict(encoder or {})
        self.source_digest = adapter.encoder_digest()  # the weights the config names
        self.pixels_key, self.state_key = pixels_key, state_key
        self.n_frames = n_frames

    def restore_encoder(self) -> bool:
        """Put the backbone's source weights back (rebuilt from the same config: the checkpoint, or
        the seeded random init) if something re-initialised them. SB3's PPO does exactly that:
        `ortho_init` applies to every Linear / Conv in the features extractor, encoder included.
        Returns whether a restore was needed."""
        if self.adapter.encoder_digest() == self.source_digest:
            return False
        fresh = EncoderAdapter(AdapterConfig.from_dict(self._encoder_config))
        self.adapter.backbone.load_state_dict(fresh.backbone.state_dict())
        if self.adapter.encoder_digest() != self.source_digest:
            raise RuntimeError("could not restore the encoder's source weights (the checkpoint changed on disk?)")
        return True

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        pix = observations[self.pixels_key]
        if pix.ndim == 5:  # (B, T, H, W, 3) float in [0, 255]
            b, t = pix.shape[:2]
            x = pix.flatten(0, 1).permute(0, 3, 1, 2) / 255.0  # (B*T, 3, H, W)
            emb = self.adapter(x).reshape(b, -1)  # (B, T*E)
        else:  # (B, 3, H, W) in [0, 1] after SB3's transpose + normalisation
            emb = self.adapter(pix)  # (B, E)
        if self.state_key is None:
            return emb
        state = observations[self.state_key].float().flatten(1)  # (B, S)
        return torch.cat([emb, state], dim=1)
