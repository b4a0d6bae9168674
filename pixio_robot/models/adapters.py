"""State-dict adapters from foreign layouts to the official Pixio encoder layout.

- official release: `cls_token`, `pos_embed`, `patch_embed.proj.*`, `blocks.{i}.*`, `norm.*`
  (possibly under `model` / `state_dict` and with `module.` / `encoder.` prefixes);
- Hugging Face transformers `PixioModel`: `embeddings.*`, `layernorm.*` (optionally under a `pixio.`
  prefix) and the blocks in any of the names it has used: the hub files' `encoder.layer.{i}.*`
  (`attention.attention.{query,key,value}`, `attention.output.dense`, `norm1/2`, `mlp.fc1/2`),
  what `save_pretrained` of transformers 5 writes (`intermediate.dense` / `output.dense` for the
  MLP) and its in-memory `layers.{i}.*` (`attention.{q,k,v,o}_proj`, `layernorm_before/after`).
"""

from __future__ import annotations

import re

import torch

_HF_RENAMES = [
    (r"^embeddings\.cls_token$", "cls_token"),
    (r"^embeddings\.position_embeddings$", "pos_embed"),
    (r"^embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"blocks.\1.attn.proj."),
    (r"^encoder\.layer\.(\d+)\.(norm1|norm2|mlp\.fc1|mlp\.fc2)\.", r"blocks.\1.\2."),
    (r"^encoder\.layer\.(\d+)\.intermediate\.dense\.", r"blocks.\1.mlp.fc1."),
    (r"^encoder\.layer\.(\d+)\.output\.dense\.", r"blocks.\1.mlp.fc2."),
    (r"^layers\.(\d+)\.attention\.o_proj\.", r"blocks.\1.attn.proj."),
    (r"^layers\.(\d+)\.layernorm_before\.", r"blocks.\1.norm1."),
    (r"^layers\.(\d+)\.layernorm_after\.", r"blocks.\1.norm2."),
    (r"^layers\.(\d+)\.mlp\.(fc1|fc2)\.", r"blocks.\1.mlp.\2."),
    (r"^layernorm\.", "norm."),
]
_HF_QKV = re.compile(r"^(?:encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)"
                     r"|layers\.(\d+)\.attention\.(q|k|v)_proj)\.(weight|bias)$")
_QKV_NAMES = {"q": "query", "k": "key", "v": "value"}


def is_hf_layout(sd: dict[str, torch.Tensor]) -> bool:
    return any(k.startswith(("embeddings.", "pixio.embeddings.")) for k in sd)


def hf_to_official(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a transformers `PixioModel` state dict; fuse q, k, v into `attn.qkv`."""
    sd = {k.removeprefix("pixio."): v for k, v in sd.items()}
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for k, v in sd.items():
        m = _HF_QKV.match(k)
        if m:
            layer, part = m.group(1) or m.group(3), m.group(2) or _QKV_NAMES[m.group(4) or ""]
            qkv.setdefault((layer, m.group(5)), {})[part] = v
            continue
        for pattern, repl in _HF_RENAMES:
            if re.match(pattern, k):
                k = re.sub(pattern, repl, k)
                break
        out[k] = v
    for (i, kind), parts in qkv.items():
        if set(parts) != {"query", "key", "value"}:
            raise ValueError(f"layer {i} {kind}: expected query, key and value, found {sorted(parts)}")
        out[f"blocks.{i}.attn.qkv.{kind}"] = torch.cat([parts["query"], parts["key"], parts["value"]], dim=0)
    return out


def to_official(sd: dict) -> dict[str, torch.Tensor]:
    """Unwrap containers, drop non-tensors, strip wrapper prefixes, map HF names."""
    for key in ("model", "state_dict", "encoder"):
        if key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    out = {}
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor):
            continue
        for prefix in ("module.", "encoder.", "model."):
            if k.startswith(prefix) and not k.startswith("encoder.layer."):
                k = k[len(prefix):]
        out[k] = v
    return hf_to_official(out) if is_hf_layout(out) else out
