"""The lerobot_policy_pixio plugin: LeRobot's own ACT / Diffusion with a Pixio (or timm) trunk.

Checked against LeRobot itself: with a ResNet-18 trunk the plugin's policies give LeRobot's loss and
actions for the same weights and batch; lerobot-train / lerobot-eval run them as real subprocesses.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from lerobot.configs import FeatureType, PolicyFeature
from lerobot.policies.act.configuration_act import ACTConfig
from lerobot.policies.act.modeling_act import ACTPolicy
from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy
from lerobot.policies.factory import get_policy_class, make_pre_post_processors
from lerobot.utils.constants import ACTION, OBS_STATE
from lerobot_policy_pixio import PixioACTConfig, PixioDiffusionConfig

IMG = "observation.image"
BIN = Path(sys.executable).parent
IMAGENET = {"mean": torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1),
            "std": torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)}
TINY_ACT = dict(chunk_size=4, n_action_steps=4, dim_model=32, n_heads=2, dim_feedforward=64, n_encoder_layers=1,
                n_vae_encoder_layers=1, latent_dim=8, device="cpu")
TINY_DIFFUSION = dict(n_obs_steps=2, horizon=8, n_action_steps=4, down_dims=(16, 32), kernel_size=3, n_groups=4,
                      diffusion_step_embed_dim=16, spatial_softmax_num_keypoints=8, num_train_timesteps=10,
                      device="cpu")


def _features(cams=(IMG,), side=64, state=2, action=2):
    inp = {k: PolicyFeature(FeatureType.VISUAL, (3, side, side)) for k in cams}
    inp[OBS_STATE] = PolicyFeature(FeatureType.STATE, (state,))
    return inp, {ACTION: PolicyFeature(FeatureType.ACTION, (action,))}


def _stats(cams=(IMG,), state=2, action=2, imagenet=True):
    s = {OBS_STATE: {"mean": torch.zeros(state), "std": torch.ones(state) * 2,
                     "min": -torch.ones(state) * 3, "max": torch.ones(state) * 3},
         ACTION: {"mean": torch.ones(action) * 0.1, "std": torch.ones(action) * 0.5,
                  "min": -torch.ones(action), "max": torch.ones(action)}}
    for k in cams:
        s[k] = dict(IMAGENET) if imagenet else {}
    return s


def _batch(cams=(IMG,), side=64, b=3, t=None, chunk=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    lead = (b,) if t is None else (b, t)
    out = {k: torch.rand(*lead, 3, side, side, generator=g) for k in cams}
    out[OBS_STATE] = torch.randn(*lead, 2, generator=g)
    out[ACTION] = torch.randn(b, chunk, 2, generator=g)
    out["action_is_pad"] = torch.zeros(b, chunk, dtype=torch.bool)
    return out


def _obs(batch):
    return {k: v for k, v in batch.items() if k not in (ACTION, "action_is_pad")}


def _randomise_norm_stats(module, seed=1):
    g = torch.Generator().manual_seed(seed)
    for name, buf in module.named_buffers():
        if name.endswith("running_mean"):
            buf.copy_(torch.randn(buf.shape, generator=g) * 0.1)
        elif name.endswith("running_var"):
            buf.copy_(torch.rand(buf.shape, generator=g) + 0.5)


def _pixio_act(**kw):
    inp, out = _features(kw.pop("cams", (IMG,)), kw.pop("side", 64))
    return get_policy_class("pixio_act")(PixioACTConfig(input_features=inp, output_features=out,
                                                        **{**TINY_ACT, **kw}))


# -- registration and config checks ------------------------------------------------------------
def test_lerobot_finds_the_plugin_types():
    from lerobot.utils.import_utils import register_third_party_plugins

    register_third_party_plugins()  # what lerobot-train / lerobot-eval call
    assert get_policy_class("pixio_act").__name__ == "PixioACTPolicy"
    assert issubclass(get_policy_class("pixio_act"), ACTPolicy)
    assert issubclass(get_policy_class("pixio_diffusion"), DiffusionPolicy)
    pre, post = make_pre_post_processors(PixioACTConfig(**TINY_ACT), dataset_stats=None)
    assert len(pre.steps) > 0 and len(post.steps) > 0


@pytest.mark.parametrize("kw, msg", [
    ({"pixio_encoder_source": "hub"}, "pixio_encoder_source='hub' is not one of"),
    ({"pixio_mode": "half"}, "pixio_mode='half' is not one of"),
    ({"pixio_encoder_source": "checkpoint"}, "needs pixio_encoder_path"),
    ({"pixio_mode": "last_k", "pixio_last_k": 0}, "pixio_last_k must be >= 1"),
    ({"pretrained_backbone_weights": "ResNet18_Weights.IMAGENET1K_V1"}, "leave it None"),
])
def test_config_refuses_bad_trunk_fields(kw, msg):
    for cls in (PixioACTConfig, PixioDiffusionConfig):
        with pytest.raises(ValueError, match=msg):
            cls(**kw)


def test_config_refuses_double_image_normalisation():
    from lerobot.configs import NormalizationMode

    norm = {"VISUAL": NormalizationMode.MEAN_STD, "STATE": NormalizationMode.MEAN_STD,
            "ACTION": NormalizationMode.MEAN_STD}
    with pytest.raises(ValueError, match="set VISUAL to IDENTITY"):
        PixioACTConfig(normalization_mapping=norm)


def test_vit_input_off_the_patch_grid_is_refused():
    with pytest.raises(ValueError, match="not a multiple of 16"):
        _pixio_act(side=72)
    inp, out = _features(side=96)
    with pytest.raises(ValueError, match="not a multiple of 16"):
        get_policy_class("pixio_diffusion")(PixioDiffusionConfig(
            input_features=inp, output_features=out, crop_shape=(84, 84), **TINY_DIFFUSION))
    resized = get_policy_class("pixio_diffusion")(PixioDiffusionConfig(  # resize inside the trunk instead
        input_features=inp, output_features=out, crop_shape=(84, 84), pixio_image_size=64, **TINY_DIFFUSION))
    pool = resized.diffusion.rgb_encoder.pool  # rebuilt for the trunk's (32, 4, 4) map (the ResNet's was 512-wide)
    assert (pool._in_c, pool._in_h, pool._in_w) == (32, 4, 4) and pool.pos_grid.shape == (16, 2)


# -- (a) ResNet-18 trunk == LeRobot's own policy ---------------------------------------------------
@torch.no_grad()
def _copy_into_plugin(lerobot_policy, plugin_policy, trunk_prefix, resnet_prefixes):
    """LeRobot's weights into the plugin policy: the ResNet into the timm resnet18 trunk(s), the rest as is."""
    src = lerobot_policy.state_dict()
    dst = plugin_policy.state_dict()
    mapped = {}
    for k, v in src.items():
        hit = next((p for p in resnet_prefixes if k.startswith(p)), None)
        if hit is None:
            mapped[k] = v
        else:
            mapped[trunk_prefix[hit] + k[len(hit):]] = v
    missing = sorted(set(dst) - set(mapped))
    assert all(k.endswith("num_batches_tracked") for k in missing), missing
    assert not set(mapped) - set(dst)
    plugin_policy.load_state_dict(mapped, strict=False)


