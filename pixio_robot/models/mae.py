"""Pixio MAE: encoder + deep decoder + block masking + normalised-pixel loss.

The forward is a chain of named stages (MAE's layout):
  patchify -> masking -> forward_encoder -> forward_decoder -> forward_loss
Class tokens go through the decoder too; their outputs are dropped before the loss.
"""

from __future__ import annotations

import torch
from timm.layers import resample_abs_pos_embed, trunc_normal_
from torch import nn

from pixio_robot.models.blocks import Block, init_weights
from pixio_robot.models.config import MAEConfig
from pixio_robot.models.encoder import PixioEncoder
from pixio_robot.models.masking import BlockMasking


class PixioMAE(nn.Module):
    def __init__(self, config: MAEConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or MAEConfig()
        self.encoder = PixioEncoder(c.encoder)
        e, d = c.encoder, c.decoder
        self.patch_size = e.patch_size
        self.num_cls_tokens = e.num_cls_tokens
        self.masking = BlockMasking(e.grid_size, c.mask.block, c.mask.ratio)
        n = e.grid_size[0] * e.grid_size[1]
        self.decoder_embed = nn.Linear(e.embed_dim, d.embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d.embed_dim))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, e.num_cls_tokens + n, d.embed_dim))
        self.decoder_blocks = nn.ModuleList(
            Block(d.embed_dim, d.num_heads, d.mlp_ratio, True, 0.0, e.norm_eps) for _ in range(d.depth))
        self.decoder_norm = nn.LayerNorm(d.embed_dim, eps=e.norm_eps)
        self.decoder_pred = nn.Linear(d.embed_dim, e.patch_size**2 * e.in_chans)
        for m in (self.decoder_embed, self.decoder_blocks, self.decoder_norm, self.decoder_pred):
            m.apply(init_weights)
        trunc_normal_(self.decoder_pos_embed, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)

    def shard_blocks(self) -> list[nn.Module]:
        """Blocks to shard / compile / checkpoint one by one: the encoder's, then the decoder's."""
        return [*self.encoder.blocks, *self.decoder_blocks]

    def no_weight_decay(self) -> set[str]:
        return {f"encoder.{k}" for k in self.encoder.no_weight_decay()} | {"decoder_pos_embed", "mask_token"}

    # -- stages ---------------------------------------------------------------------------
    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, N, p*p*C), patches row-major, pixels (p, p, C) within a patch."""
        p = self.patch_size
        b, c, h, w = imgs.shape
        x = imgs.reshape(b, c, h // p, p, w // p, p)  # (B, C, gh, p, gw, p)
        x = torch.einsum("bchpwq->bhwpqc", x)  # (B, gh, gw, p, p, C)
        return x.reshape(b, (h // p) * (w // p), p * p * c)

    def unpatchify(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """(B, N, p*p*C) -> (B, C, H, W)."""
        p = self.patch_size
        gh, gw = grid
        b = x.shape[0]
        x = x.reshape(b, gh, gw, p, p, -1)  # (B, gh, gw, p, p, C)
        x = torch.einsum("bhwpqc->bchpwq", x)
        return x.reshape(b, -1, gh * p, gw * p)

    def masking_for(self, grid: tuple[int, int]) -> BlockMasking:
        if tuple(grid) == self.masking.grid_size:
            return self.masking
        return BlockMasking(grid, self.masking.block, self.masking.ratio).to(self.mask_token.device)

    def forward_encoder(self, imgs: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
        """Images (B,C,H,W) + visible ids (B,M) -> latent (B, K+M, D) after the final norm."""
        patches, cls = self.encoder.embed_patches(imgs)  # (B, N, D), (B, K, D)
        d = patches.shape[-1]
        visible = patches.gather(1, ids_keep.unsqueeze(-1).expand(-1, -1, d))  # (B, M, D)
        return self.encoder.forward_tokens(torch.cat([cls, visible], dim=1))

    def forward_decoder(self, latent: torch.Tensor, ids_keep: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Latent (B, K+M, D) -> per-patch pixel predictions (B, N, p*p*C)."""
        k = self.num_cls_tokens
        x = self.decoder_embed(latent)  # (B, K+M, Dd)
        b, _, dd = x.shape
        n = grid[0] * grid[1]
        full = self.mask_token.to(x.dtype).expand(b, n, dd).clone()  # (B, N, Dd)
        full = full.scatter(1, ids_keep.unsqueeze(-1).expand(-1, -1, dd), x[:, k:])
        x = torch.cat([x[:, :k], full], dim=1)  # (B, K+N, Dd)
        pos = self.decoder_pos_embed
        if tuple(grid) != self.encoder.grid_size:
            pos = resample_abs_pos_embed(pos, new_size=list(grid), old_size=list(self.encoder.grid_size),
                                         num_prefix_tokens=k, interpolation="bicubic", antialias=False)
        x = x + pos
        for blk in self.decoder_blocks:
            x = blk(x)
        x = self.decoder_pred(self.decoder_norm(x))  # (B, K+N, p*p*C)
        return x[:, k:]

    def forward_loss(self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """MSE over masked patches only; targets normalised per patch: (x - mean) / sqrt(var + 1e-6)
        with torch's default *unbiased* variance (n - 1), as the official Pixio and MAE code."""
        target = self.patchify(imgs)
        if self.config.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.0e-6) ** 0.5
        loss = (pred.float() - target.float()).pow(2).mean(dim=-1)  # (B, N)
        return (loss * mask).sum() / mask.sum()

    def forward(self, imgs: torch.Tensor, ids_keep: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Images (B,C,H,W) -> (loss, pred (B,N,p*p*C), mask (B,N) with 1 = masked).
        Pass `ids_keep` to fix the visible patches (e.g. to compare implementations)."""
        grid = self.encoder.check_input(imgs)
        if ids_keep is None:
            ids_keep, mask = self.masking_for(grid)(imgs.shape[0], imgs.device, generator)
        else:
            mask = torch.ones(imgs.shape[0], grid[0] * grid[1], device=imgs.device)
            mask.scatter_(1, ids_keep, 0.0)
        latent = self.forward_encoder(imgs, ids_keep)
        pred = self.forward_decoder(latent, ids_keep, grid)
        loss = self.forward_loss(imgs, pred, mask)
        return loss, pred, mask
