"""Encoder adapter and policies: embeddings, modes, history, save -> load, clear load errors."""

from __future__ import annotations

import pytest
import torch

from pixio_robot.policies import (
    AdapterConfig,
    MLPConfig,
    PolicyLoadError,
    PolicySpec,
    build_adapter,
    load_policy,
    make_policy,
    save_policy,
)
from pixio_robot.policies.mlp.modeling_mlp import fuse_history

SPEC = PolicySpec(state_dim=4, action_dim=2, stats={"action": {"mean": [0.5, -1.0], "std": [2.0, 0.5]},
                                                    "observation.state": {"mean": [0.0] * 4, "std": [1.0] * 4}})


def _images(b=3, size=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, size, size, 3), dtype=torch.uint8, generator=g)


@pytest.mark.parametrize("embedding, width", [("mean_cls", 32), ("all_cls", 8 * 32), ("multi_block", 2 * 32),
                                              ("spatial", 256)])
def test_adapter_embeddings(embedding, width):
    a = build_adapter(embedding=embedding)  # pixio_vittest: D=32, 8 class tokens, 2 blocks, 64 px
    out = a(_images())
    assert out.shape == (3, width) and torch.isfinite(out).all()
    if embedding == "mean_cls":  # the paper's embedding: mean of the class tokens of the encoder
        x = a.preprocess(_images())
        torch.testing.assert_close(out, a.backbone.model.forward_features(x)["cls_tokens"].mean(1))


def test_adapter_uint8_and_float_inputs_agree():
    a = build_adapter()
    img = _images(size=64)
    as_float = img.permute(0, 3, 1, 2).float() / 255.0
    torch.testing.assert_close(a(img), a(as_float))
    with pytest.raises(ValueError, match=r"\[B,H,W,3\]"):
        a(img[0])


def test_adapter_seeded_init_and_digest():
    a, b, c = build_adapter(), build_adapter(), build_adapter(init_seed=1)
    assert a.encoder_digest() == b.encoder_digest() != c.encoder_digest()
    assert a.cache_key() != build_adapter(image_size=32).cache_key()


