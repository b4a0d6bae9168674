"""Backbones behind the encoder adapter: a Pixio encoder or any timm model, one interface.

    tokens(x)             -> (class tokens [B,K,D] or None, patch tokens [B,N,D])
    global_embedding(x)   -> [B,D]  Pixio: mean of the class tokens (the paper's embedding);
                                    timm: the model's own pooled pre-logits features
    block_embeddings(x,b) -> [B,len(b)*D]  global embedding of several blocks, concatenated
    unfreeze_last(k)      -> last k blocks and the final norm trainable
    mean, std, native_size  how the makers feed the model: Pixio ImageNet mean/std at its img_size;
                          timm `timm.data.resolve_model_data_config(model)` (CLIP / SigLIP-style
                          models have their own mean/std, test_vit 0.5/0.5 at 160 px)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from pixio_robot.models.config import IMAGENET_MEAN, IMAGENET_STD

if TYPE_CHECKING:
    from pixio_robot.policies.encoder_config import AdapterConfig


class Backbone(nn.Module):
    embed_dim: int
    num_cls_tokens: int
    patch_size: int
    native_size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN  # per-channel input normalisation the model expects
    std: tuple[float, float, float] = IMAGENET_STD

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def grid_for(self, size: int) -> tuple[int, int]:
        return size // self.patch_size, size // self.patch_size

    def _blocks(self) -> nn.ModuleList | None:
        return getattr(self.model, "blocks", None)

    def resolve_blocks(self, blocks: list[int] | None) -> list[int]:
        seq = self._blocks()
        if seq is None:
            raise ValueError(f"{type(self.model).__name__} has no `blocks`; multi_block needs a ViT")
        depth = len(seq)
        if blocks is None:
            return [max(depth // 4 * (i + 1) - 1, 0) for i in range(4)] if depth >= 4 else list(range(depth))
        bad = [b for b in blocks if not -depth <= b < depth]
        if bad:
            raise ValueError(f"encoder.blocks {bad} out of range for a {depth}-block encoder")
        return [b % depth for b in blocks]

    def unfreeze_last(self, k: int) -> None:
        seq = self._blocks()
        if seq is None:
            raise ValueError(f"mode=last_k needs a model with `blocks`; {type(self.model).__name__} has none "
                             "(use finetune or frozen)")
        if k > len(seq):
            raise ValueError(f"encoder.last_k={k} but the encoder has only {len(seq)} blocks")
        for blk in list(seq)[-k:]:
            blk.requires_grad_(True)
        for name in ("norm", "fc_norm"):
            mod = getattr(self.model, name, None)
            if isinstance(mod, nn.Module):
                mod.requires_grad_(True)

    def tokens(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        raise NotImplementedError

    def global_embedding(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def block_embeddings(self, x: torch.Tensor, blocks: list[int] | None) -> torch.Tensor:
        raise NotImplementedError


class PixioBackbone(Backbone):
    def __init__(self, encoder: nn.Module) -> None:
        super().__init__(encoder)
        self.embed_dim = encoder.embed_dim
        self.num_cls_tokens = encoder.num_cls_tokens
        self.patch_size = encoder.patch_size
        self.native_size = int(encoder.img_size[0])

    def tokens(self, x):
        out = self.model.forward_features(x)
        return out["cls_tokens"], out["patch_tokens"]  # (B,K,D), (B,N,D)

    def global_embedding(self, x):
        return self.model.embed(x)  # (B, D) mean of the class tokens

    def block_embeddings(self, x, blocks):
        idx = self.resolve_blocks(blocks)
        k = self.num_cls_tokens
        outs = self.model.forward_intermediates(x, idx, norm=True)  # each (B, K+N, D)
        return torch.cat([o[:, :k].mean(dim=1) for o in outs], dim=1)  # (B, nb*D)


class TimmBackbone(Backbone):
    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        self.embed_dim = int(model.num_features)
        self.num_cls_tokens = int(getattr(model, "num_prefix_tokens", 0))
        pe = getattr(model, "patch_embed", None)
        ps = getattr(pe, "patch_size", None)
        self.patch_size = int(ps[0] if isinstance(ps, tuple | list) else (ps or 32))
        from timm.data import resolve_model_data_config

        data = resolve_model_data_config(model)  # the model's pretrained_cfg (timm defaults where unset)
        self.mean = tuple(float(v) for v in data["mean"])
        self.std = tuple(float(v) for v in data["std"])
        self.native_size = int(data["input_size"][-1])

    def grid_for(self, size: int) -> tuple[int, int]:
        with torch.no_grad():
            _, patches = self.tokens(torch.zeros(1, 3, size, size))
            n = patches.shape[1]
        side = int(round(n**0.5))
        if side * side != n:
            raise ValueError(f"spatial embedding needs a square token grid, got {n} tokens")
        return side, side

    def tokens(self, x):
        out = self.model.forward_features(x)
        if out.ndim == 4:  # CNN: (B, C, h, w)
            return None, out.flatten(2).transpose(1, 2)  # (B, h*w, C)
        k = self.num_cls_tokens
        return (out[:, :k] if k else None), out[:, k:]  # (B,K,D), (B,N,D)

    def global_embedding(self, x):
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)  # (B, D)

    def block_embeddings(self, x, blocks):
        idx = self.resolve_blocks(blocks)
        feats = self.model.forward_intermediates(x, indices=idx, intermediates_only=True)  # each NCHW
        return torch.cat([f.mean(dim=(2, 3)) for f in feats], dim=1)  # (B, nb*D)


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    from pixio_robot.utils.io import load_tensors

    sd = load_tensors(path)
    for key in ("model", "state_dict", "module"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    return sd


def _load_timm_weights(model: nn.Module, path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"timm weights file {path} does not exist")
    sd = _read_weights(path)
    own = model.state_dict()
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    head = ("head.", "fc.", "classifier.", "head_dist.")
    sd = {k: v for k, v in sd.items() if k in own or not k.startswith(head)}
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shapes = [f"{k}: expected {tuple(own[k].shape)}, found {tuple(sd[k].shape)}"
              for k in set(own) & set(sd) if own[k].shape != sd[k].shape]
    if missing or unexpected or shapes:
        raise ValueError(f"weights {path} do not fit the timm model: missing {missing[:8]}, unexpected "
                         f"{unexpected[:8]}, shape mismatches {shapes[:8]}")
    model.load_state_dict(sd)


def processor_normalisation(path: Path) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """(mean, std) of the transformers image processor saved in directory `path`, read by
    transformers' own `AutoImageProcessor` (identity when it does not normalise), or None when
    there is none: how a transformers model's makers feed it."""
    f = Path(path) / "preprocessor_config.json"
    if not f.is_file():
        return None
    from transformers import AutoImageProcessor

    try:
        proc = AutoImageProcessor.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as e:
        raise ValueError(f"{f} does not load as a transformers image processor ({e}): fix or remove it") from None
    if not getattr(proc, "do_normalize", True):
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    mean, std = getattr(proc, "image_mean", None), getattr(proc, "image_std", None)
    if mean is None or std is None:
        return None
    mean = tuple(float(v) for v in (mean if isinstance(mean, list | tuple) else [mean] * 3))
    std = tuple(float(v) for v in (std if isinstance(std, list | tuple) else [std] * 3))
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError(f"{f}: image_mean / image_std must be 3 values (std > 0), got {mean} / {std}")
    return mean, std


