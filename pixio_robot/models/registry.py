"""Model registry: `create_model(name, **overrides)` for encoders and pretraining models.

Encoders are also registered with timm, so `timm.create_model("pixio_vitb16")` works.
Sizes follow the paper (PIXIO.md); `test`/`tiny`/`small` are CPU-sized variants.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Callable

from timm.models import register_model as timm_register_model
from torch import nn

from pixio_robot.models.config import DecoderConfig, EncoderConfig, MAEConfig, MaskConfig
from pixio_robot.models.encoder import PixioEncoder
from pixio_robot.models.mae import PixioMAE

# name: (width, depth, heads, default img size, default mask block)
ENCODER_SIZES: dict[str, tuple[int, int, int, int, int]] = {
    "test": (32, 2, 2, 64, 2),
    "tiny": (192, 12, 3, 128, 2),
    "small": (384, 12, 6, 224, 2),
    "b16": (768, 12, 12, 256, 4),
    "l16": (1024, 24, 16, 256, 4),
    "h16": (1280, 32, 16, 256, 4),
    "1b16": (1536, 48, 24, 256, 4),
    "5b16": (3072, 48, 32, 256, 4),
}
# Decoders scaled for the CPU sizes; the paper's 512 x 32 x 16 for every paper size.
PIXIO_DECODERS = {"test": (32, 1, 2), "tiny": (128, 4, 4), "small": (256, 8, 8)}
MAE_DECODERS = {"test": (32, 1, 2), "tiny": (128, 2, 4), "small": (256, 4, 8)}
PAPER_PIXIO_DECODER = (512, 32, 16)
PAPER_MAE_DECODER = (512, 8, 16)

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str, fn: Callable[..., nn.Module]) -> None:
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} registered twice")
    _REGISTRY[name] = fn


def list_models(pattern: str = "*") -> list[str]:
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def create_model(name: str, **overrides) -> nn.Module:
    """Build a registered model; keyword overrides change config fields (e.g. img_size=128,
    num_cls_tokens=4, drop_path_rate=0.1; for MAE models also mask_block, mask_ratio,
    decoder_depth, decoder_embed_dim, decoder_num_heads, norm_pix_loss)."""
    if name not in _REGISTRY:
        import difflib

        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f" Did you mean {close}?" if close else ""
        raise KeyError(f"unknown model {name!r}.{hint} Known: {list_models()}")
    return _REGISTRY[name](**overrides)


def _encoder_config(size: str, **overrides) -> EncoderConfig:
    width, depth, heads, img, _ = ENCODER_SIZES[size]
    kw = dict(embed_dim=width, depth=depth, num_heads=heads, img_size=img)
    kw.update(overrides)
    known = {f.name for f in dataclasses.fields(EncoderConfig)}
    unknown = set(kw) - known
    if unknown:
        raise TypeError(f"unknown encoder options {sorted(unknown)}; known: {sorted(known)}")
    return EncoderConfig(**kw)


def _mae_config(size: str, vanilla: bool, **overrides) -> MAEConfig:
    if vanilla:
        dec = MAE_DECODERS.get(size, PAPER_MAE_DECODER)
        mask_block, num_cls = 1, 1
    else:
        dec = PIXIO_DECODERS.get(size, PAPER_PIXIO_DECODER)
        mask_block, num_cls = ENCODER_SIZES[size][4], 8
    overrides.setdefault("num_cls_tokens", num_cls)
    dkw = dict(embed_dim=dec[0], depth=dec[1], num_heads=dec[2])
    for k in ("embed_dim", "depth", "num_heads", "mlp_ratio"):
        if f"decoder_{k}" in overrides:
            dkw[k] = overrides.pop(f"decoder_{k}")
    mask = MaskConfig(block=overrides.pop("mask_block", mask_block), ratio=overrides.pop("mask_ratio", 0.75))
    norm_pix = overrides.pop("norm_pix_loss", True)
    return MAEConfig(encoder=_encoder_config(size, **overrides), decoder=DecoderConfig(**dkw), mask=mask,
                     norm_pix_loss=norm_pix)


_TIMM_ARGS = ("pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")


def _make_entries(size: str) -> None:
    enc_name = f"pixio_vit{size}"
    suffix = size if size in PIXIO_DECODERS else f"vit{size}"

    def encoder_fn(**kw) -> PixioEncoder:
        if kw.pop("pretrained", False):
            raise ValueError("pixio_robot never downloads weights: load them with "
                             "pixio_robot.models.load_encoder(path)")
        for k in _TIMM_ARGS:
            kw.pop(k, None)
        return PixioEncoder(_encoder_config(size, **kw))

    encoder_fn.__name__ = enc_name
    encoder_fn.__qualname__ = enc_name
    encoder_fn.__module__ = __name__
    register(enc_name, encoder_fn)
    timm_register_model(encoder_fn)
    register(f"pixio_mae_{suffix}", lambda **kw: PixioMAE(_mae_config(size, False, **kw)))
    register(f"mae_{suffix}", lambda **kw: PixioMAE(_mae_config(size, True, **kw)))


for _size in ENCODER_SIZES:
    _make_entries(_size)
