"""ACT-style policy: image tokens + state token -> transformer -> a chunk of future actions.

With `encoder.embedding=spatial` the image tokens are the encoder's patch tokens (one memory
token per patch, the spatial head is bypassed); with the other embeddings one token per frame.
"""

from __future__ import annotations

import torch
from torch import nn

from pixio_robot.policies.act.configuration_act import ACTConfig
from pixio_robot.policies.base import PixioPolicy, register_policy
from pixio_robot.policies.constants import ACTION, ACTION_PAD


@register_policy
class ACTPolicy(PixioPolicy):
    policy_type = "act"
    config_class = ACTConfig

    def __init__(self, config, encoder, spec) -> None:
        super().__init__(config, encoder, spec)
        c: ACTConfig = self.config
        self.token_mode = len(self.adapter.feature_shape) == 2  # patch tokens (N, D)
        if self.token_mode:
            n_img, width = self.adapter.feature_shape
        else:
            n_img, width = 1, self.adapter.out_dim
        self.image_proj = nn.Linear(width, c.d_model)
        self.use_state = c.use_state and spec.state_dim > 0
        self.state_proj = nn.Linear(spec.state_dim, c.d_model) if self.use_state else None
        n_mem = n_img + int(self.use_state)
        self.memory_pos = nn.Parameter(torch.zeros(1, n_mem, c.d_model))
        self.queries = nn.Parameter(torch.zeros(1, c.chunk_size, c.d_model))
        nn.init.trunc_normal_(self.memory_pos, std=0.02)
        nn.init.trunc_normal_(self.queries, std=0.02)
        layer = dict(d_model=c.d_model, nhead=c.n_heads, dim_feedforward=c.dim_feedforward, dropout=c.dropout,
                     batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(**layer), c.n_encoder_layers,
                                             norm=nn.LayerNorm(c.d_model), enable_nested_tensor=False)
        self.decoder = nn.TransformerDecoder(nn.TransformerDecoderLayer(**layer), c.n_decoder_layers,
                                             norm=nn.LayerNorm(c.d_model))
        self.action_head = nn.Linear(c.d_model, spec.action_dim)
        self._queue: torch.Tensor | None = None  # (B, k, A) actions still to execute
        self._ens: torch.Tensor | None = None  # (B, C, A) running weighted mean for the next C steps
        self._ens_count: torch.Tensor | None = None  # (C,) predictions averaged into each step

    def frame_repr(self, features: torch.Tensor) -> torch.Tensor:
        return features if self.token_mode else self.adapter.head(features)

    def reset(self) -> None:
        super().reset()
        self._queue = None
        self._ens = self._ens_count = None

    def _ensemble(self, chunk: torch.Tensor) -> torch.Tensor:
        """Fold a new chunk [B,C,A] into the running means; pop and return this step's action."""
        c = chunk.shape[1]
        w = torch.exp(-self.config.temporal_ensemble_coeff * torch.arange(c, device=chunk.device))  # (C,)
        cum = w.cumsum(0)  # cum[n-1]: total weight of n predictions
        if self._ens is None or self._ens.shape[0] != chunk.shape[0]:
            self._ens, self._ens_count = chunk.clone(), torch.ones(c, dtype=torch.long, device=chunk.device)
        else:
            n = self._ens_count  # (C-1,) predictions already averaged into the overlapping steps
            old = self._ens * cum[n - 1][None, :, None]
            new = (old + chunk[:, :-1] * w[n][None, :, None]) / cum[n][None, :, None]
            self._ens = torch.cat([new, chunk[:, -1:]], dim=1)
            self._ens_count = torch.cat([(n + 1).clamp_max(c), n.new_ones(1)])
        action = self._ens[:, 0]
        self._ens, self._ens_count = self._ens[:, 1:], self._ens_count[1:]
        return action

    def predict(self, frames: torch.Tensor, state: torch.Tensor | None) -> torch.Tensor:
        """frames [B,1,N,D] (tokens) or [B,1,E]; state [B,S] -> normalised actions [B,chunk,A]."""
        cur = frames[:, -1]
        tokens = self.image_proj(cur if self.token_mode else cur[:, None])  # (B, N or 1, d)
        if self.state_proj is not None:
            tokens = torch.cat([tokens, self.state_proj(state)[:, None]], dim=1)  # (B, M, d)
        memory = tokens + self.memory_pos
        tgt = self.queries.expand(memory.shape[0], -1, -1)  # (B, chunk, d)
        return self.action_head(self.decoder(tgt, self.encoder(memory)))  # (B, chunk, A)

    def compute_loss(self, frames, state, batch):
        c: ACTConfig = self.config
        target = batch[ACTION].to(self.device).float()
        if target.ndim == 2:
            target = target[:, None]  # (B, 1, A)
        if target.shape[1] < c.chunk_size:
            raise ValueError(f"ACT needs action chunks of {c.chunk_size} steps, got {target.shape[1]}")
        target = self.normalize_action(target[:, : c.chunk_size])
        pad = batch.get(ACTION_PAD)
        valid = torch.ones(target.shape[:2], device=self.device) if pad is None else \
            (~pad[:, : c.chunk_size].to(self.device).bool()).float()  # (B, chunk)
        err = (self.predict(frames, state) - target).abs().mean(dim=-1)  # (B, chunk)
        loss = (err * valid).sum() / valid.sum().clamp_min(1.0)
        return loss, {"l1": loss.detach()}

    @torch.no_grad()
    def select_action(self, batch):
        """Pop the next queued action; encode the observation only when a new chunk is needed."""
        img = torch.as_tensor(batch[self.image_key_in(batch)])
        b = 1 if img.ndim == 3 else img.shape[0]
        if self.config.temporal_ensemble_coeff is None and self._queue is not None and self._queue.shape[1] > 0 and self._queue.shape[0] == b:
            action, self._queue = self._queue[:, 0], self._queue[:, 1:]
            return action
        return super().select_action(batch)

    def act(self, frames: torch.Tensor, state: torch.Tensor | None) -> torch.Tensor:
        if self.config.temporal_ensemble_coeff is not None:
            return self._ensemble(self.unnormalize_action(self.predict(frames, state)))
        b = frames.shape[0]
        if self._queue is None or self._queue.shape[1] == 0 or self._queue.shape[0] != b:
            chunk = self.unnormalize_action(self.predict(frames, state))  # (B, chunk, A)
            self._queue = chunk[:, : self.config.n_action_steps]
        action, self._queue = self._queue[:, 0], self._queue[:, 1:]
        return action
