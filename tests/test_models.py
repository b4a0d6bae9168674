"""Pixio encoder / MAE: shapes, masking, loss, gradients, sizes, registry."""

import math

import pytest
import timm
import torch
import torch.nn.functional as F

from pixio_robot.models import BlockMasking, EncoderConfig, PixioEncoder, create_model, list_models


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("hw", [(224, 224), (256, 256), (160, 96)])
def test_encoder_shapes_any_size(hw):
    enc = create_model("pixio_vittest", img_size=256)
    x = torch.randn(2, 3, *hw)
    out = enc.forward_features(x)
    n = (hw[0] // 16) * (hw[1] // 16)
    assert out["cls_tokens"].shape == (2, 8, 32)
    assert out["patch_tokens"].shape == (2, n, 32)
    emb = enc.embed(x)
    assert emb.shape == (2, 32)
    torch.testing.assert_close(emb, out["cls_tokens"].mean(1))


def test_encoder_rejects_bad_sizes():
    enc = create_model("pixio_vittest")
    with pytest.raises(ValueError, match="multiple of the patch size"):
        enc(torch.randn(1, 3, 70, 64))
    with pytest.raises(ValueError, match="multiple of patch_size"):
        EncoderConfig(img_size=250)


def test_pos_embed_interpolation_is_bicubic_on_grid_only():
    enc = create_model("pixio_vittest", img_size=64)  # 4x4 grid, 8 class tokens
    pos = enc.pos_embed_for((6, 2))
    k, d = enc.num_cls_tokens, enc.embed_dim
    assert pos.shape == (1, k + 12, d)
    torch.testing.assert_close(pos[:, :k], enc.pos_embed[:, :k])  # class positions unchanged
    grid = enc.pos_embed[:, k:].reshape(1, 4, 4, d).permute(0, 3, 1, 2)
    ref = F.interpolate(grid, size=(6, 2), mode="bicubic", align_corners=False, antialias=False)
    torch.testing.assert_close(pos[:, k:], ref.permute(0, 2, 3, 1).reshape(1, 12, d))


def test_forward_intermediates():
    enc = create_model("pixio_vittest", depth=4)
    x = torch.randn(1, 3, 64, 64)
    inter = enc.forward_intermediates(x)  # paper default: L/4*(i+1)-1
    assert len(inter) == 4 and inter[0].shape == (1, 8 + 16, 32)
    last = enc.forward_intermediates(x, [-1], norm=True)[0]
    feats = enc.forward_features(x)
    torch.testing.assert_close(last, torch.cat([feats["cls_tokens"], feats["patch_tokens"]], 1))
    with pytest.raises(ValueError, match="out of range"):
        enc.forward_intermediates(x, [7])
    maps = enc.forward_intermediates(torch.randn(2, 3, 64, 96), [-1], norm=True, output_fmt="NCHW")[0]
    assert maps.shape == (2, 32, 4, 6)  # (B, D, H/16, W/16): patch tokens only, as timm's dense heads take
    tokens = enc.forward_features(torch.zeros(1, 3, 64, 96))["patch_tokens"]
    torch.testing.assert_close(enc.forward_intermediates(torch.zeros(1, 3, 64, 96), [-1], norm=True,
                                                         output_fmt="NCHW")[0][0, :, 1, 2], tokens[0, 1 * 6 + 2])


# (grid, block, ratio, visible blocks): counted by hand, int(blocks x (1 - ratio)) rounded down as the
# official code: 16 blocks x 0.25 = 4; 64 x 0.25 = 16; 256 x 0.25 = 64; 49 x 0.5 = 24.5 -> 24;
# 2x3 = 6 blocks x 0.25 = 1.5 -> 1; 2x2 = 4 x 0.25 = 1; 16 x 0.1 = 1.6 -> 1
@pytest.mark.parametrize("grid,block,ratio,keep_blocks", [((16, 16), 4, 0.75, 4), ((16, 16), 2, 0.75, 16),
                                                          ((16, 16), 1, 0.75, 64), ((14, 14), 2, 0.5, 24),
                                                          ((8, 12), 4, 0.75, 1), ((16, 16), 8, 0.75, 1),
                                                          ((16, 16), 4, 0.9, 1)])
def test_masking_visible_counts_and_whole_blocks(grid, block, ratio, keep_blocks):
    masking = BlockMasking(grid, block, ratio)
    ids_keep, mask = masking(5)
    assert ids_keep.shape == (5, keep_blocks * block * block)
    assert (mask.sum(1) == grid[0] * grid[1] - keep_blocks * block * block).all()
    # visible ids are exactly the unmasked positions
    for b in range(5):
        assert set(ids_keep[b].tolist()) == set((mask[b] == 0).nonzero().flatten().tolist())
    # every g x g block is either fully masked or fully visible
    m = mask.reshape(5, grid[0] // block, block, grid[1] // block, block)
    per_block = m.sum(dim=(2, 4))
    assert ((per_block == 0) | (per_block == block * block)).all()
    # masks differ across samples (random per sample)
    assert len({tuple(r.tolist()) for r in mask}) > 1 or (grid[0] // block) * (grid[1] // block) < 3


def test_pixio_default_masking_at_256():
    model = create_model("pixio_mae_vitb16", depth=1, decoder_depth=1)  # shallow for speed
    assert model.masking.num_visible == 64  # 4 of 16 blocks of 4x4 patches
    assert model.num_cls_tokens == 8


def test_masking_rejects_bad_grid():
    with pytest.raises(ValueError, match="not divisible"):
        BlockMasking((10, 10), 4, 0.75)


def test_mae_forward_and_loss_only_on_masked():
    model = create_model("pixio_mae_test", img_size=64, mask_block=2)
    x = torch.randn(3, 3, 64, 64)
    loss, pred, mask = model(x)
    assert pred.shape == (3, 16, 16 * 16 * 3) and mask.shape == (3, 16)
    assert torch.isfinite(loss)
    # changing predictions at visible patches must not change the loss
    pred2 = pred.detach() + (1 - mask).unsqueeze(-1) * 100.0
    torch.testing.assert_close(model.forward_loss(x, pred.detach(), mask), model.forward_loss(x, pred2, mask))
    # ...but changing a masked prediction does
    pred3 = pred.detach() + mask.unsqueeze(-1) * 1.0
    assert model.forward_loss(x, pred3, mask) > model.forward_loss(x, pred.detach(), mask) + 0.5


def test_patchify_roundtrip_and_target_normalisation():
    model = create_model("pixio_mae_test")
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(model.unpatchify(model.patchify(x), (4, 4)), x)
    # a perfect prediction of the normalised target gives zero loss
    t = model.patchify(x)
    t = (t - t.mean(-1, keepdim=True)) / (t.var(-1, keepdim=True) + 1e-6).sqrt()
    mask = torch.ones(2, 16)
    assert model.forward_loss(x, t, mask).item() < 1e-10


def test_every_parameter_gets_a_gradient():
    model = create_model("pixio_mae_test", drop_path_rate=0.1)
    loss, _, _ = model(torch.randn(2, 3, 64, 64))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing


def test_fixed_ids_keep_is_deterministic():
    model = create_model("pixio_mae_test").eval()
    x = torch.randn(2, 3, 64, 64)
    ids = torch.tensor([[0, 1, 4, 5], [10, 11, 14, 15]])
    a = model(x, ids_keep=ids)
    b = model(x, ids_keep=ids)
    torch.testing.assert_close(a[0], b[0])
    assert a[2][0, :2].sum() == 0 and a[2][0, 2] == 1


def test_vanilla_mae_preset_is_one_switch():
    mae = create_model("mae_vitb16", depth=1)
    pixio = create_model("pixio_mae_vitb16", depth=1, decoder_depth=1)
    assert mae.num_cls_tokens == 1 and mae.masking.block == 1 and len(mae.decoder_blocks) == 8
    assert pixio.num_cls_tokens == 8 and pixio.masking.block == 4


PAPER = {"pixio_vitb16": 86e6, "pixio_vitl16": 303e6, "pixio_vith16": 631e6,
         "pixio_vit1b16": 1362e6, "pixio_vit5b16": 5441e6}


@pytest.mark.parametrize("name,expected", PAPER.items())
def test_paper_parameter_counts_on_meta(name, expected):
    with torch.device("meta"):
        enc = create_model(name)
    n = sum(p.numel() for p in enc.parameters())
    assert abs(n - expected) / expected < 0.005, (name, n)


def test_decoder_size_matches_paper():
    with torch.device("meta"):
        model = create_model("pixio_mae_vitb16")
    dec = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("encoder."))
    assert abs(dec - 103e6) / 103e6 < 0.03, dec


def test_registry_and_timm():
    assert "pixio_vitb16" in list_models("pixio_vit*")
    enc = timm.create_model("pixio_vittest")
    assert isinstance(enc, PixioEncoder)
    with pytest.raises(KeyError, match="Did you mean"):
        create_model("pixio_vitb61")
    with pytest.raises(TypeError, match="unknown encoder options"):
        create_model("pixio_vittest", widht=3)
    with pytest.raises(ValueError, match="never downloads"):
        timm.create_model("pixio_vittest", pretrained=True)


def test_drop_path_is_stochastic_in_train_only():
    enc = create_model("pixio_vittest", drop_path_rate=0.5, depth=4)
    x = torch.randn(4, 3, 64, 64)
    enc.train()
    assert not torch.allclose(enc(x), enc(x))
    enc.eval()
    torch.testing.assert_close(enc(x), enc(x))
    assert math.isclose(enc.blocks[-1].drop_path.drop_prob, 0.5)
