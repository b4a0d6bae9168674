"""Training engine: AdamW parameter groups, lr schedule, and a step free of host syncs.

The step never calls `.item()`: the loss, the grad norm and a "finite" flag stay on the device
and are read every `log_every` steps. A non-finite loss skips the update *on the device*: the
fused AdamW kernel takes a `found_inf` tensor and leaves weights and moments untouched when it
is set (GradScaler's mechanism, without a scaler); gradient clipping uses the same flag.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
import torch.distributed.tensor
from torch import nn

from pixio_robot.models import IMAGENET_MEAN, IMAGENET_STD
from pixio_robot.pretrain.config import OptimConfig


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: decay for >= 2-D weights; no decay for biases, norms and other 1-D params.
    As the official Pixio / MAE pretraining, the class tokens, position embeddings and mask token
    (3-D) *are* decayed; the models' `no_weight_decay()` (timm's fine-tuning convention, which
    skips them) is deliberately not read here."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def scaled_lr(cfg: OptimConfig, global_batch: int) -> float:
    """Peak lr for the real global batch: `lr` is given at `ref_batch_size` (linear or sqrt rule)."""
    ratio = global_batch / cfg.ref_batch_size
    return cfg.lr * {"linear": ratio, "sqrt": math.sqrt(ratio), "none": 1.0}[cfg.scaling]


def lr_at(step: int, total: int, peak: float, warmup: int, min_lr: float) -> float:
    """Per-iteration schedule: linear warmup to `peak`, then half-cycle cosine to `min_lr`. Warmup
    step i uses peak * (i + 1) / warmup (the official code: peak * i / warmup, so its first step
    does nothing); from step `warmup` on the two agree."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_lr + (peak - min_lr) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def build_optimizer(model: nn.Module, cfg: OptimConfig, peak_lr: float) -> torch.optim.AdamW:
    groups = param_groups(model, cfg.weight_decay)
    fused = cfg.fused and _fused_ok(model)
    return torch.optim.AdamW(groups, lr=peak_lr, betas=tuple(cfg.betas), eps=cfg.eps, fused=fused or None)


def _fused_ok(model: nn.Module) -> bool:
    """Fused AdamW takes floating CPU / CUDA tensors, FSDP2's DTensors included (torch >= 2.4)."""
    ps = list(model.parameters())
    return bool(ps) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in ps)


def autocast_context(device: torch.device, amp: str):
    """bf16 autocast on GPU by default; fp32 on CPU unless asked."""
    mode = ("bf16" if device.type == "cuda" else "none") if amp == "auto" else amp
    if mode == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if mode == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


@dataclass
class StepOutput:
    loss: torch.Tensor  # () mean loss over the micro-batches, on the device
    finite: torch.Tensor  # () bool
    grad_norm: torch.Tensor | None


class Engine:
    """Owns model, optimizer and the per-step logic (accumulation, skip on non-finite, clipping)."""

    def __init__(self, model: nn.Module, raw_model: nn.Module, optimizer: torch.optim.Optimizer, *,
                 device: torch.device, amp: str, clip_grad: float, accum: int) -> None:
        self.model, self.raw, self.opt = model, raw_model, optimizer
        self.device, self.amp, self.clip, self.accum = device, amp, clip_grad, accum
        self.fused = bool(optimizer.defaults.get("fused"))
        self.params = [p for g in optimizer.param_groups for p in g["params"]]
        self.param_device = self.params[0].device  # the host under FSDP2 CPU offload
        self.mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
        masking = raw_model.masking
        self.block_patch_ids = masking.block_patch_ids.to(device)  # (num_blocks, g*g)
        self.num_keep_blocks = masking.num_keep_blocks

    def prepare(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images [B,3,S,S] + mask noise [B,nb] -> normalised float images and ids_keep [B,M]."""
        imgs = batch["images"].to(self.device, non_blocking=True).float().div_(255.0)
        imgs = (imgs - self.mean) / self.std
        noise = batch["noise"].to(self.device, non_blocking=True)
        keep_blocks = noise.argsort(dim=1)[:, : self.num_keep_blocks]  # (B, kb)
        ids_keep = self.block_patch_ids[keep_blocks].flatten(1).sort(dim=1).values  # (B, kb*g*g)
        return imgs, ids_keep

    def forward(self, imgs: torch.Tensor, ids_keep: torch.Tensor):
        with autocast_context(self.device, self.amp):
            return self.model(imgs, ids_keep=ids_keep)

    def step(self, micro_batches: list[dict], lr: float, want_norm: bool = False) -> StepOutput:
        """One optimizer step over the micro-batches (gradient accumulation); device tensors only.
        `want_norm` also computes the gradient norm (always computed when clipping)."""
        for g in self.opt.param_groups:
            g["lr"] = lr
        total = torch.zeros((), device=self.device)
        for i, batch in enumerate(micro_batches):
            imgs, ids_keep = self.prepare(batch)
            sync = i == len(micro_batches) - 1
            ctx = self.model.no_sync() if (not sync and hasattr(self.model, "no_sync")) else contextlib.nullcontext()
            with ctx:
                loss, _, _ = self.forward(imgs, ids_keep)
                (loss / len(micro_batches)).backward()
            total += loss.detach().float()
        total /= len(micro_batches)
        grads = [p.grad for p in self.params if p.grad is not None]
        norm = None
        finite = torch.isfinite(total)
        if self.clip > 0 or want_norm:
            norm = torch.nn.utils.get_total_norm(grads)
            if isinstance(norm, torch.distributed.tensor.DTensor):
                norm = norm.full_tensor()
        if self.clip > 0:
            finite = finite & torch.isfinite(norm)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            flag = finite.float()  # one rank's NaN reaches every rank through the gradient all-reduce
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
            finite = flag.bool()
        if self.clip > 0:
            torch.nn.utils.clip_grads_with_norm_(self.params, self.clip, norm)
        if self.fused:
            # under CPU offload the step runs on the host: a (blocking) copy of the flag to it
            self.opt.found_inf = (~finite).float().to(self.param_device)
            self.opt.step()
        elif bool(finite):  # non-fused optimizers need this one sync
            self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return StepOutput(total, finite, norm)
