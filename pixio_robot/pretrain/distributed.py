"""Parallel wrapping of the MAE, kept apart from the model code (torchtitan's layout).

- `ddp`: DistributedDataParallel (gradients all-reduced, averaged over ranks).
- `fsdp`: FSDP2 (`torch.distributed.fsdp.fully_shard`) per encoder / decoder block and at the
  root, on a 1-D device mesh; bf16 parameters for compute on GPU when amp is bf16, fp32 reduce.
- `activation_checkpointing`: every block recomputes its activations in the backward pass
  (non-reentrant `torch.utils.checkpoint`), trading ~1/3 more compute for memory that no longer
  grows with depth x batch - for 1B / 5B or a larger per-GPU batch. Parameter names unchanged.
- `compile`: `torch.compile` of every transformer block (static shapes: block masking keeps a
  fixed number of visible tokens), applied before sharding.
"""

from __future__ import annotations

import functools

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from pixio_robot.utils import dist as udist


def blocks_of(model: nn.Module) -> list[nn.Module]:
    return [*model.encoder.blocks, *model.decoder_blocks]


def _checkpointed(forward, x: torch.Tensor) -> torch.Tensor:
    return checkpoint(forward, x, use_reentrant=False)


def checkpoint_blocks(model: nn.Module) -> None:
    """Recompute each block's activations in backward (apply before compile and sharding)."""
    for blk in blocks_of(model):
        if not isinstance(blk.forward, functools.partial):  # idempotent
            blk.forward = functools.partial(_checkpointed, blk.forward)


def compile_blocks(model: nn.Module) -> None:
    for blk in blocks_of(model):
        blk.compile()


def wrap_model(model: nn.Module, device: torch.device, parallel: str, amp: str) -> nn.Module:
    """Return the module to train (the same object for FSDP2, a DDP wrapper for DDP)."""
    if udist.world_size() == 1 or not udist.is_dist():
        return model
    if parallel == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(device.type, (udist.world_size(),))
    bf16 = device.type == "cuda" and amp in ("auto", "bf16")
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 \
        else MixedPrecisionPolicy()
    for blk in blocks_of(model):
        fully_shard(blk, mesh=mesh, mp_policy=mp)
    fully_shard(model, mesh=mesh, mp_policy=mp)
    return model
