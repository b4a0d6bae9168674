"""Hugging Face transformers `PixioModel` out: `save_encoder(enc, dir, format="transformers")`.

The directory is written by transformers itself (`PixioModel.save_pretrained`) after the weights
were loaded strictly into a real `PixioModel` built from the encoder's config, so what lands on
disk is exactly what `transformers.AutoModel.from_pretrained(dir)` expects. A
`preprocessor_config.json` (transformers' image processor for Pixio, `BitImageProcessor`) records
the input size and ImageNet normalisation the encoder was trained with. Reading the other way is
`load_encoder(dir)` (see `pixio_robot.models.adapters`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from pixio_robot.models.config import IMAGENET_MEAN, IMAGENET_STD
from pixio_robot.models.encoder import PixioEncoder


def official_to_hf(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official Pixio names -> transformers `PixioModel` names (q, k, v split out of `attn.qkv`)."""
    out: dict[str, torch.Tensor] = {}
    d = sd["cls_token"].shape[-1]
    fixed = {"cls_token": "embeddings.cls_token", "pos_embed": "embeddings.position_embeddings",
             "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
             "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
             "norm.weight": "layernorm.weight", "norm.bias": "layernorm.bias"}
    for k, v in sd.items():
        if k in fixed:
            out[fixed[k]] = v
            continue
        _, i, rest = k.split(".", 2)  # blocks.{i}.<rest>
        layer = f"encoder.layer.{i}."
        if rest.startswith("attn.qkv."):
            kind = rest.rsplit(".", 1)[1]
            for name, part in zip(("query", "key", "value"), v.split(d, dim=0), strict=True):
                out[f"{layer}attention.attention.{name}.{kind}"] = part
        elif rest.startswith("attn.proj."):
            out[f"{layer}attention.output.dense.{rest.rsplit('.', 1)[1]}"] = v
        else:  # norm1, norm2, mlp.fc1, mlp.fc2
            out[layer + rest] = v
    return out


def to_transformers(encoder: PixioEncoder):
    """A real `transformers.PixioModel` holding the encoder's weights (strictly loaded)."""
    from transformers import PixioConfig, PixioModel

    c = encoder.config
    if c.img_size[0] != c.img_size[1]:
        raise ValueError(f"transformers' PixioModel keeps a square position grid; this encoder's img_size is "
                         f"{c.img_size}. Export a square-trained encoder.")
    if float(c.mlp_ratio) != int(c.mlp_ratio):
        raise ValueError(f"transformers' PixioConfig takes an integer mlp_ratio; this encoder has {c.mlp_ratio}")
    config = PixioConfig(hidden_size=c.embed_dim, num_hidden_layers=c.depth, num_attention_heads=c.num_heads,
                         mlp_ratio=int(c.mlp_ratio), layer_norm_eps=c.norm_eps, image_size=c.img_size[0],
                         patch_size=c.patch_size, num_channels=c.in_chans, qkv_bias=c.qkv_bias,
                         n_cls_tokens=c.num_cls_tokens, drop_path_rate=c.drop_path_rate,
                         architectures=["PixioModel"])
    model = PixioModel(config)
    sd = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    missing, unexpected = model.load_state_dict(official_to_hf(sd), strict=False)
    if missing or unexpected:  # a layout change in transformers: say so instead of exporting noise
        raise ValueError(f"transformers' PixioModel does not take these weights: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    return model.eval()


def save_transformers(encoder: PixioEncoder, directory: str | Path) -> Path:
    """Write a directory that `transformers.AutoModel.from_pretrained(directory)` loads."""
    from transformers import BitImageProcessor

    directory = Path(directory)
    model = to_transformers(encoder)
    model.save_pretrained(directory)  # config.json + model.safetensors, atomic per file in transformers
    h = encoder.config.img_size[0]
    BitImageProcessor(do_resize=True, size={"height": h, "width": h}, do_center_crop=False,
                      do_rescale=True, rescale_factor=1 / 255, do_normalize=True, image_mean=list(IMAGENET_MEAN),
                      image_std=list(IMAGENET_STD), do_convert_rgb=True).save_pretrained(directory)
    return directory