def test_act_resnet18_trunk_matches_lerobot_act():
    inp, out = _features(side=64)
    torch.manual_seed(0)
    ref = ACTPolicy(ACTConfig(input_features=inp, output_features=out, pretrained_backbone_weights=None,
                              **TINY_ACT))
    _randomise_norm_stats(ref.model.backbone)
    mine = get_policy_class("pixio_act")(PixioACTConfig(
        input_features=inp, output_features=out, pixio_encoder_source="timm", pixio_encoder_name="resnet18",
        **TINY_ACT))
    _copy_into_plugin(ref, mine, {"model.backbone.": "model.backbone.trunk.backbone.model."}, ["model.backbone."])
    ref_pre, ref_post = make_pre_post_processors(ref.config, dataset_stats=_stats())  # ImageNet stats, as lerobot-train
    pre, post = make_pre_post_processors(mine.config, dataset_stats=_stats(imagenet=False))
    batch = _batch()
    losses = []
    for policy, p in ((ref, ref_pre), (mine, pre)):
        policy.train()
        torch.manual_seed(3)  # dropout and the CVAE sample draw the same numbers
        losses.append(policy.forward(p(dict(batch)))[0])
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
    assert losses[0].item() > 0
    acts = []
    for policy, p, q in ((ref, ref_pre, ref_post), (mine, pre, post)):
        policy.reset()
        acts.append(q(policy.select_action(p(_obs(batch)))))
    torch.testing.assert_close(acts[1], acts[0], rtol=1e-5, atol=1e-5)


