"""Multi-camera CortexBench MLP: every camera through one shared adapter, embeddings joined in the
recorded camera order, one feature-cache entry per camera."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from test_policies_data import ACTION_DIM, STATE_DIM, make_dataset
from test_train import compose

TOP, WRIST = "observation.images.top", "observation.images.wrist"


@pytest.fixture(autouse=True)
def _no_git_lookup(monkeypatch):
    monkeypatch.setattr("pixio_robot.utils.run.git_revision", lambda *a, **k: "test")


@pytest.fixture(scope="module")
def two_cam(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("mc") / "two_cam", n_episodes=3, length=8, size=16, video=False,
                        cameras=(TOP, WRIST))


@pytest.fixture(scope="module")
def trained(two_cam, tmp_path_factory):
    from pixio_robot.train import run_train

    tmp = tmp_path_factory.mktemp("mc_runs")
    args = [f"dataset.root={two_cam}", "dataset.val_fraction=0", "optim.batch_size=8", "optim.epochs=30",
            f"cache_dir={tmp / 'cache'}", "progress=false", "tensorboard=false"]
    res = run_train(compose(*args, f"run_dir={tmp / 'run1'}"))
    return res, args, tmp


def test_two_cameras_train_with_one_shared_encoder(trained):
    from pixio_robot.policies import build_adapter, load_policy

    res, _, _ = trained
    first, last = res["history"][0]["train_loss"], res["final_train_loss"]
    assert res["cameras"] == [TOP, WRIST] and res["cache"] == "miss"
    assert last < first / 3, (first, last)
    policy = load_policy(res["policy_dir"])
    assert policy.camera_keys == [TOP, WRIST] and policy.spec.image_key == TOP
    meta = json.loads((Path(res["policy_dir"]) / "config.json").read_text())
    assert meta["spec"]["image_keys"] == [TOP, WRIST]
    # one adapter (no per-camera copies): its parameters are exactly one encoder's
    n_enc = sum(p.numel() for p in build_adapter().parameters())
    assert sum(p.numel() for p in policy.adapter.parameters()) == n_enc
    assert [n for n, _ in policy.named_children()] == ["adapter", "mlp"]
    e = policy.adapter.out_dim
    assert policy.embed_dim == 2 * e
    assert policy.mlp[0].num_features == policy.config.history * 2 * e + STATE_DIM


def test_cache_holds_one_entry_per_camera_and_is_reused(trained):
    from pixio_robot.data.feature_cache import FeatureCache
    from pixio_robot.train import run_train

    res, args, tmp = trained
    cache = FeatureCache(tmp / "cache")
    entries = cache.entries()
    cams = sorted(json.loads((p / "meta.json").read_text())["dataset"].split(":", 1)[1] for p in entries)
    assert cams == [TOP, WRIST]  # one entry per camera, keyed by its camera
    again = run_train(compose(*args, "optim.epochs=1", f"run_dir={tmp / 'run2'}"))
    assert again["cache"] == "hit" and len(cache.entries()) == 2
    # a subset reuses that camera's entry
    wrist = run_train(compose(*args, "optim.epochs=1", "dataset.cameras=[wrist]", f"run_dir={tmp / 'run3'}"))
    assert wrist["cameras"] == [WRIST] and wrist["cache"] == "hit" and len(cache.entries()) == 2


def _images(root: Path, rows: list[int]) -> dict[str, torch.Tensor]:
    from pixio_robot.data.feature_cache import LeRobotFrames
    from pixio_robot.policies.demos import load_demos

    ds = load_demos(str(root)).dataset
    out = {}
    for key in (TOP, WRIST):
        frames = np.concatenate(list(LeRobotFrames(ds, key).iter_batches(64)))
        out[key] = torch.from_numpy(frames[rows])  # (B, H, W, 3)
    return out


def test_select_action_needs_every_trained_camera(trained, two_cam):
    from lerobot.utils.constants import OBS_IMAGE, OBS_STATE

    from pixio_robot.policies import load_policy
    from pixio_robot.policies.constants import OBS_FEATURES

    res, _, _ = trained
    policy = load_policy(res["policy_dir"])
    imgs = _images(two_cam, [0, 9])
    state = torch.zeros(2, STATE_DIM)
    policy.reset()
    act = policy.select_action({**imgs, OBS_STATE: state})
    assert act.shape == (2, ACTION_DIM) and torch.isfinite(act).all()
    # camera order matters: the same frames under swapped keys give other actions
    policy.reset()
    swapped = policy.select_action({TOP: imgs[WRIST], WRIST: imgs[TOP], OBS_STATE: state})
    assert not torch.allclose(act, swapped)
    # cached features [B,T,C,F] and raw images give the same joined representation
    with torch.no_grad():
        feats = torch.stack([policy.adapter.encode(imgs[k]) for k in (TOP, WRIST)], dim=1)[:, None]  # (B,1,C,F)
        from_cache = policy.frames_from_batch({OBS_FEATURES: feats})
        from_images = policy.frames_from_batch(imgs)
    assert from_images.shape == (2, 1, policy.embed_dim)
    torch.testing.assert_close(from_cache, from_images)
    for batch in ({TOP: imgs[TOP], OBS_STATE: state}, {OBS_IMAGE: imgs[TOP], OBS_STATE: state}):
        with pytest.raises(KeyError, match=r"trained on cameras \['observation.images.top', "
                                           r"'observation.images.wrist'\].*lacks.*wrist.*holds camera keys"):
            policy.select_action(batch)


def test_camera_choice_errors_are_clear(two_cam, tmp_path):
    from pixio_robot.policies.demos import load_demos

    assert load_demos(str(two_cam)).image_keys == [TOP, WRIST]
    assert load_demos(str(two_cam), cameras=["wrist", TOP]).image_keys == [WRIST, TOP]
    assert load_demos(str(two_cam), image_key=WRIST).image_keys == [WRIST]
    with pytest.raises(KeyError, match=r"'observation.images.side' not in dataset.*wrist"):
        load_demos(str(two_cam), cameras=["side"])
    with pytest.raises(ValueError, match="both name cameras"):
        load_demos(str(two_cam), image_key=TOP, cameras=[WRIST])


class TwoCamEnv(gym.Env):
    """Observations as a multi-camera env gives them: `pixels` + `pixels.<camera>` (+ `state`);
    `cameras=()` is a one-camera env."""

    metadata = {"render_modes": [], "render_fps": 10}

    def __init__(self, cameras=("top", "wrist"), size=16):
        views = {"pixels": gym.spaces.Box(0, 255, (size, size, 3), np.uint8)}
        views.update({f"pixels.{c}": gym.spaces.Box(0, 255, (size, size, 3), np.uint8) for c in cameras})
        self.observation_space = gym.spaces.Dict({**views, "state": gym.spaces.Box(-np.inf, np.inf, (STATE_DIM,),
                                                                                    np.float32)})
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)
        self.cameras, self.size = cameras, size

    def _obs(self):
        img = np.full((self.size, self.size, 3), 10 * self.t, np.uint8)
        views = {"pixels": img, **{f"pixels.{c}": img if i == 0 else 255 - img for i, c in enumerate(self.cameras)}}
        return {**views, "state": np.full(STATE_DIM, 0.1 * self.t, np.float32)}

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {"is_success": False}

    def step(self, action):
        self.t += 1
        return self._obs(), 0.0, False, self.t >= 4, {"is_success": False}


def test_evaluator_hands_the_policy_every_trained_camera(trained):
    from pixio_robot.evaluation import evaluate_policy
    from pixio_robot.evaluation.rollout import camera_options
    from pixio_robot.policies import load_policy

    policy = load_policy(trained[0]["policy_dir"])
    seen = []
    select = policy.select_action
    policy.select_action = lambda batch: (seen.append(sorted(k for k in batch if "image" in k)), select(batch))[1]
    res = evaluate_policy(policy, "test/two-cam", n_episodes=2, n_envs=2, env_fn=TwoCamEnv, progress=False)
    assert res.n_episodes == 2 and not any(r.error for r in res.episodes)
    assert seen and seen[0] == ["observation.image", TOP, WRIST]
    with pytest.raises(ValueError, match=r"trained on cameras \['observation.images.top', "
                                         r"'observation.images.wrist'\]; test/one-cam gives one camera"):
        evaluate_policy(policy, "test/one-cam", n_episodes=1, env_fn=lambda: TwoCamEnv(cameras=()), progress=False)
    # envs that take cameras=[...] (ALOHA) are asked for the trained ones; others are left alone
    assert camera_options(policy, "lerobot/aloha-transfer-cube", {"camera": None})["cameras"] == ["top", "wrist"]
    assert "cameras" not in camera_options(policy, "lerobot/pusht", {})
    assert camera_options(policy, "lerobot/aloha-insertion", {"cameras": ["angle"]})["cameras"] == ["angle"]


@pytest.mark.slow
def test_aloha_renders_the_asked_cameras():
    pytest.importorskip("gym_aloha")
    from pixio_robot.envs import make_env

    env = make_env("lerobot/aloha-transfer-cube", image_size=32, cameras=["top", "angle"])
    try:
        obs, _ = env.reset(seed=0)
        assert {"pixels", "pixels.top", "pixels.angle"} <= set(obs) <= set(env.observation_space.spaces)
        np.testing.assert_array_equal(obs["pixels"], obs["pixels.top"])  # the main camera is the first
        assert obs["pixels.angle"].shape == (32, 32, 3) and not np.array_equal(obs["pixels.top"], obs["pixels.angle"])
    finally:
        env.close()
