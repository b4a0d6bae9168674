"""Configuration of the small ACT-style action-chunking head."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ACTConfig:
    """A transformer encoder over [image tokens, state token] and a decoder with `chunk_size`
    learned queries predicting the next actions; `n_action_steps` of each chunk are executed
    before predicting again. No CVAE (deterministic L1 regression), unlike the original ACT."""

    type: str = "act"
    chunk_size: int = 16
    n_action_steps: int = 8
    d_model: int = 128
    n_heads: int = 4
    n_encoder_layers: int = 2
    n_decoder_layers: int = 2
    dim_feedforward: int = 512
    dropout: float = 0.1
    use_state: bool = True
    temporal_ensemble_coeff: float | None = None  # ACT's temporal ensembling (e.g. 0.01): predict a
    # chunk every step and execute the exp(-coeff * i)-weighted mean of all predictions for this
    # step, oldest first (i=0); needs n_action_steps=1

    def __post_init__(self) -> None:
        if self.type != "act":
            raise ValueError(f"ACTConfig.type must be 'act', got {self.type!r}")
        if self.chunk_size < 1 or not 1 <= self.n_action_steps <= self.chunk_size:
            raise ValueError(f"need 1 <= n_action_steps ({self.n_action_steps}) <= chunk_size ({self.chunk_size})")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.temporal_ensemble_coeff is not None and self.n_action_steps != 1:
            raise ValueError("temporal_ensemble_coeff needs n_action_steps=1 (a new chunk is predicted every step)")
        if self.n_encoder_layers < 1 or self.n_decoder_layers < 1:
            raise ValueError("n_encoder_layers and n_decoder_layers must be >= 1")
