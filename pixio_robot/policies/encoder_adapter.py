"""Encoder adapter: one interface from raw camera frames to policy embeddings.

Used by the imitation policies and by the SB3 feature extractor alike. Stages:

    preprocess(images)  uint8 [B,H,W,3] (or float [B,3,H,W] in [0,1]) -> resized, normalised
                        float [B,3,S,S]: each encoder as its makers feed it (Pixio: ImageNet
                        mean/std; timm: `resolve_model_data_config` mean/std, and its input size
                        when `image_size` is unset); recorded in `preprocessing_spec()`
    encode(images)      backbone part (no grad when frozen) -> features, the part the feature
                        cache stores: mean_cls [B,D] | all_cls [B,K*D] | multi_block [B,nb*D] |
                        spatial [B,N,D] (patch tokens)
    head(features)      trainable part -> embedding [B, out_dim] (identity except `spatial`)

Sources: a Pixio size from the project registry (random init, seeded), a project checkpoint or an
official `.pth` (through `pixio_robot.models.load_encoder`), or any timm model name (never
downloads: `pretrained=False`, weights only from a file the user names).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pixio_robot.policies.backbones import IMAGENET_MEAN, IMAGENET_STD, Backbone, build_backbone
from pixio_robot.policies.encoder_config import EMBEDDINGS, MODES, SOURCES, AdapterConfig

__all__ = ["EMBEDDINGS", "IMAGENET_MEAN", "IMAGENET_STD", "MODES", "SOURCES", "AdapterConfig", "EncoderAdapter",
           "build_adapter", "tensor_digest"]




def tensor_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 (16 hex) over names, dtypes, shapes and bytes of a state dict."""
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().to("cpu").contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


class SpatialHead(nn.Module):
    """Patch tokens [B,N,D] on a (h,w) grid -> conv 3x3/2 -> GroupNorm -> ReLU -> Linear -> [B,out]."""

    def __init__(self, dim: int, grid: tuple[int, int], channels: int, out_dim: int) -> None:
        super().__init__()
        self.grid = grid
        self.conv = nn.Conv2d(dim, channels, kernel_size=3, stride=2, padding=1)
        self.norm = nn.GroupNorm(min(8, channels), channels)
        gh, gw = (grid[0] + 1) // 2, (grid[1] + 1) // 2
        self.proj = nn.Sequential(nn.Linear(channels * gh * gw, out_dim), nn.LayerNorm(out_dim), nn.ReLU())

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        b, n, d = patches.shape
        h, w = self.grid
        if n != h * w:
            raise ValueError(f"spatial head built for a {h}x{w} grid got {n} patch tokens")
        x = patches.transpose(1, 2).reshape(b, d, h, w)  # (B, D, h, w)
        x = F.relu(self.norm(self.conv(x)))  # (B, C, h/2, w/2)
        return self.proj(x.flatten(1))  # (B, out)


