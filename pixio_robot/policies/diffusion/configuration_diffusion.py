"""Configuration of the small diffusion head."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DiffusionConfig:
    """An MLP denoiser over a whole action chunk, conditioned on the frame embeddings of the last
    `history` frames and the state; cosine noise schedule, epsilon prediction, DDPM training with
    `num_train_timesteps`, deterministic DDIM sampling (eta 0) with `num_inference_steps`.
    Actions are min-max normalised to [-1, 1] (sampling clips there)."""

    type: str = "diffusion"
    history: int = 2
    chunk_size: int = 16
    n_action_steps: int = 8
    hidden_sizes: list[int] = field(default_factory=lambda: [512, 512, 512])
    time_embed_dim: int = 64
    num_train_timesteps: int = 100
    num_inference_steps: int = 10
    use_state: bool = True
    noise_seed: int = 0  # sampling noise is re-seeded by reset(): rollouts are reproducible

    def __post_init__(self) -> None:
        if self.type != "diffusion":
            raise ValueError(f"DiffusionConfig.type must be 'diffusion', got {self.type!r}")
        if self.history < 1:
            raise ValueError(f"policy.history must be >= 1, got {self.history}")
        if self.chunk_size < 1 or not 1 <= self.n_action_steps <= self.chunk_size:
            raise ValueError(f"need 1 <= n_action_steps ({self.n_action_steps}) <= chunk_size ({self.chunk_size})")
        if not 1 <= self.num_inference_steps <= self.num_train_timesteps:
            raise ValueError(f"need 1 <= num_inference_steps ({self.num_inference_steps}) <= num_train_timesteps "
                             f"({self.num_train_timesteps})")
        if self.time_embed_dim % 2:
            raise ValueError(f"time_embed_dim must be even, got {self.time_embed_dim}")
        self.hidden_sizes = [int(h) for h in self.hidden_sizes]
