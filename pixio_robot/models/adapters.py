"""State-dict adapters from foreign layouts to the official Pixio encoder layout.

- official release: `cls_token`, `pos_embed`, `patch_embed.proj.*`, `blocks.{i}.*`, `norm.*`
  (possibly under `model` / `state_dict` and with `module.` / `encoder.` prefixes);
- Hugging Face transformers `PixioModel`: `embeddings.*`, `encoder.layer.{i}.*` with split
  query / key / value projections, `layernorm.*` (optionally under a `pixio.` prefix).
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
    (r"^layernorm\.", "norm."),
]
_HF_QKV = re.compile(r"^encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.(weight|bias)$")


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
            qkv.setdefault((m.group(1), m.group(3)), {})[m.group(2)] = v
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
