"""torch.distributed helpers that also work single-process (no torchrun)."""

from __future__ import annotations

import gc
import os

import torch
import torch.distributed as dist


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_dist() else int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return dist.get_world_size() if is_dist() else int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return rank() == 0


def init_distributed(backend: str | None = None) -> torch.device:
    """Initialise the process group when launched by torchrun; return this rank's device."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and not is_dist():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        dist.init_process_group(backend=backend)
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def init_single_process_group(device: torch.device) -> None:
    """A one-rank process group (in-memory store, no ports) so FSDP2 can shard over a single
    device: bf16 compute copies of fp32 parameters, CPU offload. No-op when one already exists."""
    if is_dist():
        return
    backend = "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, store=dist.HashStore(), rank=0, world_size=1)


def barrier() -> None:
    if is_dist():
        dist.barrier()


def all_gather_object(obj) -> list:
    """Every rank's `obj` (picklable), in rank order (collective); `[obj]` without a process group."""
    if not is_dist():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def cleanup(*objs) -> None:
    """Tear down safely: drop DDP models first, then barrier, then destroy the group
    (destroying while a DDP model is alive can deadlock gloo)."""
    del objs
    gc.collect()
    if is_dist():
        dist.barrier()
        dist.destroy_process_group()
