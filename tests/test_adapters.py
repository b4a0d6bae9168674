"""policies.encoder_adapter directly: preprocessing against published constants and torchvision,
the embeddings against timm's own model calls, trainability per mode, and the identity (digest,
cache key) that the feature cache relies on."""

from __future__ import annotations

import pytest
import timm
import torch
import torchvision.transforms.v2.functional as TF

from pixio_robot.policies import build_adapter

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # torchvision's published values


def test_pixio_preprocess_is_imagenet_normalisation_and_antialiased_resize():
    a = build_adapter(image_size=32)
    img = torch.randint(0, 256, (2, 48, 64, 3), dtype=torch.uint8)
    x = img.permute(0, 3, 1, 2).float() / 255
    want = TF.normalize(TF.resize(x, [32, 32], antialias=True), IMAGENET_MEAN, IMAGENET_STD)
    torch.testing.assert_close(a.preprocess(img), want, atol=2e-5, rtol=0)
    torch.testing.assert_close(a.preprocess(x), a.preprocess(img))  # float [B,3,H,W] in [0,1] is the same image
    flat = torch.full((1, 32, 32, 3), 51, dtype=torch.uint8)  # no resize: pure per-channel arithmetic
    out = a.preprocess(flat)[0, :, 0, 0]
    torch.testing.assert_close(out, torch.tensor([(0.2 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)]))
    for bad in (torch.zeros(2, 8, 8, dtype=torch.uint8), torch.zeros(1, 8, 8, 4, dtype=torch.uint8),
                torch.zeros(1, 8, 8, 3)):
        with pytest.raises(ValueError, match="images"):
            a.preprocess(bad)


def test_timm_source_takes_the_models_own_normalisation_and_embedding():
    a = build_adapter(source="timm", name="resnet18", image_size=64)
    ref_cfg = timm.data.resolve_model_data_config(timm.create_model("resnet18", pretrained=False))
    assert a.norm_mean == tuple(ref_cfg["mean"]) and a.norm_std == tuple(ref_cfg["std"])
    ref = timm.create_model("resnet18", pretrained=False, num_classes=0).eval()
    ref.load_state_dict({k: v for k, v in a.backbone.model.state_dict().items() if not k.startswith("fc.")})
    img = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
    with torch.no_grad():
        want = ref(TF.normalize(img.permute(0, 3, 1, 2).float() / 255, ref_cfg["mean"], ref_cfg["std"]))
    torch.testing.assert_close(a(img), want, atol=1e-5, rtol=1e-5)
    assert a.out_dim == 512 and a.feature_shape == (512,)
    with pytest.raises(ValueError, match="all_cls needs class tokens"):
        build_adapter(source="timm", name="resnet18", embedding="all_cls")


def test_embedding_shapes_by_hand():
    base = build_adapter(image_size=32)
    d, p, k = base.backbone.embed_dim, base.backbone.patch_size, base.backbone.num_cls_tokens
    img = torch.randint(0, 256, (3, 32, 32, 3), dtype=torch.uint8)
    assert base.encode(img).shape == (3, d)
    assert build_adapter(image_size=32, embedding="all_cls").encode(img).shape == (3, k * d)
    spatial = build_adapter(image_size=32, embedding="spatial", spatial_dim=24)
    assert spatial.encode(img).shape == (3, (32 // p) ** 2, d) and spatial(img).shape == (3, 24)
    mb = build_adapter(image_size=32, embedding="multi_block", blocks=[0, -1])
    assert mb.encode(img).shape == (3, 2 * d)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        build_adapter(image_size=p * 2 + 1)
    with pytest.raises(ValueError, match="out of range"):
        build_adapter(embedding="multi_block", blocks=[99])


def _trainable(a) -> set[str]:
    return {n for n, q in a.backbone.model.named_parameters() if q.requires_grad}


def test_modes_set_exactly_the_trainable_parameters():
    frozen = build_adapter(mode="frozen")
    assert _trainable(frozen) == set()
    frozen.train()
    assert not frozen.backbone.training  # dropout / drop path stay off
    every = {n for n, _ in frozen.backbone.model.named_parameters()}
    assert _trainable(build_adapter(mode="finetune")) == every
    last = build_adapter(mode="last_k", last_k=1)
    depth = len(last.backbone.model.blocks)
    want = {n for n in every if n.startswith(f"blocks.{depth - 1}.") or n.startswith("norm.")}
    assert _trainable(last) == want and want
    img = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8)
    build_adapter(mode="finetune", image_size=32)(img).sum().backward()  # grads flow when not frozen
    assert frozen.encode(img).requires_grad is False
    with pytest.raises(ValueError, match="only"):
        build_adapter(mode="last_k", last_k=depth + 1)


def test_digest_and_cache_key_follow_weights_and_preprocessing():
    a, b = build_adapter(), build_adapter()
    assert a.encoder_digest() == b.encoder_digest() and a.cache_key() == b.cache_key()  # seeded init
    assert build_adapter(init_seed=1).encoder_digest() != a.encoder_digest()
    assert build_adapter(image_size=32).cache_key() != a.cache_key()
    assert build_adapter(image_size=32).encoder_digest() == a.encoder_digest()  # same weights
    with torch.no_grad():
        next(b.backbone.parameters()).add_(1e-3)
    assert b.encoder_digest() != a.encoder_digest()
    ref = a.reference()
    assert ref["digest"] == a.encoder_digest() and ref["config"]["name"] == "pixio_vittest"
    with pytest.raises(ValueError, match="unknown encoder config keys"):
        build_adapter({"nmae": "x"})