def build_backbone(c: AdapterConfig) -> Backbone:
    """Build the backbone a config names (seeded random init where no weights are given). A
    directory with a transformers image processor (`preprocessor_config.json`) feeds the encoder
    with that processor's mean / std; otherwise Pixio's ImageNet ones."""
    if c.source == "checkpoint":
        from pixio_robot.models import load_encoder

        path = Path(c.path).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"encoder checkpoint {path} does not exist (expected a save_encoder "
                                    "directory, a .safetensors file or an official Pixio .pth)")
        backbone = PixioBackbone(load_encoder(path))
        norm = processor_normalisation(path) if path.is_dir() else None
        if norm is not None:
            backbone.mean, backbone.std = norm
        return backbone
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(c.init_seed)
        if c.source == "pixio" or c.name.startswith("pixio_vit"):  # timm's pixio_* entries are ours
            from pixio_robot.models import create_model

            enc = create_model(c.name)
            if not hasattr(enc, "forward_features") or not hasattr(enc, "num_cls_tokens"):
                raise ValueError(f"{c.name!r} is not a Pixio encoder (try a pixio_vit* name)")
            if c.path:
                from pixio_robot.models import load_encoder

                enc = load_encoder(Path(c.path).expanduser())
            return PixioBackbone(enc)
        import timm

        try:
            model = timm.create_model(c.name, pretrained=False, num_classes=0)
        except (RuntimeError, TypeError) as e:
            raise ValueError(f"timm does not know model {c.name!r}: {e}") from e
    if c.path:
        _load_timm_weights(model, Path(c.path).expanduser())
    return TimmBackbone(model)