def test_frozen_mode_leaves_encoder_bit_identical():
    policy = make_policy("mlp", MLPConfig(history=2), AdapterConfig(mode="frozen"), SPEC)
    before = {k: v.clone() for k, v in policy.adapter.backbone.state_dict().items()}
    assert not any(p.requires_grad for p in policy.adapter.backbone.parameters())
    opt = torch.optim.Adam([p for p in policy.parameters() if p.requires_grad], lr=1e-2)
    policy.train()
    assert not policy.adapter.backbone.training  # dropout / drop path stay off
    for step in range(5):
        batch = {"observation.image": _images(4, seed=step)[:, None].expand(-1, 2, -1, -1, -1),
                 "observation.state": torch.randn(4, 4), "action": torch.randn(4, 1, 2)}
        loss, _ = policy(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = policy.adapter.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_finetune_and_last_k_train_the_right_weights():
    ft = build_adapter(mode="finetune")
    assert all(p.requires_grad for p in ft.backbone.parameters())
    lk = build_adapter(mode="last_k", last_k=1)
    names = {n for n, p in lk.backbone.named_parameters() if p.requires_grad}
    assert names and all(n.startswith(("model.blocks.1.", "model.norm.")) for n in names)
    with pytest.raises(ValueError, match="last_k=5"):
        build_adapter(mode="last_k", last_k=5)


def test_timm_source_without_download():
    a = build_adapter(source="timm", name="test_vit", embedding="spatial", image_size=64)
    assert a(_images(2)).shape == (2, 256)
    with pytest.raises(ValueError, match="timm does not know"):
        build_adapter(source="timm", name="no_such_model_xyz")


def test_timm_encoder_is_fed_with_its_own_mean_std_and_size():
    """test_vit's default config (r160_in1k) has mean = std = 0.5 and 160 px input, not ImageNet's."""
    from timm.data import resolve_model_data_config

    a = build_adapter(source="timm", name="test_vit")
    data = resolve_model_data_config(a.backbone.model)
    assert data["mean"] == (0.5, 0.5, 0.5) and data["std"] == (0.5, 0.5, 0.5)
    assert a.image_size == 160  # image_size unset: the model's input size
    img = torch.randint(0, 256, (2, 160, 160, 3), dtype=torch.uint8)
    by_hand = (img.permute(0, 3, 1, 2).float() / 255.0 - 0.5) / 0.5  # no resize at 160 px
    torch.testing.assert_close(a.preprocess(img), by_hand)
    spec = a.preprocessing_spec()
    assert spec["mean"] == [0.5] * 3 and spec["std"] == [0.5] * 3 and spec["image_size"] == 160
    assert a.reference()["mean"] == [0.5] * 3  # what a saved policy records
    assert build_adapter(source="timm", name="test_vit", image_size=64).image_size == 64  # set: kept
    pixio = build_adapter()  # Pixio keeps ImageNet
    assert pixio.preprocessing_spec()["mean"] == [0.485, 0.456, 0.406]
    assert pixio.preprocessing_spec()["std"] == [0.229, 0.224, 0.225]


def test_bad_adapter_config_messages():
    with pytest.raises(ValueError, match="encoder.mode='thaw'"):
        AdapterConfig(mode="thaw")
    with pytest.raises(ValueError, match="needs encoder.path"):
        AdapterConfig(source="checkpoint")
    with pytest.raises(ValueError, match="unknown encoder config keys"):
        AdapterConfig.from_dict({"nme": "x"})


def test_flare_fusion():
    e = torch.tensor([[[1.0], [3.0], [6.0]]])  # (B=1, T=3, E=1)
    assert fuse_history(e, "flare").tolist() == [[2.0, 3.0, 6.0]]
    assert fuse_history(e, "concat").tolist() == [[1.0, 3.0, 6.0]]


def test_mlp_history_is_per_row_and_reset_clears_it():
    policy = make_policy("mlp", MLPConfig(history=3), AdapterConfig(), SPEC).eval()
    state = torch.zeros(2, 4)
    frames = [_images(2, seed=s) for s in range(3)]
    policy.reset()
    first = policy.select_action({"observation.image": frames[0], "observation.state": state})
    assert first.shape == (2, 2)
    policy.select_action({"observation.image": frames[1], "observation.state": state})
    third = policy.select_action({"observation.image": frames[2], "observation.state": state})
    stacked = torch.stack(frames, dim=1)  # (B, T, H, W, 3): the same history given at once
    policy.reset()
    torch.testing.assert_close(policy.select_action({"observation.image": stacked, "observation.state": state}),
                               third)
    policy.reset()
    with pytest.raises(ValueError, match=r"got 2 image row\(s\) but 3 state row\(s\)"):
        policy.select_action({"observation.image": frames[0], "observation.state": torch.zeros(3, 4)})
    policy.reset()
    torch.testing.assert_close(policy.select_action({"observation.image": frames[0], "observation.state": state}),
                               first)


@pytest.mark.parametrize("ptype, cfg, enc", [
    ("mlp", MLPConfig(), AdapterConfig()),
    ("mlp", MLPConfig(history=2, normalize_action=True), AdapterConfig(embedding="spatial", mode="last_k")),
])
def test_save_load_gives_identical_actions(tmp_path, ptype, cfg, enc):
    policy = make_policy(ptype, cfg, enc, SPEC)
    with torch.no_grad():  # move BatchNorm statistics / weights off their init values
        for p in policy.parameters():
            p.add_(0.01 * torch.randn_like(p))
    save_policy(policy, tmp_path / "p")
    loaded = load_policy(tmp_path / "p")
    assert type(loaded) is type(policy) and not loaded.training
    policy.eval()
    for p in (policy, loaded):
        p.reset()
    for step in range(4):  # several steps: history (MLP) and the action queue (ACT) are exercised
        obs = {"observation.image": _images(3, seed=step), "observation.state": torch.randn(3, 4,
                                                                                                generator=torch.Generator().manual_seed(step))}
        assert torch.equal(policy.select_action(obs), loaded.select_action(obs))


def test_loading_another_type_or_encoder_fails_clearly(tmp_path):
    from pixio_robot.models import create_model, save_encoder

    torch.manual_seed(0)
    save_encoder(create_model("pixio_vittest"), tmp_path / "enc_a")
    torch.manual_seed(1)
    save_encoder(create_model("pixio_vittest"), tmp_path / "enc_b")
    enc = AdapterConfig(source="checkpoint", path=str(tmp_path / "enc_a"))
    policy = make_policy("mlp", MLPConfig(), enc, SPEC)
    save_policy(policy, tmp_path / "p")
    assert load_policy(tmp_path / "p").adapter.encoder_digest() == policy.adapter.encoder_digest()
    with pytest.raises(PolicyLoadError, match="holds a 'mlp' policy, not a 'act'"):
        load_policy(tmp_path / "p", expected_type="act")
    with pytest.raises(PolicyLoadError, match="different encoder"):
        load_policy(tmp_path / "p", encoder_path=str(tmp_path / "enc_b"))
    with pytest.raises(PolicyLoadError, match="not where it was"):
        load_policy(tmp_path / "p", encoder_path=str(tmp_path / "missing"))
    with pytest.raises(PolicyLoadError, match="not a pixio_robot policy config"):
        load_policy(tmp_path / "enc_a")
    with pytest.raises(PolicyLoadError, match="not a saved policy"):
        load_policy(tmp_path / "nothing_here")
    with pytest.raises(PolicyLoadError, match="is a file; a saved policy is a directory.*pass "):
        load_policy(tmp_path / "p" / "model.safetensors")
    import shutil

    shutil.copytree(tmp_path / "p", tmp_path / "run" / "policy")  # a training run's directory
    with pytest.raises(PolicyLoadError, match="is a training run: its policies are .*run/policy"):
        load_policy(tmp_path / "run")
    weights = tmp_path / "run" / "policy" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])  # cut short
    with pytest.raises(PolicyLoadError, match="cannot be read .*truncated or corrupt"):
        load_policy(tmp_path / "run" / "policy")


