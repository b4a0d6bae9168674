"""The Pixio encoder: a ViT with K learnable class tokens and learned absolute positions.

Positions: one learned embedding per class token and per patch of the training grid
(1 x (K + N) x D). Other input sizes (any multiple of the patch size, non-square too) use
bicubic interpolation of the patch-grid part only (align_corners=False, no antialias); the
class-token positions stay as they are.
"""

from __future__ import annotations

import torch
from timm.layers import PatchEmbed, resample_abs_pos_embed, trunc_normal_
from torch import nn

from pixio_robot.models.blocks import Block, init_weights
from pixio_robot.models.config import EncoderConfig


class PixioEncoder(nn.Module):
    def __init__(self, config: EncoderConfig | None = None, **overrides) -> None:
        super().__init__()
        if config is None:
            config = EncoderConfig(**overrides)
        elif overrides:
            raise TypeError("pass either a config or keyword overrides, not both")
        self.config = c = config
        self.embed_dim = c.embed_dim
        self.num_cls_tokens = c.num_cls_tokens
        self.patch_size = c.patch_size
        self.img_size = c.img_size
        self.grid_size = c.grid_size
        self.num_prefix_tokens = c.num_cls_tokens

        self.patch_embed = PatchEmbed(img_size=c.img_size, patch_size=c.patch_size, in_chans=c.in_chans,
                                      embed_dim=c.embed_dim, strict_img_size=False)
        num_patches = self.grid_size[0] * self.grid_size[1]
        self.cls_token = nn.Parameter(torch.zeros(1, c.num_cls_tokens, c.embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, c.num_cls_tokens + num_patches, c.embed_dim))
        dpr = [c.drop_path_rate * i / max(c.depth - 1, 1) for i in range(c.depth)]  # linear rule
        self.blocks = nn.ModuleList(
            Block(c.embed_dim, c.num_heads, c.mlp_ratio, c.qkv_bias, dpr[i], c.norm_eps) for i in range(c.depth))
        self.norm = nn.LayerNorm(c.embed_dim, eps=c.norm_eps)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.apply(init_weights)
        w = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.cls_token, std=0.02)

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token"}

    # -- stages ---------------------------------------------------------------------------
    def pos_embed_for(self, grid: tuple[int, int]) -> torch.Tensor:
        """Position embeddings (1, K + gh*gw, D) for a patch grid, interpolated if needed."""
        if tuple(grid) == tuple(self.grid_size):
            return self.pos_embed
        return resample_abs_pos_embed(self.pos_embed, new_size=list(grid), old_size=list(self.grid_size),
                                      num_prefix_tokens=self.num_cls_tokens, interpolation="bicubic",
                                      antialias=False)

    def check_input(self, x: torch.Tensor) -> tuple[int, int]:
        if x.ndim != 4 or x.shape[1] != self.config.in_chans:
            raise ValueError(f"expected images [B,{self.config.in_chans},H,W], got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"expected float images normalised with the ImageNet mean / std, got {x.dtype}: "
                             "convert uint8 with x.float() / 255 then normalise (policies' adapters take uint8)")
        h, w = x.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"image size {h}x{w} is not a multiple of the patch size {self.patch_size}")
        return h // self.patch_size, w // self.patch_size

    def embed_patches(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B,3,H,W) -> patch tokens with positions (B,N,D) and class tokens (B,K,D)."""
        grid = self.check_input(x)
        pos = self.pos_embed_for(grid)  # (1, K+N, D)
        patches = self.patch_embed(x) + pos[:, self.num_cls_tokens:]  # (B, N, D)
        cls = (self.cls_token + pos[:, : self.num_cls_tokens]).expand(x.shape[0], -1, -1)  # (B, K, D)
        return patches, cls

    def forward_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, K+M, D) -> blocks -> final norm -> (B, K+M, D)."""
        for blk in self.blocks:
            tokens = blk(tokens)
        return self.norm(tokens)

    # -- public API -----------------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        patches, cls = self.embed_patches(x)
        tokens = self.forward_tokens(torch.cat([cls, patches], dim=1))  # (B, K+N, D)
        k = self.num_cls_tokens
        return {"cls_tokens": tokens[:, :k], "patch_tokens": tokens[:, k:]}

    def forward_intermediates(self, x: torch.Tensor, indices: int | list[int] | None = None,
                              norm: bool = False, output_fmt: str = "NLC") -> list[torch.Tensor]:
        """Outputs of the chosen blocks (an int n means the last n blocks; None means the paper's 4
        evenly spaced blocks L/4*(i+1)-1). `norm` applies the final LayerNorm. `output_fmt`:
        "NLC" (default) gives every token (B, K+N, D), class tokens first; "NCHW" gives the patch
        tokens as feature maps (B, D, H/16, W/16), the layout timm's dense heads take."""
        if output_fmt not in ("NLC", "NCHW"):
            raise ValueError(f"output_fmt must be 'NLC' or 'NCHW', got {output_fmt!r}")
        grid = self.check_input(x)
        depth = len(self.blocks)
        if indices is None:
            indices = [depth // 4 * (i + 1) - 1 for i in range(4)]
        elif isinstance(indices, int):
            indices = list(range(depth - indices, depth))
        bad = [i for i in indices if not -depth <= i < depth]
        if bad:
            raise ValueError(f"block indices {bad} out of range for depth {depth}")
        wanted = {i % depth for i in indices}
        patches, cls = self.embed_patches(x)
        tokens = torch.cat([cls, patches], dim=1)
        out = {}
        for i, blk in enumerate(self.blocks):
            tokens = blk(tokens)
            if i in wanted:
                out[i] = self.norm(tokens) if norm else tokens
            if i >= max(wanted):
                break
        outs = [out[i % depth] for i in indices]
        if output_fmt == "NCHW":
            k = self.num_cls_tokens
            outs = [o[:, k:].transpose(1, 2).reshape(o.shape[0], o.shape[2], *grid) for o in outs]
        return outs

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Global embedding (B, D): mean of the class tokens after the final norm."""
        return self.forward_features(x)["cls_tokens"].mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(x)
