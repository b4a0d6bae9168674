"""GPU memory and step-time plan for a Pixio MAE: will it fit, and how does it scale?

Counted, not guessed, where it can be:
- parameters are counted on the meta device (any size, no memory);
- activations saved for backward are 36 bytes per token x width per transformer block under bf16
  autocast with fused attention (64 in fp32), as measured by `saved_tensors_hooks` on the
  project's block (tests/test_memory_plan.py checks it); with activation checkpointing a block
  keeps only its fp32 input (4 bytes) and one block is recomputed at a time;
- states: fp32 weights + fp32 grads + AdamW's two fp32 moments = 16 bytes per parameter, plus
  bf16 compute copies (autocast's cast cache, or FSDP2's unsharded blocks), all sharded over the
  ranks by FSDP2 or moved to the host by CPU offload.
The prediction for the reference loop matches BENCHMARKS.md's measured peaks of Pixio-B/L/H
within 10% (tested). Step time on paper: FLOPs / (MFU x peak) plus FSDP2's communication where
it is not overlapped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from pixio_robot.models.config import MAEConfig

GIB = 2**30
USABLE = 0.92  # share of a card a plan may fill: CUDA context, allocator fragmentation
ACT_BYTES_BF16 = 36  # per token x width per block, bf16 autocast (measured; see module docstring)
ACT_BYTES_FP32 = 64


@dataclass
class MemoryPlan:
    params: int
    micro_batch: int
    device_states_gib: float  # weights, grads, AdamW moments (sharded / offloaded as configured)
    compute_copies_gib: float  # bf16 weight copies, unsharded FSDP2 blocks in flight
    activations_gib: float  # saved for backward at the peak (incl. the recomputed block under AC)
    workspace_gib: float  # gradients of one block's activations in flight
    host_gib: float  # pinned host memory under CPU offload
    total_gib: float  # on the device

    def as_dict(self) -> dict:
        return asdict(self)


_COUNTS: dict[str, tuple[int, int]] = {}


def count_params(config: MAEConfig) -> tuple[int, int]:
    """(total, largest transformer block) parameter counts, built on the meta device."""
    key = repr(config)
    if key not in _COUNTS:
        _COUNTS[key] = _count_params(config)
    return _COUNTS[key]


def _count_params(config: MAEConfig) -> tuple[int, int]:
    from pixio_robot.models.mae import PixioMAE

    with torch.device("meta"):
        model = PixioMAE(config)
    total = sum(p.numel() for p in model.parameters())
    blocks = [*model.encoder.blocks, *model.decoder_blocks]
    largest = max(sum(p.numel() for p in b.parameters()) for b in blocks)
    return total, largest


_FLOPS: dict[str, dict[str, float]] = {}


def flops_per_image(config: MAEConfig) -> dict[str, float]:
    """Forward + backward FLOPs per image (FlopCounterMode: a multiply-add is 2 FLOPs), total and
    for the encoder and the decoder blocks. Counted on the meta device: free even for 5B."""
    key = repr(config)
    if key not in _FLOPS:
        _FLOPS[key] = _flops_per_image(config)
    return dict(_FLOPS[key])


def _flops_per_image(config: MAEConfig) -> dict[str, float]:
    from pixio_robot.models.mae import PixioMAE

    with torch.device("meta"):
        model = PixioMAE(config)
        x = torch.randn(2, config.encoder.in_chans, *config.encoder.img_size)
    with FlopCounterMode(display=False) as fc:
        loss, _, _ = model(x)
        loss.backward()
    counts = fc.get_flop_counts()

    def part(pattern: str) -> float:
        return sum(sum(v.values()) for k, v in counts.items() if re.fullmatch(pattern, k)) / 2  # batch of 2

    total = fc.get_total_flops() / 2
    enc = part(r"PixioMAE\.encoder\.(blocks\.\d+|patch_embed|norm)")
    dec = part(r"PixioMAE\.decoder_blocks\.\d+")
    return {"total": total, "encoder": enc, "decoder_blocks": dec, "other": total - enc - dec}


def tokens(config: MAEConfig) -> tuple[int, int, int]:
    """(encoder tokens, decoder tokens, patches) per image: class tokens + visible / all patches."""
    from pixio_robot.models.masking import BlockMasking

    e = config.encoder
    n = e.grid_size[0] * e.grid_size[1]
    visible = BlockMasking(e.grid_size, config.mask.block, config.mask.ratio).num_visible
    return e.num_cls_tokens + visible, e.num_cls_tokens + n, n


def activation_bytes_per_image(config: MAEConfig, bf16: bool, ac: bool) -> float:
    e, d = config.encoder, config.decoder
    te, td, n = tokens(config)
    per = ACT_BYTES_BF16 if bf16 else ACT_BYTES_FP32
    enc, dec = te * e.embed_dim, td * d.embed_dim  # token x width of one block
    if ac:  # block inputs (fp32 residual stream) + one block recomputed at a time
        blocks = 4 * (e.depth * enc + d.depth * dec) + per * max(enc, dec)
    else:
        blocks = per * (e.depth * enc + d.depth * dec)
    pix = e.patch_size**2 * e.in_chans
    s = e.img_size[0] * e.img_size[1]
    extras = 4 * e.in_chans * s * 2 + 4 * n * e.embed_dim + td * (2 * d.embed_dim + 4 * pix) + 3 * 4 * n * pix
    return blocks + extras


def plan_memory(config: MAEConfig, micro_batch: int, *, world: int = 1, bf16: bool = True,
                fsdp: bool = False, ac: bool = False, offload: bool = False) -> MemoryPlan:
    """Peak device memory of one training step per rank (see the module docstring)."""
    total, largest = count_params(config)
    shard = world if fsdp else 1
    states, grads = 16 * total / shard, 4 * total / shard
    host = 0.0
    if offload:
        if not fsdp:
            raise ValueError("CPU offload needs FSDP2 (parallel=fsdp)")
        host, states, grads = states, 0.0, 0.0
    if fsdp:  # two blocks unsharded at a time (compute + prefetch): bf16 weights and grads, fp32 reduce
        copies = 2 * largest * ((2 if bf16 else 4) * 2 + 4)
    else:
        copies = 2 * total if bf16 else 0.0  # autocast's bf16 weight copies, kept for backward
        if world > 1:
            copies += 4 * total  # DDP's gradient buckets
    act = activation_bytes_per_image(config, bf16, ac) * micro_batch
    te, td, _ = tokens(config)
    per = ACT_BYTES_BF16 if bf16 else ACT_BYTES_FP32
    one_block = per * max(te * config.encoder.embed_dim, td * config.decoder.embed_dim) * micro_batch
    workspace = 2 * one_block  # gradients of one block's activations in flight
    # the peak is where backward starts (every activation saved, no gradient yet) or where it ends
    # (every gradient, activations freed): whichever is larger
    dev = max(states - grads + act, states + one_block) + copies + workspace
    return MemoryPlan(total, micro_batch, states / GIB, copies / GIB, act / GIB, workspace / GIB, host / GIB,
                      dev / GIB)


def max_micro_batch(config: MAEConfig, card_gib: float, candidates: Iterable[int] | None = None, **kw) -> int:
    """The largest micro-batch among `candidates` (default: powers of two up to 4096) whose plan
    fits in `USABLE` of a `card_gib` card; 0 if none does. `kw` as for `plan_memory`."""
    fitting = [b for b in (candidates or [2**i for i in range(13)])
               if plan_memory(config, b, **kw).total_gib <= USABLE * card_gib]
    return max(fitting, default=0)


def step_time_on_paper(config: MAEConfig, flops_per_image: float, global_batch: int, world: int, *,
                       mfu: float = 0.4, peak_tflops: float = 989.0, nvlink_gbps: float = 450.0,
                       ib_gbps: float = 50.0, node_gpus: int = 8, ac: bool = False, hybrid: bool = True,
                       micro_batch: int | None = None) -> dict:
    """Seconds per optimizer step on `world` GPUs, on paper.

    Compute: FLOPs at `mfu` of the peak (x 4/3 when activations are recomputed). Communication
    per GPU: FSDP2 all-gathers bf16 weights in forward and backward and reduce-scatters fp32
    gradients, 8 bytes per parameter x (n - 1) / n over the group it shards across. Within a node
    that runs at `nvlink_gbps`; across nodes full sharding is bound by `ib_gbps`, so `hybrid`
    (HSDP: shard inside a node, all-reduce the shards' gradients across nodes, 2 x 4 bytes per
    parameter / node_gpus over InfiniBand) is what scales. Communication overlaps compute; only
    the excess and one block's share stay exposed. With gradient accumulation (`micro_batch` <
    global_batch / world) every micro-batch gathers the weights and reduces its gradients again."""
    total, largest = count_params(config)
    per_rank = global_batch / world
    accum = max(1, round(per_rank / micro_batch)) if micro_batch else 1
    compute = per_rank / accum * flops_per_image * (4 / 3 if ac else 1.0) / (mfu * peak_tflops * 1e12)
    shard = min(world, node_gpus) if hybrid else world
    intra = 8 * total * (shard - 1) / shard if shard > 1 else 0.0
    link = nvlink_gbps if shard <= node_gpus else ib_gbps
    comm = intra / (link * 1e9)
    if hybrid and world > node_gpus:
        nodes = world // node_gpus
        comm += 2 * 4 * total / shard * (nodes - 1) / nodes / (ib_gbps * 1e9)
    exposed = max(0.0, comm - compute) + (8 * largest / (link * 1e9) if comm else 0.0)
    step = accum * (compute + exposed)
    compute, comm = accum * compute, accum * comm
    return {"world": world, "accumulation": accum, "compute_s": compute, "comm_s": comm, "step_s": step,
            "images_per_s": global_batch / step, "images_per_s_per_gpu": global_batch / step / world,
            "scaling_efficiency": compute / step, "sharding": "hsdp" if hybrid and world > node_gpus else "fsdp"}


def fits_message(plan: MemoryPlan, device_gib: float) -> str | None:
    """None when the plan fits; else what to change."""
    if plan.total_gib <= USABLE * device_gib:
        return None
    return (f"this step needs about {plan.total_gib:.1f} GiB per device (states {plan.device_states_gib:.1f}, "
            f"activations {plan.activations_gib:.1f} at micro-batch {plan.micro_batch}) but the device has "
            f"{device_gib:.1f} GiB: lower micro_batch_size (gradient accumulation keeps batch_size), set "
            f"activation_checkpointing=true, use parallel=fsdp (shards the states; also on one GPU for bf16 "
            f"copies), or fsdp_cpu_offload=true (states in host memory)")
