"""Checkpoint I/O: safetensors + JSON config (never pickle), and foreign layouts by adapters.

Accepted by `load_encoder(path)`:
- a directory (or its `model.safetensors`) written by `save_encoder`;
- a directory holding `encoder/` (a pretraining run or export);
- the official released Pixio encoder `.pth` (keys `cls_token`, `pos_embed`,
  `patch_embed.proj.*`, `blocks.{i}.*`, `norm.*`), read with `torch.load(weights_only=True)`;
- the same keys with a `module.` / `encoder.` / `model.` prefix;
- a Hugging Face transformers `PixioModel` directory (`config.json` + `model.safetensors`) or
  state dict (see `pixio_robot.models.adapters`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from pixio_robot.models.adapters import to_official
from pixio_robot.models.config import EncoderConfig, MAEConfig, config_from_dict, config_to_dict
from pixio_robot.models.encoder import PixioEncoder
from pixio_robot.models.mae import PixioMAE
from pixio_robot.utils.io import atomic_save_file, save_json

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
# Official widths -> heads (heads are not recoverable from weights).
OFFICIAL_HEADS = {768: 12, 1024: 16, 1280: 16, 1536: 24, 3072: 32}


def _contiguous(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in sd.items()}


def _save(module: nn.Module, directory: str | Path, arch: str, config) -> Path:
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise FileExistsError(f"{directory} is a file; saving writes a directory (model.safetensors + config.json)")
    directory.mkdir(parents=True, exist_ok=True)
    sd = _contiguous(module.state_dict())
    atomic_save_file(directory / WEIGHTS, lambda p: save_file(sd, p, metadata={"arch": arch}))
    save_json(directory / CONFIG, {"arch": arch, "config": config_to_dict(config)})
    return directory


def save_encoder(encoder: PixioEncoder, directory: str | Path, format: str = "pixio") -> Path:
    """Write `directory/model.safetensors` + `directory/config.json` (a PixioMAE: its encoder).

    `format="pixio"`: the project's own layout; `format="transformers"`: a Hugging Face
    `PixioModel` directory (`transformers.AutoModel.from_pretrained(directory)` loads it, and so
    does `load_encoder`)."""
    if isinstance(encoder, PixioMAE):
        encoder = encoder.encoder
    if not isinstance(encoder, PixioEncoder):
        raise TypeError(f"save_encoder needs a PixioEncoder (or a PixioMAE), got {type(encoder).__name__}")
    if format == "transformers":
        from pixio_robot.models.hf import save_transformers

        directory = Path(directory)
        if directory.exists() and not directory.is_dir():
            raise FileExistsError(f"{directory} is a file; saving writes a directory")
        return save_transformers(encoder, directory)
    if format != "pixio":
        raise ValueError(f"save_encoder format must be 'pixio' or 'transformers', got {format!r}")
    return _save(encoder, directory, "pixio_encoder", encoder.config)


def save_model(model: PixioMAE, directory: str | Path) -> Path:
    return _save(model, directory, "pixio_mae", model.config)


def load_state_dict_strict(module: nn.Module, sd: dict[str, torch.Tensor], source: str) -> None:
    """Load with a message listing missing / unexpected keys and shape mismatches."""
    own = module.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shapes = [f"{k}: expected {tuple(own[k].shape)}, found {tuple(sd[k].shape)}"
              for k in own if k in sd and own[k].shape != sd[k].shape]
    if missing or unexpected or shapes:
        lines = [f"checkpoint {source} does not match {type(module).__name__}:"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): {missing[:10]}{' ...' if len(missing) > 10 else ''}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): {unexpected[:10]}"
                         f"{' ...' if len(unexpected) > 10 else ''}")
        lines.extend(f"  shape {s}" for s in shapes[:10])
        raise ValueError("\n".join(lines))
    module.load_state_dict(sd, strict=True)


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own error types for truncated files
        raise ValueError(f"cannot read {path}: {e}. The file is truncated or not safetensors; "
                         "re-export it or point to another checkpoint") from e


def _read_config(directory: Path) -> dict:
    cfg_path = directory / CONFIG
    if not cfg_path.exists():
        raise FileNotFoundError(f"{cfg_path} is missing: a checkpoint directory needs {WEIGHTS} and {CONFIG}")
    try:
        return json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{cfg_path} is not valid JSON ({e})") from e


def encoder_config_from_official(sd: dict[str, torch.Tensor], num_heads: int | None = None) -> EncoderConfig:
    """Infer the architecture of an official-layout state dict from its tensor shapes."""
    try:
        k, d = sd["cls_token"].shape[1:]
        n = sd["pos_embed"].shape[1] - k
        patch_size = sd["patch_embed.proj.weight"].shape[-1]
    except KeyError as e:
        raise ValueError(f"not a Pixio encoder state dict: key {e} is missing") from e
    side = int(round(n**0.5))
    if side * side != n:
        raise ValueError(f"pos_embed holds {n} patch positions, not a square grid")
    depth = 1 + max(int(key.split(".")[1]) for key in sd if key.startswith("blocks."))
    mlp_ratio = sd["blocks.0.mlp.fc1.weight"].shape[0] / d
    if num_heads is None and d not in OFFICIAL_HEADS:  # the weights do not say; a wrong guess is silently wrong
        raise ValueError(f"width {d} is not an official Pixio size ({sorted(OFFICIAL_HEADS)}), so the number of "
                         "attention heads cannot be read from the weights: pass it, "
                         f"load_encoder(path, num_heads=...) (e.g. {max(1, d // 64)} for 64-wide heads)")
    return EncoderConfig(img_size=side * patch_size, patch_size=patch_size, embed_dim=d, depth=depth,
                         num_heads=num_heads or OFFICIAL_HEADS[d], mlp_ratio=mlp_ratio,
                         num_cls_tokens=k, qkv_bias="blocks.0.attn.qkv.bias" in sd)


def load_encoder(path: str | Path, map_location: str | torch.device = "cpu",
                 num_heads: int | None = None) -> PixioEncoder:
    """Load an encoder from any supported layout (see module docstring). `num_heads` is needed only
    for a bare state dict (.pth) of a non-official width, whose head count the weights do not say."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"encoder checkpoint {path} does not exist")
    if path.is_dir() and not (path / WEIGHTS).exists() and (path / "encoder" / WEIGHTS).exists():
        path = path / "encoder"
    if path.is_dir() and ((path / "state.json").exists()
                          or (not (path / WEIGHTS).exists() and (path / "checkpoints").is_dir())):
        # a pretraining run without encoder/ yet (still running, killed) or one of its checkpoints
        return load_mae(path).encoder.to(map_location)
    if path.is_dir() or path.suffix == ".safetensors":
        directory = path if path.is_dir() else path.parent
        meta = _read_config(directory)
        sd = _read_safetensors(directory / WEIGHTS if path.is_dir() else path)
        arch = meta.get("arch")
        if arch is None and meta.get("model_type") == "pixio":  # a transformers PixioModel export
            sd = to_official(sd)
            cfg = encoder_config_from_official(sd, num_heads=num_heads or meta.get("num_attention_heads"))
            encoder = PixioEncoder(cfg)
            load_state_dict_strict(encoder, sd, str(path))
            return encoder.to(map_location)
        if arch == "pixio_mae":  # a whole MAE: keep the encoder part
            cfg = MAEConfig(**meta["config"]).encoder
            sd = {k[len("encoder."):]: v for k, v in sd.items() if k.startswith("encoder.")}
        elif arch == "pixio_encoder":
            cfg = config_from_dict(EncoderConfig, meta["config"])
        else:
            raise ValueError(f"{directory / CONFIG} describes arch {arch!r}, not a Pixio encoder "
                             "(expected 'pixio_encoder' or 'pixio_mae')")
        encoder = PixioEncoder(cfg)
        load_state_dict_strict(encoder, sd, str(path))
        return encoder.to(map_location)
    if path.suffix in (".pth", ".pt", ".bin"):
        from pixio_robot.utils.io import load_tensors

        raw = load_tensors(path)
        if not isinstance(raw, dict):
            raise ValueError(f"{path} holds a {type(raw).__name__}, not a state dict")
        sd = to_official(raw)
        encoder = PixioEncoder(encoder_config_from_official(sd, num_heads))
        load_state_dict_strict(encoder, sd, str(path))
        return encoder.to(map_location)
    raise ValueError(f"unsupported checkpoint {path}: expected a directory, .safetensors or .pth")