@pytest.mark.parametrize("ptype, cfg", [
    ("mlp", MLPConfig(history=2)),
    ("mlp", MLPConfig(history=1, use_state=True)),
])
def test_select_action_reads_the_trained_camera_and_state_keys(tmp_path, ptype, cfg):
    spec = PolicySpec(state_dim=4, action_dim=2, image_key="observation.images.top",
                      state_key="observation.joint_pos", dataset="somewhere")
    save_policy(make_policy(ptype, cfg, AdapterConfig(), spec), tmp_path / "p")
    policy = load_policy(tmp_path / "p")  # the keys are saved with the policy
    assert (policy.spec.image_key, policy.spec.state_key, policy.spec.dataset) == \
        ("observation.images.top", "observation.joint_pos", "somewhere")
    img, other, state = _images(2, seed=0), _images(2, seed=1), torch.randn(2, 4)
    policy.reset()
    trained = policy.select_action({"observation.images.top": img, "observation.joint_pos": state})
    policy.reset()
    env_style = policy.select_action({"observation.image": img, "observation.state": state})  # the env's names
    torch.testing.assert_close(trained, env_style)
    for batch in ({"observation.images.wrist": other, "observation.state": state},  # another camera
                  {"observation.image": img, "observation.images.wrist": other, "observation.state": state}):
        policy.reset()
        with pytest.raises(ValueError, match=r"trained on camera 'observation.images.top'.*observation.images.wrist"):
            policy.select_action(batch)
    policy.reset()
    with pytest.raises(KeyError, match=r"'observation.images.top' or 'observation.image'.*\['observation.state', "
                                       r"'pixels'\]"):
        policy.select_action({"pixels": img, "observation.state": state})
    policy.reset()
    with pytest.raises(KeyError, match=r"needs 'observation.joint_pos' or 'observation.state'"):
        policy.select_action({"observation.images.top": img, "observation.velocity": state})
