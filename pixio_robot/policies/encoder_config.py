"""`AdapterConfig`: which encoder a policy uses and how its tokens become one embedding per frame
(the `encoder:` group of train / rl / benchmark). Kept apart from the adapter and the backbones so
that both import it and neither imports the other."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

SOURCES = ("pixio", "checkpoint", "timm")
MODES = ("frozen", "finetune", "last_k")
EMBEDDINGS = ("mean_cls", "all_cls", "spatial", "multi_block")


@dataclass
class AdapterConfig:
    """How to build the encoder and turn its tokens into one embedding per frame."""

    source: str = "pixio"  # pixio (registry name, random init) | checkpoint (path) | timm (name)
    name: str = "pixio_vittest"  # registry / timm model name (ignored for source=checkpoint)
    path: str | None = None  # checkpoint dir / .pth / .safetensors; for timm an optional weights file
    mode: str = "frozen"  # frozen | finetune | last_k
    last_k: int = 1  # trainable last blocks (+ final norm) when mode=last_k
    embedding: str = "mean_cls"  # mean_cls | all_cls | spatial | multi_block
    blocks: list[int] | None = None  # multi_block indices (None: 4 evenly spaced, as the paper)
    spatial_channels: int = 64  # conv width of the spatial head
    spatial_dim: int = 256  # output width of the spatial head
    image_size: int | None = None  # square side fed to the encoder; None: its native size
    init_seed: int = 0  # seed of the random init (source=pixio / timm without weights)

    def __post_init__(self) -> None:
        for field, allowed in (("source", SOURCES), ("mode", MODES), ("embedding", EMBEDDINGS)):
            if getattr(self, field) not in allowed:
                raise ValueError(f"encoder.{field}={getattr(self, field)!r} is not one of {allowed}")
        if self.source == "checkpoint" and not self.path:
            raise ValueError("encoder.source=checkpoint needs encoder.path (a save_encoder directory, "
                             "a .safetensors file or an official Pixio .pth)")
        if self.mode == "last_k" and self.last_k < 1:
            raise ValueError(f"encoder.last_k must be >= 1 with mode=last_k, got {self.last_k}")
        if self.image_size is not None and self.image_size <= 0:
            raise ValueError(f"encoder.image_size must be positive, got {self.image_size}")
        if self.blocks is not None:
            self.blocks = [int(b) for b in self.blocks]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> AdapterConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown encoder config keys {unknown}; known: {sorted(known)}")
        return cls(**d)
