"""Block masking with static shapes: hide a fixed share of g x g blocks of patches per sample.

Every sample keeps exactly `num_keep_blocks` blocks, so the number of visible tokens is a
constant and the step compiles with static shapes (no boolean indexing, no host syncs).
"""

from __future__ import annotations

import torch
from torch import nn


class BlockMasking(nn.Module):
    def __init__(self, grid_size: tuple[int, int], block: int = 4, ratio: float = 0.75,
                 allow_none: bool = False) -> None:
        """`allow_none` accepts a ratio that hides nothing (every patch visible; distillation's
        full-image students)."""
        super().__init__()
        gh, gw = grid_size
        if gh % block or gw % block:
            raise ValueError(f"patch grid {gh}x{gw} is not divisible by block size {block}")
        self.grid_size = (gh, gw)
        self.block = block
        self.ratio = ratio
        self.blocks_hw = (gh // block, gw // block)
        self.num_blocks = self.blocks_hw[0] * self.blocks_hw[1]
        # rounded down, as the official code (int(L * (1 - ratio))): at least `ratio` is hidden
        self.num_keep_blocks = min(self.num_blocks, max(1, int(self.num_blocks * (1.0 - ratio) + 1e-9)))
        if not 0.0 <= ratio < 1.0:
            raise ValueError(f"mask ratio must be in [0, 1), got {ratio}")
        if self.num_keep_blocks >= self.num_blocks and not allow_none:
            raise ValueError(f"ratio {ratio} masks no block of {self.num_blocks}; raise it or shrink the block")
        # Patch indices (row-major in the patch grid) of each block: (num_blocks, g*g).
        bh, bw = self.blocks_hw
        rows = torch.arange(gh).view(bh, block, 1, 1).expand(bh, block, bw, block)
        cols = torch.arange(gw).view(1, 1, bw, block).expand(bh, block, bw, block)
        patch_ids = (rows * gw + cols).permute(0, 2, 1, 3).reshape(self.num_blocks, block * block)
        self.register_buffer("block_patch_ids", patch_ids, persistent=False)

    @property
    def num_visible(self) -> int:
        return self.num_keep_blocks * self.block * self.block

    def forward(self, batch_size: int, device: torch.device | None = None,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return `ids_keep` (B, M) sorted visible patch indices and `mask` (B, N), 1 = masked."""
        device = device or self.block_patch_ids.device
        n = self.grid_size[0] * self.grid_size[1]
        noise = torch.rand(batch_size, self.num_blocks, device=device, generator=generator)
        keep_blocks = noise.argsort(dim=1)[:, : self.num_keep_blocks]  # (B, kb)
        ids_keep = self.block_patch_ids.to(device)[keep_blocks].flatten(1)  # (B, kb*g*g)
        ids_keep = ids_keep.sort(dim=1).values
        mask = torch.ones(batch_size, n, device=device)
        mask.scatter_(1, ids_keep, 0.0)
        return ids_keep, mask
