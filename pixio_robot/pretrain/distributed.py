"""Parallel wrapping of the MAE, kept apart from the model code (torchtitan's layout).

- `ddp`: DistributedDataParallel (gradients all-reduced, averaged over ranks).
- `fsdp`: FSDP2 (`torch.distributed.fsdp.fully_shard`) per encoder / decoder block and at the
  root, on a 1-D device mesh; bf16 parameters for compute when amp is bf16 (fp32 master weights
  and optimizer states, fp32 gradient reduction). Also single-process (a one-rank group): that is
  how 1B / 5B train on one GPU, with `fsdp_cpu_offload` moving the fp32 weights, gradients and
  AdamW states to host memory (the optimizer step then runs on the CPU).
- `hsdp`: FSDP2 on a 2-D mesh (replicate x shard): weights sharded inside a group of
  `hsdp_shard_size` ranks (a node, over NVLink), gradients all-reduced across the groups. Past one
  node this is what scales (benchmarks/plan_pretrain.py): full sharding all-gathers every weight
  over the inter-node network twice per step.
- `activation_checkpointing`: every block recomputes its activations in the backward pass
  (non-reentrant `torch.utils.checkpoint`), trading ~1/3 more compute for memory that no longer
  grows with depth x batch - for 1B / 5B or a larger per-GPU batch. Parameter names unchanged.
- `compile`: `torch.compile` of every transformer block (static shapes: block masking keeps a
  fixed number of visible tokens), applied before sharding.
"""

from __future__ import annotations

import functools
import os

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from pixio_robot.utils import dist as udist


def blocks_of(model: nn.Module) -> list[nn.Module]:
    return model.shard_blocks()


def _checkpointed(forward, x: torch.Tensor) -> torch.Tensor:
    return checkpoint(forward, x, use_reentrant=False)


def checkpoint_blocks(model: nn.Module) -> None:
    """Recompute each block's activations in backward (apply before compile and sharding)."""
    for blk in blocks_of(model):
        if not isinstance(blk.forward, functools.partial):  # idempotent
            blk.forward = functools.partial(_checkpointed, blk.forward)


def compile_blocks(model: nn.Module, mode: str | None = None) -> None:
    """`torch.compile` each block (one graph per block width, reused: static shapes). `mode`
    "max-autotune-no-cudagraphs" lets inductor pick Triton matmuls with fused epilogues (bias,
    GELU) for the narrow decoder: minutes more compile time, for the GPU."""
    for blk in blocks_of(model):
        blk.compile(mode=None if mode in (None, "default") else mode)


def bf16_params(device: torch.device, amp: str) -> bool:
    return amp == "bf16" or (amp == "auto" and device.type == "cuda")


def hsdp_shard_size(shard_size: int, world: int) -> int:
    """Ranks per HSDP shard group: `shard_size`, or (0) the GPUs of a node (LOCAL_WORLD_SIZE)."""
    return shard_size or int(os.environ.get("LOCAL_WORLD_SIZE", world))


def wrap_model(model: nn.Module, device: torch.device, parallel: str, amp: str,
               cpu_offload: bool = False, shard_size: int = 0) -> nn.Module:
    """Return the module to train (the same object for FSDP2, a DDP wrapper for DDP).
    FSDP2 also applies to a single process when its (one-rank) group is initialised."""
    if not udist.is_dist():
        return model
    if parallel == "ddp":
        if udist.world_size() == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy, fully_shard

    world = udist.world_size()
    if parallel == "hsdp":
        shard = hsdp_shard_size(shard_size, world)
        if shard < 1 or world % shard:
            raise ValueError(f"hsdp_shard_size {shard} must divide the world size {world}")
        mesh = init_device_mesh(device.type, (world // shard, shard), mesh_dim_names=("replicate", "shard"))
    else:
        mesh = init_device_mesh(device.type, (world,))
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) \
        if bf16_params(device, amp) else MixedPrecisionPolicy()
    offload = CPUOffloadPolicy(pin_memory=device.type == "cuda") if cpu_offload else OffloadPolicy()
    for blk in blocks_of(model):
        fully_shard(blk, mesh=mesh, mp_policy=mp, offload_policy=offload)
    fully_shard(model, mesh=mesh, mp_policy=mp, offload_policy=offload)
    return model