def test_diffusion_resnet18_trunk_matches_lerobot_diffusion():
    inp, out = _features(side=64)
    common = dict(input_features=inp, output_features=out, crop_shape=(48, 48),
                  use_separate_rgb_encoder_per_camera=True, **TINY_DIFFUSION)
    torch.manual_seed(0)
    ref = DiffusionPolicy(DiffusionConfig(pretrained_backbone_weights=None, use_group_norm=False, **common))
    _randomise_norm_stats(ref.diffusion.rgb_encoder)
    mine = get_policy_class("pixio_diffusion")(PixioDiffusionConfig(
        pixio_encoder_source="timm", pixio_encoder_name="resnet18", pixio_mode="finetune", **common))
    assert isinstance(mine.diffusion.rgb_encoder, torch.nn.ModuleList)
    # LeRobot's backbone is Sequential(conv1, bn1, relu, maxpool, layer1..4): children 0,1 and 4..7
    names = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}
    src = "diffusion.rgb_encoder.0.backbone."
    prefixes = {src + i + ".": f"diffusion.rgb_encoder.0.backbone.backbone.model.{n}." for i, n in names.items()}
    _copy_into_plugin(ref, mine, prefixes, list(prefixes))
    ref_pre, ref_post = make_pre_post_processors(ref.config, dataset_stats=_stats())
    pre, post = make_pre_post_processors(mine.config, dataset_stats=_stats(imagenet=False))
    batch = _batch(t=2, chunk=8)
    losses = []
    for policy, p in ((ref, ref_pre), (mine, pre)):
        policy.train()
        torch.manual_seed(5)  # random crop, noise and timesteps
        losses.append(policy.forward(p(dict(batch)))[0])
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
    acts = []
    obs = {k: v[:, -1] for k, v in _obs(batch).items()}
    for policy, p, q in ((ref, ref_pre, ref_post), (mine, pre, post)):
        policy.reset()
        torch.manual_seed(7)
        acts.append(q(policy.select_action(p(dict(obs)))))
    torch.testing.assert_close(acts[1], acts[0], rtol=1e-4, atol=1e-5)


# -- (b) Pixio trunk modes -------------------------------------------------------------------------
def _one_step(policy, batch):
    opt = torch.optim.AdamW(policy.get_optim_params(), lr=1e-2)
    policy.train()
    loss = policy.forward(batch)[0]
    loss.backward()
    opt.step()
    return loss


def _trunk_params(policy):
    return {k: v.detach().clone() for k, v in policy.named_parameters() if ".backbone.model." in k}


@pytest.mark.parametrize("kind", ["pixio_act", "pixio_diffusion"])
def test_frozen_trunk_is_bit_identical_and_finetune_trains_it(kind):
    def build(mode):
        torch.manual_seed(0)
        if kind == "pixio_act":
            return _pixio_act(pixio_mode=mode), _batch()
        inp, out = _features()
        return (get_policy_class(kind)(PixioDiffusionConfig(input_features=inp, output_features=out,
                                                           pixio_mode=mode, **TINY_DIFFUSION)),
                _batch(t=2, chunk=8))

    frozen, batch = build("frozen")
    before = _trunk_params(frozen)
    assert before and not any(p.requires_grad for k, p in frozen.named_parameters() if k in before)
    _one_step(frozen, batch)
    assert all(torch.equal(before[k], v) for k, v in _trunk_params(frozen).items())
    trunk = next(m for m in frozen.modules() if type(m).__name__ == "PixioTrunk")
    assert trunk.training and not trunk.backbone.training  # policy.train() leaves a frozen encoder in eval

    tuned, batch = build("finetune")
    before = _trunk_params(tuned)
    _one_step(tuned, batch)
    grads = {k: p.grad for k, p in tuned.named_parameters() if ".blocks.0." in k and k in before}
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads.values())
    changed = [k for k, v in _trunk_params(tuned).items() if not torch.equal(before[k], v)]
    assert any(".blocks.0." in k for k in changed) and any(".blocks.1." in k for k in changed)

    last, batch = build("last_k")  # pixio_last_k=1: only the last block and the final norm
    assert {k for k, p in last.named_parameters() if k in before and p.requires_grad} == \
        {k for k in before if ".blocks.1." in k or k.split(".")[-2] == "norm"}


