"""Configuration of the CortexBench MLP head (the protocol PIXIO.md describes)."""

from __future__ import annotations

from dataclasses import dataclass, field

FUSIONS = ("flare", "concat")


@dataclass
class MLPConfig:
    """CortexBench's BC head: 3-frame history fused as in its `fuse_embeddings_flare` (deltas of
    consecutive embeddings + the latest), proprioception appended, BatchNorm on the input, MLP
    256x3 ReLU, MSE on raw actions; batch 256, lr 1e-3 live in the training config."""

    type: str = "mlp"  # the policy type (always mlp for this head)
    history: int = 3  # frames of embeddings per step (the current one and the ones before it), >= 1
    fusion: str = "flare"  # flare (deltas of consecutive embeddings + the latest) | concat (the embeddings)
    hidden_sizes: list[int] = field(default_factory=lambda: [256, 256, 256])  # widths of the ReLU layers
    use_state: bool = True  # append the proprioceptive state to the fused embeddings
    input_batchnorm: bool = True  # CortexBench trains mjrl's BatchNormMLP
    dropout: float = 0.0  # dropout after each hidden ReLU, in [0, 1); 0: none
    normalize_state: bool = False  # CortexBench feeds raw proprioception (the input BatchNorm scales it)
    normalize_action: bool = False  # CortexBench regresses raw actions

    def __post_init__(self) -> None:
        if self.type != "mlp":
            raise ValueError(f"MLPConfig.type must be 'mlp', got {self.type!r}")
        if self.history < 1:
            raise ValueError(f"policy.history must be >= 1, got {self.history}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"policy.fusion={self.fusion!r} is not one of {FUSIONS}")
        if not self.hidden_sizes or min(self.hidden_sizes) < 1:
            raise ValueError(f"policy.hidden_sizes must be positive widths, got {self.hidden_sizes}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"policy.dropout must be in [0, 1), got {self.dropout}")
        self.hidden_sizes = [int(h) for h in self.hidden_sizes]
