"""Diffusion policy: denoise a normalised action chunk conditioned on embeddings + state.

Training: x0 = chunk in [-1,1]; t ~ U{0..T-1}; x_t = sqrt(abar_t) x0 + sqrt(1-abar_t) eps; loss =
MSE(eps_hat, eps) over the valid (unpadded) steps. Sampling (DDIM, eta 0): from x ~ N(0, I), for
t in a strided schedule: x0_hat = clip((x - sqrt(1-abar_t) eps_hat) / sqrt(abar_t), -1, 1);
x = sqrt(abar_prev) x0_hat + sqrt(1-abar_prev) eps_hat.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pixio_robot.policies.base import PixioPolicy, register_policy
from pixio_robot.policies.constants import ACTION, ACTION_PAD, EPISODE_SEED
from pixio_robot.policies.diffusion.configuration_diffusion import DiffusionConfig


def cosine_alpha_bars(steps: int, s: float = 0.008) -> torch.Tensor:
    """Cumulative signal level abar_t, t = 0..steps-1 (Nichol & Dhariwal's cosine schedule)."""
    x = torch.linspace(0, steps, steps + 1, dtype=torch.float64)
    f = torch.cos(((x / steps) + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    return torch.cumprod(1 - betas, dim=0).float()


def time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding [B] -> [B, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device) / half)
    ang = t.float()[:, None] * freqs[None]
    return torch.cat([ang.sin(), ang.cos()], dim=1)


@register_policy
class DiffusionPolicy(PixioPolicy):
    policy_type = "diffusion"
    config_class = DiffusionConfig

    def __init__(self, config, encoder, spec) -> None:
        super().__init__(config, encoder, spec)
        c: DiffusionConfig = self.config
        a = spec.action_dim
        lo = torch.as_tensor(spec.stats.get(ACTION, {}).get("min", [-1.0] * a), dtype=torch.float32)
        hi = torch.as_tensor(spec.stats.get(ACTION, {}).get("max", [1.0] * a), dtype=torch.float32)
        self.register_buffer("action_lo", lo)
        self.register_buffer("action_span", (hi - lo).clamp_min(1e-4))
        self.register_buffer("alpha_bars", cosine_alpha_bars(c.num_train_timesteps))
        cond = c.history * self.adapter.out_dim + (spec.state_dim if c.use_state else 0)
        width = c.chunk_size * a + cond + c.time_embed_dim
        layers: list[nn.Module] = []
        for h in c.hidden_sizes:
            layers += [nn.Linear(width, h), nn.Mish()]
            width = h
        layers.append(nn.Linear(width, c.chunk_size * a))
        self.denoiser = nn.Sequential(*layers)
        self._queue: torch.Tensor | None = None
        self._gen: torch.Generator | None = None
        self._row_gens: list[torch.Generator] | None = None
        self._row_seeds: list[int] | None = None

    @property
    def n_obs_steps(self) -> int:
        return self.config.history

    # actions in [-1, 1] by min-max (the sampler clips there)
    def normalize_action(self, action: torch.Tensor) -> torch.Tensor:
        return (action - self.action_lo) / self.action_span * 2 - 1

    def unnormalize_action(self, action: torch.Tensor) -> torch.Tensor:
        return (action + 1) / 2 * self.action_span + self.action_lo

    def _cond(self, frames: torch.Tensor, state: torch.Tensor | None) -> torch.Tensor:
        cond = frames.flatten(1)  # (B, T*E)
        return cond if state is None else torch.cat([cond, state], dim=1)

    def _eps(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        inp = torch.cat([x.flatten(1), cond, time_embedding(t, self.config.time_embed_dim)], dim=1)
        return self.denoiser(inp).view(b, self.config.chunk_size, -1)  # (B, C, A)

    def compute_loss(self, frames, state, batch):
        c: DiffusionConfig = self.config
        target = batch[ACTION].to(self.device).float()
        if target.ndim == 2:
            target = target[:, None]
        if target.shape[1] < c.chunk_size:
            raise ValueError(f"diffusion needs action chunks of {c.chunk_size} steps, got {target.shape[1]}")
        x0 = self.normalize_action(target[:, : c.chunk_size])  # (B, C, A)
        b = x0.shape[0]
        t = torch.randint(0, c.num_train_timesteps, (b,), device=self.device)
        noise = torch.randn_like(x0)
        ab = self.alpha_bars[t][:, None, None]
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
        err = F.mse_loss(self._eps(xt, t, self._cond(frames, state)), noise, reduction="none").mean(-1)  # (B, C)
        pad = batch.get(ACTION_PAD)
        valid = torch.ones_like(err) if pad is None else (~pad[:, : c.chunk_size].to(self.device).bool()).float()
        loss = (err * valid).sum() / valid.sum().clamp_min(1.0)
        return loss, {"eps_mse": loss.detach()}

    @torch.no_grad()
    def predict(self, frames: torch.Tensor, state: torch.Tensor | None) -> torch.Tensor:
        """DDIM sampling -> normalised chunk [B, C, A] in [-1, 1]."""
        c: DiffusionConfig = self.config
        if self._gen is None or self._gen.device != self.device:
            self._gen = torch.Generator(device=self.device).manual_seed(c.noise_seed)
        b, a = frames.shape[0], self.spec.action_dim
        if self._row_gens is not None and len(self._row_gens) == b:  # one noise stream per episode
            x = torch.stack([torch.randn(c.chunk_size, a, generator=g) for g in self._row_gens]).to(self.device)
        else:
            x = torch.randn(b, c.chunk_size, a, generator=self._gen, device=self.device)
        cond = self._cond(frames, state)
        steps = torch.linspace(c.num_train_timesteps - 1, 0, c.num_inference_steps).round().long().tolist()
        for i, t in enumerate(steps):
            ab = self.alpha_bars[t]
            ab_prev = self.alpha_bars[steps[i + 1]] if i + 1 < len(steps) else torch.ones((), device=self.device)
            eps = self._eps(x, torch.full((b,), t, device=self.device), cond)
            x0 = ((x - (1 - ab).sqrt() * eps) / ab.sqrt()).clamp(-1, 1)
            x = ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps
        return x

    def reset(self) -> None:
        super().reset()
        self._queue = None
        self._gen = None
        self._row_gens = None
        self._row_seeds = None

    def _seed_rows(self, batch) -> None:
        """With `episode_seed` in the batch (the evaluator sends it), each row draws its sampling
        noise from its own generator seeded by (noise_seed, episode seed): an episode's actions do
        not depend on how many envs ran beside it. Without it, one generator for the batch."""
        seeds = batch.get(EPISODE_SEED)
        if seeds is None:
            self._row_gens = self._row_seeds = None
            return
        seeds = [int(x) for x in torch.as_tensor(seeds).reshape(-1).tolist()]
        if seeds != self._row_seeds:
            self._row_seeds = seeds
            self._row_gens = [torch.Generator().manual_seed(self.config.noise_seed * 1_000_003 + s) for s in seeds]

    @torch.no_grad()
    def select_action(self, batch):
        self._seed_rows(batch)
        img = torch.as_tensor(batch[self.image_key_in(batch)])
        b = 1 if img.ndim == 3 else img.shape[0]
        if self._queue is not None and self._queue.shape[1] > 0 and self._queue.shape[0] == b:
            action, self._queue = self._queue[:, 0], self._queue[:, 1:]
            self._update_history_only(batch)
            return action
        return super().select_action(batch)

    def _update_history_only(self, batch) -> None:
        """Keep the frame history current while executing a queued chunk."""
        was = self.training
        self.eval()
        try:
            img = torch.as_tensor(batch[self.image_key_in(batch)])
            if img.ndim == 3:
                img = img[None]
            if img.ndim == 4:
                self._update_history(self.frame_repr(self.adapter.encode(img)))
        finally:
            self.train(was)

    def act(self, frames: torch.Tensor, state: torch.Tensor | None) -> torch.Tensor:
        chunk = self.unnormalize_action(self.predict(frames, state))  # (B, C, A)
        self._queue = chunk[:, : self.config.n_action_steps]
        action, self._queue = self._queue[:, 0], self._queue[:, 1:]
        return action