# -- (c) save_pretrained -> from_pretrained ------------------------------------------------------
@pytest.mark.parametrize("kind", ["pixio_act", "pixio_diffusion"])
def test_save_pretrained_round_trip_gives_identical_actions(kind, tmp_path):
    from lerobot.configs import PreTrainedConfig
    from lerobot.envs.configs import PushtEnv
    from lerobot.policies.factory import make_policy

    inp, out = _features(side=96)
    if kind == "pixio_act":
        policy = get_policy_class(kind)(PixioACTConfig(input_features=inp, output_features=out,
                                                       pixio_mode="finetune", **TINY_ACT))
        batch = _batch(side=96)
    else:
        policy = get_policy_class(kind)(PixioDiffusionConfig(input_features=inp, output_features=out,
                                                             pixio_mode="finetune", **TINY_DIFFUSION))
        batch = _batch(side=96, t=2, chunk=8)
    _one_step(policy, batch)  # a finetuned trunk: its weights exist only in model.safetensors
    pre, post = make_pre_post_processors(policy.config, dataset_stats=_stats(imagenet=False))
    policy.save_pretrained(tmp_path)
    pre.save_pretrained(tmp_path)
    post.save_pretrained(tmp_path)
    saved = (tmp_path / "config.json").read_text()
    assert f'"type": "{kind}"' in saved and '"pixio_encoder_name": "pixio_vittest"' in saved

    obs = {k: (v[:, -1] if v.ndim > 2 and kind == "pixio_diffusion" else v) for k, v in _obs(batch).items()}

    def act(p, pre_, post_):
        p.reset()
        torch.manual_seed(11)
        return [post_(p.select_action(pre_(dict(obs)))) for _ in range(2)]

    want = act(policy, pre, post)
    loaded = get_policy_class(kind).from_pretrained(tmp_path)
    pre2, post2 = make_pre_post_processors(loaded.config, pretrained_path=str(tmp_path))
    for a, b in zip(want, act(loaded, pre2, post2)):
        assert torch.equal(a, b)
    for (k, v), (k2, v2) in zip(policy.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k
    cfg = PreTrainedConfig.from_pretrained(tmp_path)  # the lerobot-eval path
    cfg.pretrained_path = tmp_path
    via_factory = make_policy(cfg, env_cfg=PushtEnv())
    assert type(via_factory) is type(policy)
    for a, b in zip(want, act(via_factory, pre2, post2)):
        assert torch.equal(a, b)


# -- (e) two cameras, one trunk; a missing camera is refused ----------------------------------------
CAMS = ("observation.images.top", "observation.images.wrist")


def test_two_cameras_share_one_trunk_and_a_missing_camera_is_an_error():
    policy = _pixio_act(cams=CAMS, pixio_mode="finetune")
    trunks = [m for m in policy.modules() if type(m).__name__ == "PixioTrunk"]
    assert len(trunks) == 1
    loss = _one_step(policy, _batch(cams=CAMS))
    assert torch.isfinite(loss)
    obs = _obs(_batch(cams=CAMS))
    obs.pop("observation.images.wrist")
    policy.reset()
    with pytest.raises(KeyError, match=r"lacks \['observation.images.wrist'\]"):
        policy.select_action(obs)
    inp, out = _features(cams=CAMS)
    diff = get_policy_class("pixio_diffusion")(PixioDiffusionConfig(input_features=inp, output_features=out,
                                                                    **TINY_DIFFUSION))
    assert len([m for m in diff.modules() if type(m).__name__ == "PixioTrunk"]) == 1
    with pytest.raises(KeyError, match="observation.images.wrist"):
        diff.select_action(obs)


# -- (d, e) lerobot-train / lerobot-eval as real subprocesses --------------------------------------
def _write_dataset(root: Path, cams, side=96, episodes=2, frames=12):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    feats = {k: {"dtype": "image", "shape": (side, side, 3), "names": ["height", "width", "channels"]}
             for k in cams}
    feats[OBS_STATE] = {"dtype": "float32", "shape": (2,), "names": None}
    feats[ACTION] = {"dtype": "float32", "shape": (2,), "names": None}
    ds = LeRobotDataset.create("local/x", fps=10, features=feats, root=root, use_videos=False)
    rng = np.random.default_rng(0)
    for _ in range(episodes):
        for _ in range(frames):
            fr = {k: rng.integers(0, 256, (side, side, 3), dtype=np.uint8) for k in cams}
            fr[OBS_STATE] = rng.uniform(0, 512, 2).astype(np.float32)
            fr[ACTION] = rng.uniform(0, 512, 2).astype(np.float32)
            ds.add_frame({**fr, "task": "push the T"})
        ds.save_episode()
    ds.finalize()
    return root


def _run(args, cwd):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
           "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    r = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=500)
    assert r.returncode == 0, f"{' '.join(map(str, args))}\n--- stdout\n{r.stdout[-3000:]}\n--- stderr\n{r.stderr[-6000:]}"
    return r


TRAIN_ACT = ["--policy.type=pixio_act", "--policy.chunk_size=4", "--policy.n_action_steps=4",
             "--policy.dim_model=32", "--policy.n_heads=2", "--policy.dim_feedforward=64",
             "--policy.n_encoder_layers=1", "--policy.n_vae_encoder_layers=1", "--policy.latent_dim=8",
             "--policy.pixio_encoder_name=pixio_vittest", "--policy.pixio_mode=finetune"]
TRAIN_COMMON = ["--steps=2", "--batch_size=2", "--num_workers=0", "--env_eval_freq=0", "--save_freq=2", "--log_freq=1",
                "--policy.device=cpu", "--policy.push_to_hub=false", "--wandb.enable=false",
                "--dataset.repo_id=local/x"]


@pytest.mark.slow
def test_lerobot_train_then_lerobot_eval_on_pusht(tmp_path):
    root = _write_dataset(tmp_path / "ds", (IMG,))
    out = tmp_path / "train"
    _run([BIN / "lerobot-train", *TRAIN_ACT, *TRAIN_COMMON, f"--dataset.root={root}", f"--output_dir={out}"],
         tmp_path)
    saved = out / "checkpoints" / "last" / "pretrained_model"
    assert (saved / "model.safetensors").is_file() and (saved / "config.json").is_file()
    assert '"pixio_encoder_source": "pixio"' in (saved / "config.json").read_text()
    assert list(saved.glob("policy_preprocessor*.json"))
    ev = tmp_path / "eval"
    _run([BIN / "lerobot-eval", f"--policy.path={saved}", "--env.type=pusht", "--env.episode_length=12",
          "--eval.n_episodes=1", "--eval.batch_size=1", "--policy.device=cpu", f"--output_dir={ev}"], tmp_path)
    info = next(ev.rglob("eval_info.json")).read_text()
    assert '"n_episodes": 1' in info or "avg_sum_reward" in info


@pytest.mark.slow
def test_lerobot_train_pixio_diffusion_on_two_cameras(tmp_path):
    root = _write_dataset(tmp_path / "ds", CAMS, side=64, frames=14)
    out = tmp_path / "train"
    diff = ["--policy.type=pixio_diffusion", "--policy.n_obs_steps=2", "--policy.horizon=8",
            "--policy.n_action_steps=4", "--policy.down_dims=[16,32]", "--policy.kernel_size=3",
            "--policy.n_groups=4", "--policy.diffusion_step_embed_dim=16",
            "--policy.spatial_softmax_num_keypoints=8", "--policy.num_train_timesteps=10",
            "--policy.drop_n_last_frames=3", "--policy.pixio_mode=finetune"]
    _run([BIN / "lerobot-train", *diff, *TRAIN_COMMON, f"--dataset.root={root}", f"--output_dir={out}"], tmp_path)
    saved = out / "checkpoints" / "last" / "pretrained_model"
    loaded = get_policy_class("pixio_diffusion").from_pretrained(saved)
    assert list(loaded.config.image_features) == list(CAMS)
    assert len([m for m in loaded.modules() if type(m).__name__ == "PixioTrunk"]) == 1


@pytest.mark.parametrize("fmt", ["pixio", "transformers"])
def test_checkpoint_trunk_loads_the_saved_encoder(fmt, tmp_path):
    from pixio_robot.models import create_model
    from pixio_robot.models.checkpoint import save_encoder

    torch.manual_seed(42)
    enc = create_model("pixio_vittest")
    save_encoder(enc, tmp_path / "enc", format=fmt)
    policy = _pixio_act(pixio_encoder_source="checkpoint", pixio_encoder_path=str(tmp_path / "enc"))
    trunk = policy.model.backbone.trunk.backbone.model.state_dict()
    for k, v in enc.state_dict().items():
        assert torch.equal(trunk[k], v), k
    random = _pixio_act()  # the registry name with its seeded random init is another encoder
    assert not torch.equal(random.model.backbone.trunk.backbone.model.state_dict()["blocks.0.attn.qkv.weight"],
                           enc.state_dict()["blocks.0.attn.qkv.weight"])


def test_cached_maps_give_lerobots_loss_and_need_a_frozen_trunk():
    from pixio_robot.policies.lerobot.cache import act_reads_cached_maps, encode_act_frames

    policy = _pixio_act()
    batch = _batch()
    policy.train()
    torch.manual_seed(3)
    want = policy.forward(dict(batch))[0]
    maps = encode_act_frames(policy, batch[IMG], batch_size=2)
    assert maps.shape == (3, 32, 4, 4)
    with act_reads_cached_maps(policy):
        torch.manual_seed(3)
        got = policy.forward({**batch, IMG: maps})[0]
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert type(policy.model.backbone).__name__ == "ActTrunk"  # put back afterwards
    with pytest.raises(ValueError, match="need a frozen trunk"):
        encode_act_frames(_pixio_act(pixio_mode="finetune"), batch[IMG])
