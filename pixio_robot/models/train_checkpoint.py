"""Training checkpoints: safetensors + JSON, written atomically, last N kept, resumable.

Layout of `<run_dir>/checkpoints/step_00000100/`:
  model.safetensors      full (unsharded) MAE state dict, keys as in `PixioMAE.state_dict()`
  optimizer.safetensors  AdamW state, keys `state/<param name>/<exp_avg|exp_avg_sq|step>`
  rng.safetensors        every rank's RNG states (`rank<r>/<key>`)
  state.json             step, data position of every loader lane, optimizer param groups,
                         the scalar parts of the RNG states, the model config
The directory is written under a hidden temporary name, each file fsynced, then renamed into
place (a directory rename is atomic), so a SIGKILL leaves the previous checkpoint intact.
Works for plain, DDP and FSDP2 models: full state dicts go through
`torch.distributed.checkpoint.state_dict` (gathered on every rank, written by rank 0).

`sharded=True` (`ckpt_format=sharded`, for 1B / 5B under FSDP2): instead of the two full
safetensors files, every rank writes its own shards of the weights and AdamW states with
`torch.distributed.checkpoint` (DCP: `.metadata` + `__<rank>_0.distcp`, a shared filesystem),
so nothing is gathered on one host. The same directory protocol keeps it atomic. Either format
loads into a plain, DDP or FSDP2 model of any world size (DCP reshards on load), and `load_mae`
reads a sharded checkpoint in a single process.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from pixio_robot.utils import dist as udist
from pixio_robot.utils.io import atomic_write_text, default_mode
from pixio_robot.utils.logging import get_logger

log = get_logger(__name__)
FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


def _fsync_write(path: Path, writer) -> None:
    writer(str(path))
    default_mode(path)
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _split_rng(states: list[dict]) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {}
    for r, st in enumerate(states):
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"rank{r}/{k}"] = v.contiguous().cpu()
            else:
                scalars[f"rank{r}/{k}"] = v
    return tensors, scalars


def _join_rng(tensors: dict[str, torch.Tensor], scalars: dict, rank: int) -> dict | None:
    prefix = f"rank{rank}/"
    st = {k[len(prefix):]: v for k, v in {**tensors, **scalars}.items() if k.startswith(prefix)}
    return st or None


def _flatten_optim(osd: dict) -> tuple[dict[str, torch.Tensor], list[dict]]:
    flat = {}
    for name, st in osd["state"].items():
        for k, v in st.items():
            flat[f"state/{name}/{k}"] = (v if isinstance(v, torch.Tensor) else torch.tensor(v)).contiguous().cpu()
    return flat, osd["param_groups"]


def _unflatten_optim(flat: dict[str, torch.Tensor], groups: list[dict]) -> dict:
    state: dict[str, dict] = {}
    for key, v in flat.items():
        _, rest = key.split("/", 1)
        name, k = rest.rsplit("/", 1)
        state.setdefault(name, {})[k] = v
    return {"state": state, "param_groups": groups}


def is_sharded(ckpt_dir: Path) -> bool:
    return (Path(ckpt_dir) / ".metadata").exists()


def save_checkpoint(ckpt_root: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                    rng_states: list[dict], extra: dict, keep_last: int, sharded: bool = False) -> Path | None:
    """Collective (all ranks call it); rank 0 writes (every rank writes its shards when `sharded`).
    Returns the checkpoint directory on rank 0."""
    final = ckpt_root / f"step_{step:08d}"
    tmp = ckpt_root / f".step_{step:08d}.tmp"
    groups: list[dict] = []
    if sharded:
        import torch.distributed.checkpoint as dcp

        if udist.is_main():
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        udist.barrier()
        msd = get_model_state_dict(model)
        osd = get_optimizer_state_dict(model, optimizer)
        dcp.save({"model": msd, "optim": osd}, checkpoint_id=str(tmp))  # files fsynced by DCP's writer
        udist.barrier()
        if not udist.is_main():
            udist.barrier()
            return None
    else:
        msd = get_model_state_dict(model, options=FULL)
        osd = get_optimizer_state_dict(model, optimizer, options=FULL)
        if not udist.is_main():
            udist.barrier()
            return None
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        msd = {k: v.detach().contiguous().cpu() for k, v in msd.items()}
        _fsync_write(tmp / "model.safetensors", lambda p: save_file(msd, p))
        flat, groups = _flatten_optim(osd)
        _fsync_write(tmp / "optimizer.safetensors", lambda p: save_file(flat, p))
    rng_t, rng_s = _split_rng(rng_states)
    _fsync_write(tmp / "rng.safetensors", lambda p: save_file(rng_t, p))
    state = {"step": step, "param_groups": groups, "rng": rng_s, **extra}
    _fsync_write(tmp / "state.json", lambda p: Path(p).write_text(json.dumps(state, indent=1, default=str)))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    atomic_write_text(ckpt_root / "latest.txt", final.name + "\n")
    for old in list_checkpoints(ckpt_root)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    udist.barrier()
    return final


def list_checkpoints(ckpt_root: Path) -> list[Path]:
    """Complete checkpoint directories, oldest first."""
    if not ckpt_root.is_dir():
        return []
    return sorted(p for p in ckpt_root.glob("step_*") if p.is_dir() and (p / "state.json").exists())


def load_checkpoint(ckpt_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer | None) -> dict:
    """Load weights (and optimizer state) into a plain / DDP / FSDP2 model on every rank; returns
    state.json plus `rng` (this rank's RNG state or None)."""
    state = json.loads((ckpt_dir / "state.json").read_text())
    if is_sharded(ckpt_dir):  # DCP: every rank reads the pieces of its own shards
        import torch.distributed.checkpoint as dcp

        target = {"model": get_model_state_dict(model)}
        if optimizer is not None:
            target["optim"] = get_optimizer_state_dict(model, optimizer)
        dcp.load(target, checkpoint_id=str(ckpt_dir))
        set_model_state_dict(model, target["model"])
        if optimizer is not None:
            set_optimizer_state_dict(model, optimizer, target["optim"])
    else:
        msd = load_file(str(ckpt_dir / "model.safetensors"))
        set_model_state_dict(model, msd, options=StateDictOptions(full_state_dict=True))
        if optimizer is not None:
            osd = _unflatten_optim(load_file(str(ckpt_dir / "optimizer.safetensors")), state["param_groups"])
            set_optimizer_state_dict(model, optimizer, osd, options=StateDictOptions(full_state_dict=True))
    rng_t = load_file(str(ckpt_dir / "rng.safetensors"))
    state["rng"] = _join_rng(rng_t, state.get("rng", {}), udist.rank())
    return state


def find_resumable(ckpt_root: Path) -> list[Path]:
    """Checkpoints to try, newest first."""
    return list(reversed(list_checkpoints(ckpt_root)))