def load_model(directory: str | Path, map_location: str | torch.device = "cpu") -> PixioMAE:
    """Load a whole PixioMAE saved by `save_model`."""
    directory = Path(directory)
    meta = _read_config(directory)
    if meta.get("arch") != "pixio_mae":
        raise ValueError(f"{directory} holds arch {meta.get('arch')!r}, not 'pixio_mae'")
    model = PixioMAE(MAEConfig(**meta["config"]))
    load_state_dict_strict(model, _read_safetensors(directory / WEIGHTS), str(directory))
    return model.to(map_location)


def load_mae(path: str | Path) -> PixioMAE:
    """A `save_model` directory, a pretraining checkpoint directory, or a run directory (its newest
    checkpoint). A distillation run's checkpoint gives its student (+ projector) instead, as a
    module whose `.encoder` is the student."""
    from pixio_robot.models.train_checkpoint import list_checkpoints, load_checkpoint

    path = Path(path).expanduser()
    if (path / "checkpoints").is_dir():
        ckpts = list_checkpoints(path / "checkpoints")
        if not ckpts:
            raise FileNotFoundError(f"{path} holds no complete checkpoint under checkpoints/")
        path = ckpts[-1]
    if (path / "state.json").exists():
        state = json.loads((path / "state.json").read_text())
        if state.get("objective") == "distill":
            from pixio_robot.models.distill import DistilledStudent

            model = DistilledStudent(state["model_config"], **state["distill_dims"])
            load_checkpoint(path, model, None)
            return model
        model = PixioMAE(MAEConfig(**state["model_config"]))
        load_checkpoint(path, model, None)  # full or sharded, read whole in this process
        return model
    if (path / "config.json").exists():
        return load_model(path)
    raise FileNotFoundError(f"{path} is not a run directory, a checkpoint or a save_model directory")
