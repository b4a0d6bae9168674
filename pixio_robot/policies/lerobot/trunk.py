"""The vision trunk that replaces the ResNet inside LeRobot's ACT and Diffusion policies.

    PixioTrunk(spec)(x)   float [B,3,H,W] in [0,1] -> feature map (B, C, h, w)

The encoder is built by the project's adapter factory (`policies.backbones.build_backbone`): a Pixio
registry name (seeded random init), a checkpoint (a `save_encoder` dir, an official `.pth`, a
transformers `PixioModel` dir, through `pixio_robot.models.load_encoder`) or a timm name
(`pretrained=False`). The trunk applies its own normalisation (Pixio: ImageNet mean/std; timm:
`timm.data.resolve_model_data_config`), so the policy's processors leave images in [0,1]. The map
is the last block's output (`forward_intermediates(x, indices=1, output_fmt="NCHW")`).

Modes: `frozen` (no grad, eval mode forever, weights bit-identical), `finetune`, `last_k` (the last
`last_k` blocks and the final norm train).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pixio_robot.policies.backbones import PixioBackbone, build_backbone
from pixio_robot.policies.encoder_adapter import MODES, SOURCES, AdapterConfig


@dataclass(frozen=True)
class TrunkSpec:
    """What a `pixio_act` / `pixio_diffusion` config says about its trunk (the `pixio_*` fields)."""

    source: str = "pixio"
    name: str = "pixio_vittest"
    path: str | None = None
    mode: str = "frozen"
    last_k: int = 1
    image_size: int | None = None  # square side the trunk resizes to; None: the input size
    init_seed: int = 0

    def adapter_config(self) -> AdapterConfig:
        return AdapterConfig(source=self.source, name=self.name, path=self.path, mode=self.mode,
                             last_k=self.last_k, image_size=self.image_size, init_seed=self.init_seed)


def validate_trunk_fields(cfg) -> None:
    """`__post_init__` checks of the `pixio_*` fields of a LeRobot config (clear messages)."""
    if cfg.pixio_encoder_source not in SOURCES:
        raise ValueError(f"pixio_encoder_source={cfg.pixio_encoder_source!r} is not one of {SOURCES}")
    if cfg.pixio_mode not in MODES:
        raise ValueError(f"pixio_mode={cfg.pixio_mode!r} is not one of {MODES}")
    if cfg.pixio_encoder_source == "checkpoint" and not cfg.pixio_encoder_path:
        raise ValueError("pixio_encoder_source=checkpoint needs pixio_encoder_path (a save_encoder directory, "
                         "an official Pixio .pth or a transformers PixioModel directory)")
    if cfg.pixio_encoder_source != "checkpoint" and not cfg.pixio_encoder_name:
        raise ValueError(f"pixio_encoder_source={cfg.pixio_encoder_source} needs pixio_encoder_name "
                         "(e.g. pixio_vittest, pixio_vitb16, or a timm name such as resnet18)")
    if cfg.pixio_mode == "last_k" and cfg.pixio_last_k < 1:
        raise ValueError(f"pixio_last_k must be >= 1 with pixio_mode=last_k, got {cfg.pixio_last_k}")
    if cfg.pixio_image_size is not None and cfg.pixio_image_size <= 0:
        raise ValueError(f"pixio_image_size must be positive, got {cfg.pixio_image_size}")
    visual = cfg.normalization_mapping.get("VISUAL")
    if visual is not None and getattr(visual, "value", visual) != "IDENTITY":
        raise ValueError(f"normalization_mapping VISUAL={getattr(visual, 'value', visual)}: the Pixio trunk "
                         "normalises images itself (ImageNet mean/std, or the timm model's own), so the "
                         "processors must leave them in [0,1]; set VISUAL to IDENTITY")


def trunk_spec(cfg) -> TrunkSpec:
    return TrunkSpec(source=cfg.pixio_encoder_source, name=cfg.pixio_encoder_name, path=cfg.pixio_encoder_path,
                     mode=cfg.pixio_mode, last_k=cfg.pixio_last_k, image_size=cfg.pixio_image_size,
                     init_seed=cfg.pixio_init_seed)


class PixioTrunk(nn.Module):
    """Images [B,3,H,W] in [0,1] -> normalised -> (resized) -> encoder -> feature map (B, C, h, w)."""

    def __init__(self, spec: TrunkSpec) -> None:
        super().__init__()
        self.spec = spec
        self.backbone = build_backbone(spec.adapter_config())
        self.embed_dim = int(self.backbone.embed_dim)
        self.patch_size = int(self.backbone.patch_size)
        self.is_pixio = isinstance(self.backbone, PixioBackbone)
        # Pixio: ImageNet mean/std (a transformers dir: its processor's); timm: resolve_model_data_config
        self.register_buffer("mean", torch.tensor(self.backbone.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.backbone.std).view(1, 3, 1, 1), persistent=False)
        if spec.image_size is not None and self.is_pixio and spec.image_size % self.patch_size:
            raise ValueError(f"pixio_image_size={spec.image_size} must be a multiple of the patch size "
                             f"{self.patch_size}")
        self.backbone.requires_grad_(spec.mode == "finetune")
        if spec.mode == "last_k":
            self.backbone.unfreeze_last(spec.last_k)
        self.train(True)

    @property
    def frozen(self) -> bool:
        return self.spec.mode == "frozen"

    def train(self, mode: bool = True) -> PixioTrunk:
        super().train(mode)
        if self.frozen:  # dropout / drop path stay off and BatchNorm statistics stay put
            self.backbone.eval()
        return self

    def input_side(self, hw: tuple[int, int]) -> tuple[int, int]:
        """The (h, w) the encoder sees for an input of `hw`; refuses a ViT input off the patch grid."""
        s = self.spec.image_size
        out = (s, s) if s is not None else tuple(int(v) for v in hw)
        if self.is_pixio and (out[0] % self.patch_size or out[1] % self.patch_size):
            raise ValueError(f"the Pixio trunk ({self.spec.name or self.spec.path}, patch {self.patch_size}) gets "
                             f"{out[0]}x{out[1]} images, not a multiple of {self.patch_size}: set the crop "
                             f"(e.g. crop_shape) or the image size to a multiple of {self.patch_size}, or "
                             f"pixio_image_size=<multiple of {self.patch_size}> to resize inside the trunk")
        return out

    def map_shape(self, hw: tuple[int, int]) -> tuple[int, int, int]:
        """(C, h, w) of the feature map for an input of `hw` (a dry run on zeros)."""
        self.input_side(hw)
        with torch.no_grad():
            was = self.training
            self.eval()
            out = self._features(self._prepare(torch.zeros(1, 3, *hw, device=self.mean.device)))
            self.train(was)
        return tuple(out.shape[1:])

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std  # (B, 3, H, W)
        s = self.spec.image_size
        if s is not None and tuple(x.shape[-2:]) != (s, s):
            down = x.shape[-2] > s or x.shape[-1] > s
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=down)
        return x

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        m = self.backbone.model
        if self.is_pixio:
            return m.forward_intermediates(x, indices=1, norm=True, output_fmt="NCHW")[-1]  # (B, D, h, w)
        return m.forward_intermediates(x, indices=1, intermediates_only=True, output_fmt="NCHW")[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._prepare(x)
        if self.frozen:
            with torch.no_grad():
                return self._features(x)
        return self._features(x)


class ActTrunk(nn.Module):
    """ACT's `model.backbone` contract: `backbone(img)["feature_map"]` (B, C, h, w)."""

    def __init__(self, trunk: PixioTrunk) -> None:
        super().__init__()
        self.trunk = trunk

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"feature_map": self.trunk(x)}
