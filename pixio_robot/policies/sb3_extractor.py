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

from collections import deque

import gymnasium as gym
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from pixio_robot.policies.encoder_adapter import AdapterConfig, EncoderAdapter


class FrozenFeatureCache:
    """The features of the last few pixel batches a frozen encoder saw (`size` of them), owned by
    one SB3 policy (`pixio_robot.rl.agent.PixioSACPolicy` hands one to its extractors) and freed
    with it.

    One SAC gradient step hands the same replay batch to the encoder five times (actor and twice
    the critic on `obs`, actor and target critic on `next_obs`, each after its own preprocessing,
    so as new tensors). A frozen encoder gives the same features for the same pixels, so recent
    inputs are kept (by reference) and compared exactly (`torch.equal`, a memory pass, far cheaper
    than the encoder): 5 encoder passes per step become 2. Entries are keyed by the weights
    (digest) and the preprocessing, so the target critic's copy of the encoder shares them.
    `size=0` turns the reuse off."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self.entries: dict[tuple, deque] = {}

    def features(self, adapter: EncoderAdapter, key: tuple, x: torch.Tensor) -> torch.Tensor:
        if self.size <= 0:
            return adapter.encode(x)
        entries = self.entries.setdefault(key, deque(maxlen=self.size))
        for seen, feats in entries:
            if seen.shape == x.shape and seen.dtype == x.dtype and seen.device == x.device and torch.equal(seen, x):
                return feats
        feats = adapter.encode(x)
        entries.append((x.detach(), feats.detach()))
        return feats


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
        self.feature_cache: FrozenFeatureCache | None = None  # set by the policy that owns the extractors

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

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        if not self.adapter.frozen or self.feature_cache is None:
            return self.adapter(x)
        if getattr(self, "_frozen_key", None) is None:  # the weights in use (after any load), once: they are frozen
            self._frozen_key = (self.adapter.encoder_digest(), repr(self.adapter.config))
        return self.adapter.head(self.feature_cache.features(self.adapter, self._frozen_key, x))

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        pix = observations[self.pixels_key]
        if pix.ndim == 5:  # (B, T, H, W, 3) float in [0, 255]
            b, t = pix.shape[:2]
            x = pix.flatten(0, 1).permute(0, 3, 1, 2) / 255.0  # (B*T, 3, H, W)
            emb = self._embed(x).reshape(b, -1)  # (B, T*E)
        else:  # (B, 3, H, W) in [0, 1] after SB3's transpose + normalisation
            emb = self._embed(pix)  # (B, E)
        if self.state_key is None:
            return emb
        state = observations[self.state_key].float().flatten(1)  # (B, S)
        return torch.cat([emb, state], dim=1)
