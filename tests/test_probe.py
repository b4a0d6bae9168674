"""Probes: metrics against hand-computed values, probes that must score ~1 / ~0, MuJoCo's depth and
segmentation renders of a known geom, and a tiny end-to-end run that resumes."""

import json

import numpy as np
import pytest

from pixio_robot.probe import heads


def test_r2_depth_and_miou_by_hand():
    y = np.array([[1.0], [2.0], [3.0], [4.0]])
    # var(y) = 1.25; errors (0, 0, 1, -1) -> MSE 0.5 -> R^2 = 1 - 0.5 / 1.25 = 0.6
    assert heads.r2(y, np.array([[1.0], [2.0], [2.0], [5.0]])) == pytest.approx(0.6)
    assert heads.r2(y, y) == pytest.approx(1.0)
    # a fixed variance scales a subset on the whole set's scale: errors (0, 1) on rows 1, 2 -> 1 - 0.5/1.25
    assert heads.r2(y[1:3], np.array([[2.0], [2.0]]), var=np.array([1.25])) == pytest.approx(0.6)
    gt = np.array([[1.0, 2.0], [4.0, 1.0]])
    pred = np.array([[1.1, 2.0], [2.0, 1.5]])
    valid = np.array([[True, True], [True, False]])
    m = heads.depth_metrics(pred, gt, valid)
    # |rel| = 0.1, 0, 0.5 -> 0.2; ratios 1.1, 1.0, 2.0 -> 2 of 3 under 1.25
    assert m["absrel"] == pytest.approx(0.2) and m["delta1"] == pytest.approx(2 / 3)
    seg_gt = np.array([[0, 0], [1, 2]])
    seg_pr = np.array([[0, 1], [1, 1]])
    # class 0: 1/2, class 1: 1/3, class 2: 0/1 -> mean 0.2778
    assert heads.miou(seg_pr, seg_gt, 3) == pytest.approx((0.5 + 1 / 3 + 0.0) / 3)


def test_ridge_scores_truth_near_one_and_noise_near_zero():
    rng = np.random.default_rng(0)
    target = rng.normal(size=(400, 3))
    truth = np.concatenate([target, rng.normal(size=(400, 5))], 1)  # features holding the target itself
    tr, te = slice(0, 300), slice(300, 400)
    fit = heads.Ridge().fit(truth[tr], target[tr])
    assert heads.r2(target[te], fit.predict(truth[te])) > 0.99
    noise = rng.normal(size=(400, 20))
    fit = heads.Ridge().fit(noise[tr], target[tr])
    assert abs(heads.r2(target[te], fit.predict(noise[te]))) < 0.1
    # against numpy's least squares at the chosen penalty (the closed form, written independently)
    x = (truth[tr] - truth[tr].mean(0)) / (truth[tr].std(0) + 1e-8)
    a = heads.Ridge().fit(truth[tr], target[tr]).alpha
    coef = np.linalg.solve(x.T @ x + a * np.eye(x.shape[1]), x.T @ (target[tr] - target[tr].mean(0)))
    assert np.allclose(heads.Ridge().fit(truth[tr], target[tr]).coef, coef, atol=1e-8)


def test_dense_probe_recovers_a_per_patch_linear_map():
    """Maps that are a linear function of each patch's token are learnt back exactly."""
    rng = np.random.default_rng(1)
    f, grid, d = 20, (2, 2), 6
    tokens = rng.normal(size=(f, 4, d))
    w = rng.normal(size=(d,))
    per_patch = tokens @ w  # (F, 4): one depth per patch
    maps = np.repeat(np.repeat(per_patch.reshape(f, 2, 2), 8, 1), 8, 2) + 5  # constant within a patch
    probe = heads.DenseProbe(1, stride=8).fit(tokens, maps, grid)  # each patch predicts its 8 x 8 pixels
    pred = probe.predict(tokens, grid, (16, 16))[..., 0]
    assert np.abs(pred - maps).max() < 1e-3
    # other patches' tokens say nothing about a patch: shuffling the tokens across patches breaks it
    shuffled = tokens[:, [1, 0, 3, 2]]
    assert np.abs(probe.predict(shuffled, grid, (16, 16))[..., 0] - maps).max() > 0.5


