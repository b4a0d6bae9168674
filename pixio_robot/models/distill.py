"""Feature distillation: a frozen Pixio teacher -> a smaller Pixio student (how the paper made B/L/H/1B).

The teacher sees the whole image; its last block's tokens *before* the final norm are the
targets. The student (output after its final norm) goes through a projector
Linear -> LayerNorm -> GELU -> Linear to the teacher's width; the loss is the cosine distance
on the class tokens and on the patch tokens, averaged 50/50 (`cls_weight`). Students may see a
block-masked image (the paper: 50% of 4x4 blocks for H and 1B, the full image for B and L); the
patch loss then covers the visible patches only.

The teacher is held outside the module's parameters: it is never trained, sharded, checkpointed
or counted, but moves with `.to()` and stays in eval mode. The forward matches `PixioMAE`'s
`(loss, prediction, mask)` so the pretraining engine (accumulation, FSDP2, compile, resume) runs
it unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pixio_robot.models.blocks import init_weights
from pixio_robot.models.encoder import PixioEncoder
from pixio_robot.models.masking import BlockMasking


def student_name(name: str) -> str:
    """The encoder a pretraining model name stands for: pixio_mae_tiny -> pixio_vittiny,
    pixio_mae_vitb16 -> pixio_vitb16; encoder names pass through."""
    for prefix in ("pixio_mae_", "mae_"):
        if name.startswith(prefix):
            rest = name[len(prefix):]
            return "pixio_" + (rest if rest.startswith("vit") else "vit" + rest)
    return name


class Projector(nn.Sequential):
    """Student width -> teacher width: Linear -> LayerNorm -> GELU -> Linear (the paper's head)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int | None = None) -> None:
        hidden = hidden or out_dim
        super().__init__(nn.Linear(in_dim, hidden), nn.LayerNorm(hidden), nn.GELU(), nn.Linear(hidden, out_dim))
        self.apply(init_weights)


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean over tokens of 1 - cos(a, b), in fp32."""
    return (1.0 - F.cosine_similarity(a.float(), b.float(), dim=-1, eps=1e-6)).mean()


class DistilledStudent(nn.Module):
    """A distillation checkpoint read back without its teacher: `student` (= `encoder`) + `projector`."""

    def __init__(self, config: dict, teacher_dim: int, projector_hidden: int | None) -> None:
        super().__init__()
        from pixio_robot.models.config import EncoderConfig, config_from_dict

        self.student = PixioEncoder(config_from_dict(EncoderConfig, config))
        self.projector = Projector(self.student.embed_dim, teacher_dim, projector_hidden)

    @property
    def encoder(self) -> PixioEncoder:
        return self.student


class PixioDistill(nn.Module):
    """Student + projector (trained) distilled from a frozen `teacher` encoder."""

    def __init__(self, student: PixioEncoder, teacher: PixioEncoder, mask_ratio: float = 0.0,
                 mask_block: int = 4, cls_weight: float = 0.5, projector_hidden: int | None = None) -> None:
        super().__init__()
        if student.num_cls_tokens != teacher.num_cls_tokens:
            raise ValueError(f"the student has {student.num_cls_tokens} class tokens and the teacher "
                             f"{teacher.num_cls_tokens}: distillation matches them one to one; set "
                             f"model.num_cls_tokens={teacher.num_cls_tokens}")
        if student.patch_size != teacher.patch_size:
            raise ValueError(f"student patch size {student.patch_size} != teacher's {teacher.patch_size}: "
                             "their patch tokens must line up")
        if not 0.0 <= cls_weight <= 1.0:
            raise ValueError(f"distill.cls_weight must be in [0, 1], got {cls_weight}")
        self.student = student
        self.projector = Projector(student.embed_dim, teacher.embed_dim, projector_hidden)
        # a full-image student needs no block structure (any grid works)
        self.masking = BlockMasking(student.grid_size, mask_block if mask_ratio > 0 else 1, mask_ratio,
                                    allow_none=True)
        self.cls_weight = cls_weight
        self.config = student.config
        self.dims = {"teacher_dim": teacher.embed_dim, "projector_hidden": projector_hidden or teacher.embed_dim}
        self.num_cls_tokens = student.num_cls_tokens
        object.__setattr__(self, "_teacher", teacher)  # not a submodule: no params, state or sharding
        teacher.requires_grad_(False)
        teacher.eval()

    @property
    def teacher(self) -> PixioEncoder:
        return self._teacher

    @property
    def encoder(self) -> PixioEncoder:
        """The student (the encoder a run exports), named as on `PixioMAE`."""
        return self.student

    def shard_blocks(self) -> list[nn.Module]:
        """Blocks to shard / compile / checkpoint one by one (the student's)."""
        return list(self.student.blocks)

    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        self._teacher._apply(fn, recurse)
        return self

    def train(self, mode: bool = True):
        super().train(mode)
        self._teacher.eval()
        return self

    def no_weight_decay(self) -> set[str]:
        return {f"student.{k}" for k in self.student.no_weight_decay()}

    @torch.no_grad()
    def targets(self, imgs: torch.Tensor) -> torch.Tensor:
        """The teacher's last-block tokens before its final norm, full image: (B, K+N, Dt)."""
        return self._teacher.forward_intermediates(imgs, indices=1, norm=False)[0]

    def forward(self, imgs: torch.Tensor, ids_keep: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Images (B,C,H,W) -> (loss, projected student tokens (B, K+M, Dt), mask (B,N), 1 = hidden)."""
        grid = self.student.check_input(imgs)
        if ids_keep is None:
            masking = self.masking if tuple(grid) == self.masking.grid_size else BlockMasking(
                grid, self.masking.block, self.masking.ratio, allow_none=True).to(imgs.device)
            ids_keep, mask = masking(imgs.shape[0], imgs.device, generator)
        else:
            mask = torch.ones(imgs.shape[0], grid[0] * grid[1], device=imgs.device)
            mask.scatter_(1, ids_keep, 0.0)
        target = self.targets(imgs)  # (B, K+N, Dt)
        k = self.num_cls_tokens
        patches, cls = self.student.embed_patches(imgs)
        d = patches.shape[-1]
        visible = patches.gather(1, ids_keep.unsqueeze(-1).expand(-1, -1, d))
        pred = self.projector(self.student.forward_tokens(torch.cat([cls, visible], dim=1)))  # (B, K+M, Dt)
        t_patch = target[:, k:].gather(1, ids_keep.unsqueeze(-1).expand(-1, -1, target.shape[-1]))
        loss = (self.cls_weight * cosine_distance(pred[:, :k], target[:, :k])
                + (1.0 - self.cls_weight) * cosine_distance(pred[:, k:], t_patch))
        return loss, pred, mask