class EncoderAdapter(nn.Module):
    """Raw frames -> embedding [B, out_dim]; resize and the encoder's own normalisation inside."""

    def __init__(self, config: AdapterConfig | dict | None = None) -> None:
        super().__init__()
        if config is None:
            config = AdapterConfig()
        if isinstance(config, dict):
            config = AdapterConfig.from_dict(config)
        self.config = c = config
        self.backbone: Backbone = build_backbone(c)
        self.image_size = int(c.image_size or self.backbone.native_size)
        p = self.backbone.patch_size
        if p and self.image_size % p:
            raise ValueError(f"encoder.image_size={self.image_size} must be a multiple of the patch size {p}")
        self.norm_mean, self.norm_std = tuple(self.backbone.mean), tuple(self.backbone.std)
        self.register_buffer("mean", torch.tensor(self.norm_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.norm_std).view(1, 3, 1, 1), persistent=False)
        d = self.backbone.embed_dim
        if c.embedding == "spatial":
            grid = self.backbone.grid_for(self.image_size)
            self.feature_shape: tuple[int, ...] = (grid[0] * grid[1], d)
            self.head: nn.Module = SpatialHead(d, grid, c.spatial_channels, c.spatial_dim)
            self.out_dim = c.spatial_dim
        else:
            if c.embedding == "mean_cls":
                width = d
            elif c.embedding == "all_cls":
                if self.backbone.num_cls_tokens < 1:
                    raise ValueError(f"embedding=all_cls needs class tokens; {c.name} has none "
                                     "(use mean_cls or spatial)")
                width = d * self.backbone.num_cls_tokens
            else:
                width = d * len(self.backbone.resolve_blocks(c.blocks))
            self.feature_shape = (width,)
            self.head = nn.Identity()
            self.out_dim = width
        self._apply_mode()

    # -- trainability ------------------------------------------------------------------------
    def _apply_mode(self) -> None:
        mode = self.config.mode
        self.backbone.requires_grad_(mode == "finetune")
        if mode == "last_k":
            self.backbone.unfreeze_last(self.config.last_k)
        if mode == "frozen":
            self.backbone.eval()

    @property
    def frozen(self) -> bool:
        return self.config.mode == "frozen"

    def train(self, mode: bool = True) -> EncoderAdapter:
        super().train(mode)
        if self.frozen:  # dropout / drop path stay off in a frozen encoder
            self.backbone.eval()
        return self

    # -- stages ------------------------------------------------------------------------------
    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [B,H,W,3] or float [B,3,H,W] in [0,1] -> normalised float [B,3,S,S]."""
        if images.ndim != 4:
            raise ValueError(f"expected a batch of images [B,H,W,3] uint8 or [B,3,H,W] float, got "
                             f"shape {tuple(images.shape)}")
        if images.dtype == torch.uint8:
            if images.shape[-1] != 3:
                raise ValueError(f"uint8 images must be channels-last [B,H,W,3], got {tuple(images.shape)}")
            x = images.permute(0, 3, 1, 2).float().div_(255.0)  # (B, 3, H, W)
        else:
            if images.shape[1] != 3:
                raise ValueError(f"float images must be channels-first [B,3,H,W] in [0,1], got "
                                 f"{tuple(images.shape)}")
            x = images.float()
        x = x.to(self.mean.device)
        s = self.image_size
        if x.shape[-2:] != (s, s):
            down = x.shape[-2] > s or x.shape[-1] > s
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=down)
        return (x - self.mean) / self.std

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        if c.embedding == "mean_cls":
            return self.backbone.global_embedding(x)  # (B, D)
        if c.embedding == "all_cls":
            return self.backbone.tokens(x)[0].flatten(1)  # (B, K*D)
        if c.embedding == "multi_block":
            return self.backbone.block_embeddings(x, c.blocks)  # (B, nb*D)
        return self.backbone.tokens(x)[1]  # (B, N, D)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Backbone features of raw frames (what the feature cache stores)."""
        x = self.preprocess(images)
        if self.frozen:
            with torch.no_grad():
                return self._encode(x)
        return self._encode(x)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.encode(images))

    # -- identity ----------------------------------------------------------------------------
    def encoder_digest(self) -> str:
        """Hash of the backbone weights (changes when any weight changes)."""
        return tensor_digest(self.backbone.state_dict())

    def preprocessing_spec(self) -> dict:
        """Everything besides the weights that changes the features the backbone emits."""
        c = self.config
        return {"source": c.source, "name": c.name if c.source != "checkpoint" else Path(c.path).name,
                "image_size": self.image_size, "mean": list(self.norm_mean), "std": list(self.norm_std),
                "resize": "bilinear-antialias", "embedding": c.embedding,
                "blocks": self.backbone.resolve_blocks(c.blocks) if c.embedding == "multi_block" else None,
                "feature_shape": list(self.feature_shape), "arch": self._arch()}

    def _arch(self) -> dict | str:
        """Architecture settings that are not weights (heads, norm eps, ...): the same weights under
        another config give other features."""
        cfg = getattr(self.backbone.model, "config", None)
        if dataclasses.is_dataclass(cfg):
            return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))
        return f"{type(self.backbone.model).__module__}.{type(self.backbone.model).__name__}"

    def cache_key(self) -> str:
        spec = json.dumps(self.preprocessing_spec(), sort_keys=True)
        return hashlib.sha256((self.encoder_digest() + spec).encode()).hexdigest()[:16]

    def reference(self) -> dict:
        """What a saved policy records about its encoder."""
        return {"config": self.config.to_dict(), "digest": self.encoder_digest(),
                "image_size": self.image_size, "out_dim": self.out_dim,
                "mean": list(self.norm_mean), "std": list(self.norm_std)}


def build_adapter(config: AdapterConfig | dict | None = None, **overrides) -> EncoderAdapter:
    """`build_adapter(AdapterConfig(...))` or `build_adapter(source="timm", name="resnet18")`."""
    if isinstance(config, dict) or config is None:
        config = AdapterConfig.from_dict({**(config or {}), **overrides})
    elif overrides:
        config = dataclasses.replace(config, **overrides)
    return EncoderAdapter(config)