XML = """
<mujoco>
  <visual><quality shadowsize="0" offsamples="0"/></visual>
  <worldbody>
    <geom name="floor" type="plane" size="5 5 0.1" pos="0 0 -2"/>
    <camera name="cam" pos="0 0 3" xyaxes="1 0 0 0 1 0"/>
    <body name="hand" pos="-0.6 0 0"><geom type="box" size="0.3 0.3 0.3"/></body>
    <body name="thing" pos="0.6 0 1"><joint type="slide" axis="1 0 0"/><geom type="box" size="0.3 0.3 0.3"/></body>
  </worldbody>
</mujoco>
"""


def test_depth_and_segmentation_renders_match_the_model():
    mujoco = pytest.importorskip("mujoco")
    from pixio_robot.envs.rendering import setup_gl
    from pixio_robot.probe.sets import _Renders, segmentation_classes

    setup_gl()
    model = mujoco.MjModel.from_xml_string(XML)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    assert list(segmentation_classes(model)) == [0, 1, 2]  # floor scene, hand robot, jointed body object
    r = _Renders(model, 64, "cam")
    try:
        rgb, depth, seg = r(data)
    finally:
        r.close()
    # the camera looks down -z from z=3 (fovy 45): x=-0.6 / +0.6 land left / right of the centre
    col = lambda x, z: int(round(32 + 32 * x / ((3 - z) * np.tan(np.radians(22.5)))))  # noqa: E731
    assert seg[32, col(-0.6, 0.3)] == 1 and seg[32, col(0.6, 1.3)] == 2 and seg[5, 32] == 0
    # depth along the view axis: hand top face at z=0.3 -> 2.7; thing's top at z=1.3 -> 1.7; floor at 5
    assert depth[32, col(-0.6, 0.3)] == pytest.approx(2.7, abs=0.02)
    assert depth[32, col(0.6, 1.3)] == pytest.approx(1.7, abs=0.02)
    assert depth[5, 32] == pytest.approx(5.0, abs=0.05)


@pytest.mark.slow
def test_probe_entry_end_to_end_resumes(tmp_path):
    pytest.importorskip("metaworld")
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    import pixio_robot.probe.config  # noqa: F401
    from pixio_robot.probe.loop import run_probe

    overrides = ["envs=[metaworld/drawer-open-v3,metaworld/button-press-topdown-v3]", "n_episodes=5",
                 "test_episodes=2", "train_sizes=[1,3]", "steps=30", "every=5", "bootstrap_reps=200",
                 f"run_dir={tmp_path / 'probe'}", f"set_root={tmp_path / 'sets'}", "progress=false"]
    with initialize_config_module("pixio_robot.configs.probe", version_base="1.3"):
        cfg = OmegaConf.to_object(compose("config", overrides=overrides))
    out = run_probe(cfg)
    assert out["cells"] == 8 and out["failed"] == []  # (2 tasks + 2 transfers) x (encoder + pixel floor)
    rec = json.loads((tmp_path / "probe" / "cells" / "drawer-open-v3__pixels__s0.json").read_text())
    assert rec["train_sizes"] == [1, 3] and rec["n_test_frames"] == 12  # 2 episodes x 6 frames
    assert set(rec["state_cls@3"]) == {"hand", "objects", "joints", "mean"}
    assert 0 <= rec["dense"]["seg_miou"]["value"] <= 1 and rec["dense"]["depth_absrel"]["value"] > 0
    md = (tmp_path / "probe" / "report" / "probes.md").read_text()
    assert "## drawer-open-v3" in md and "Across tasks" in md and "pixio_test_random" in md
    assert (tmp_path / "probe" / "report" / "probes.png").read_bytes()[:4] == b"\x89PNG"
    sets = list((tmp_path / "sets").rglob("*.npz"))
    assert len(sets) == 2
    mtimes = [p.stat().st_mtime_ns for p in sets]
    before = (tmp_path / "probe" / "cells" / "drawer-open-v3__pixels__s0.json").read_text()
    again = run_probe(cfg)  # resume: nothing re-rendered, finished cells skipped
    assert again["failed"] == [] and [p.stat().st_mtime_ns for p in sets] == mtimes
    assert (tmp_path / "probe" / "cells" / "drawer-open-v3__pixels__s0.json").read_text() == before
    # other settings (a cell-protocol key): every finished cell and the old records are moved aside, not overwritten
    with initialize_config_module("pixio_robot.configs.probe", version_base="1.3"):
        other = OmegaConf.to_object(compose("config", overrides=[*overrides, "bootstrap_reps=100"]))
    assert run_probe(other)["failed"] == [] and [p.stat().st_mtime_ns for p in sets] == mtimes
    (aside,) = (tmp_path / "probe" / "previous").iterdir()
    assert (aside / "cells" / "drawer-open-v3__pixels__s0.json").read_text() == before
    assert len(list((aside / "cells").glob("*.json"))) == 8 and (aside / "report" / "probes.md").exists()
    assert "bootstrap_reps: 200" in (aside / "config.yaml").read_text()
    assert "bootstrap_reps: 100" in (tmp_path / "probe" / "config.yaml").read_text()


