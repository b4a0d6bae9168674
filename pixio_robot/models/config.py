"""Dataclass configs that rebuild every model (stored as JSON beside the weights)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# What Pixio (and MAE) normalise inputs with: the ImageNet statistics.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _pair(v: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


@dataclass
class EncoderConfig:
    """Pixio ViT encoder. Defaults are Pixio-B/16 at 256 px."""

    img_size: tuple[int, int] = (256, 256)
    patch_size: int = 16
    in_chans: int = 3
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    num_cls_tokens: int = 8
    qkv_bias: bool = True
    drop_path_rate: float = 0.0
    norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        self.img_size = _pair(self.img_size)
        if any(s % self.patch_size for s in self.img_size):
            raise ValueError(f"img_size {self.img_size} must be a multiple of patch_size {self.patch_size}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.num_cls_tokens < 1:
            raise ValueError("num_cls_tokens must be >= 1 (the global embedding is their mean)")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {self.drop_path_rate}")

    @property
    def grid_size(self) -> tuple[int, int]:
        return self.img_size[0] // self.patch_size, self.img_size[1] // self.patch_size


@dataclass
class DecoderConfig:
    """MAE decoder. Pixio: 512 wide, 32 deep, 16 heads; vanilla MAE: 512 x 8."""

    embed_dim: int = 512
    depth: int = 32
    num_heads: int = 16
    mlp_ratio: float = 4.0

    def __post_init__(self) -> None:
        if self.embed_dim % self.num_heads:
            raise ValueError(f"decoder embed_dim {self.embed_dim} not divisible by num_heads {self.num_heads}")


@dataclass
class MaskConfig:
    """Block masking: hide `ratio` of the g x g blocks of patches (g = `block`), per sample."""

    block: int = 4
    ratio: float = 0.75

    def __post_init__(self) -> None:
        if self.block < 1:
            raise ValueError(f"mask block must be >= 1 patch, got {self.block}")
        if not 0.0 < self.ratio < 1.0:
            raise ValueError(f"mask ratio must be in (0, 1), got {self.ratio}")


@dataclass
class MAEConfig:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    norm_pix_loss: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.encoder, dict):
            self.encoder = EncoderConfig(**self.encoder)
        if isinstance(self.decoder, dict):
            self.decoder = DecoderConfig(**self.decoder)
        if isinstance(self.mask, dict):
            self.mask = MaskConfig(**self.mask)
        gh, gw = self.encoder.grid_size
        if gh % self.mask.block or gw % self.mask.block:
            raise ValueError(
                f"patch grid {gh}x{gw} is not divisible by mask block {self.mask.block}: "
                f"choose img_size a multiple of {self.encoder.patch_size * self.mask.block}")


def config_to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def config_from_dict(cls: type, d: dict) -> Any:
    """Build `cls` from a dict, failing on unknown keys with the list of known ones."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {sorted(unknown)}; known: {sorted(known)}")
    return cls(**d)