def test_floors_random_init_of_the_same_architecture_and_pixels(tmp_path):
    import torch

    from pixio_robot.evaluation.suites import EncoderSpec
    from pixio_robot.models import create_model, save_encoder
    from pixio_robot.probe.config import ProbeConfig
    from pixio_robot.probe.loop import build_encoders

    torch.manual_seed(3)
    enc = create_model("pixio_vittest")
    with torch.no_grad():
        for p in enc.parameters():
            p.add_(1.0)  # far from any init
    save_encoder(enc, tmp_path / "enc")
    cfg = ProbeConfig(encoders=[EncoderSpec(label="mine", source="checkpoint", name="pixio_vittest",
                                            path=str(tmp_path / "enc"))], n_episodes=21)
    feats = build_encoders(cfg)
    assert [f.label for f in feats] == ["mine", "random_init(mine)", "pixels"]
    trained, floor = (f.adapter.backbone.model for f in feats[:2])
    assert torch.equal(trained.blocks[0].attn.qkv.weight, enc.blocks[0].attn.qkv.weight)
    assert floor.config == trained.config and feats[0].digest() != feats[1].digest()
    assert floor.blocks[0].attn.qkv.weight.std() < 0.5  # re-initialised, not the +1 weights
    rgb = np.random.default_rng(0).integers(0, 255, (3, 64, 64, 3), dtype=np.uint8)
    cls, patches, grid = feats[2].features(rgb)
    assert cls.shape == (3, 16 * 16 * 3) and patches.shape == (3, 16, 768) and grid == (4, 4)
    # a raw patch token is the patch's pixels, channel-major
    assert np.allclose(patches[1, 5].reshape(3, 16, 16), rgb[1, 16:32, 16:32].transpose(2, 0, 1) / 255, atol=1e-6)


def test_pooled_sums_give_the_direct_metrics_and_episode_intervals():
    rng = np.random.default_rng(2)
    y, pred = rng.normal(size=(40, 3)), rng.normal(size=(40, 3))
    var = y.var(0)
    assert heads.r2_finalize(var)(heads.r2_sums(y, pred).sum(0)) == pytest.approx(heads.r2(y, pred, var))
    gt = rng.uniform(0.5, 3, size=(40, 8, 8))
    dp = gt * rng.uniform(0.7, 1.4, size=gt.shape)
    valid = rng.random(gt.shape) > 0.2
    t = heads.depth_sums(dp, gt, valid).sum(0)
    m = heads.depth_metrics(dp, gt, valid)
    assert t[0] / t[2] == pytest.approx(m["absrel"]) and t[1] / t[2] == pytest.approx(m["delta1"])
    sg, sp = rng.integers(0, 3, (40, 8, 8)), rng.integers(0, 3, (40, 8, 8))
    assert heads.miou_finalize(heads.miou_sums(sp, sg, 3).sum(0)) == pytest.approx(heads.miou(sp, sg, 3))
    # episodes that agree -> a narrow interval; one perfect and one bad episode -> a wide one
    episodes = np.repeat(np.arange(4), 10)
    good = y + 0.01 * rng.normal(size=y.shape)
    lo, hi = heads.sums_bootstrap(heads.r2_sums(y, good), heads.r2_finalize(var), episodes, reps=500)
    assert 0.99 < lo <= hi <= 1.0
    mixed = np.where((episodes < 2)[:, None], good, pred)
    lo, hi = heads.sums_bootstrap(heads.r2_sums(y, mixed), heads.r2_finalize(var), episodes, reps=500)
    assert hi - lo > 0.5
