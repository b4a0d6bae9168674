"""`python -m pixio_robot.evaluate policy=<LeRobot dir>`: LeRobot's own policies (built-in `act`, the
plugin's `pixio_act`) through the project's evaluator, checked against LeRobot's own per-step
pipeline (preprocess_observation -> preprocessor -> select_action -> postprocessor)."""

import csv
import dataclasses
import json
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
from lerobot.envs.utils import preprocess_observation
from lerobot.policies.act.configuration_act import ACTConfig
from lerobot.policies.act.modeling_act import ACTPolicy
from lerobot.policies.factory import get_policy_class, make_pre_post_processors
from lerobot_policy_pixio import PixioACTConfig
from test_lerobot_plugin import (
    CAMS,
    TINY_ACT,
    TRAIN_ACT,
    TRAIN_COMMON,
    _features,
    _run,
    _stats,
    _write_dataset,
)

from pixio_robot.envs import make_env
from pixio_robot.evaluate import EvaluateConfig, run_evaluate
from pixio_robot.evaluation import evaluate_policy
from pixio_robot.evaluation.lerobot_policy import LeRobotPolicy, lerobot_env_name, lerobot_policy_type

IMG = "observation.image"
PUSHT = "lerobot/pusht"


def _save(policy, stats, path):
    """What lerobot-train writes into pretrained_model: the policy and its two processors."""
    pre, post = make_pre_post_processors(policy.config, dataset_stats=stats)
    policy.save_pretrained(path)
    pre.save_pretrained(path)
    post.save_pretrained(path)
    return path


def _tiny(kind, path, cams=(IMG,), state=2):
    torch.manual_seed(0)
    inp, out = _features(cams, side=96, state=state)
    if kind == "act":  # LeRobot's built-in ACT (ResNet-18, random init: nothing downloads)
        policy = ACTPolicy(ACTConfig(input_features=inp, output_features=out, pretrained_backbone_weights=None,
                                     **TINY_ACT))
        stats = _stats(cams, state=state)  # ImageNet stats for the images, as lerobot-train sets them
    else:
        policy = get_policy_class(kind)(PixioACTConfig(input_features=inp, output_features=out, **TINY_ACT))
        stats = _stats(cams, state=state, imagenet=False)
    for k in ("action", "observation.state"):  # PushT-scale actions / states (pixels of the 512 board)
        stats[k] = {"mean": torch.full_like(stats[k]["mean"], 256.0), "std": torch.full_like(stats[k]["std"], 100.0),
                    "min": torch.zeros_like(stats[k]["min"]), "max": torch.full_like(stats[k]["max"], 512.0)}
    return _save(policy, stats, path)


@pytest.fixture(scope="module", params=["act", "pixio_act"])
def saved(request, tmp_path_factory):
    return _tiny(request.param, tmp_path_factory.mktemp(request.param) / "pretrained_model")


class _Recording(gym.Wrapper):
    """Keeps every reset observation and every action the evaluator sends."""

    def __init__(self, env, log):
        super().__init__(env)
        self.log = log

    def reset(self, **kw):
        obs, info = self.env.reset(**kw)
        self.episode = {"obs": obs, "actions": []}
        self.log.append(self.episode)
        return obs, info

    def step(self, action):
        self.episode["actions"].append(np.array(action))
        return self.env.step(action)


def test_first_actions_equal_lerobots_own_pipeline(saved):
    log = []
    policy = LeRobotPolicy.load(saved)
    result = evaluate_policy(policy, PUSHT, n_episodes=2, n_envs=2, seed=7, max_episode_steps=5, progress=False,
                             env_fn=lambda: _Recording(make_env(PUSHT, image_size=96), log), clip_actions=False)
    assert result.n_episodes == 2 and [r.length for r in result.episodes] == [5, 5]
    assert len(log) == 2 and log[0]["obs"]["pixels"].shape == (96, 96, 3)
    assert not np.array_equal(log[0]["obs"]["state"], log[1]["obs"]["state"])  # two seeds, two boards

    # LeRobot's own path, from an independent load of the same directory
    kind = json.loads((saved / "config.json").read_text())["type"]
    ref = get_policy_class(kind).from_pretrained(saved)
    pre, post = make_pre_post_processors(ref.config, pretrained_path=str(saved))
    obs = preprocess_observation({"pixels": np.stack([e["obs"]["pixels"] for e in log]),
                                  "agent_pos": np.stack([e["obs"]["state"] for e in log])})
    obs["task"] = ["Push the T-shaped block onto the T-shaped target."] * 2
    ref.reset()
    with torch.inference_mode():
        want = post(ref.select_action(pre(obs))).numpy()
    got = np.stack([e["actions"][0] for e in log])
    assert want.shape == (2, 2) and np.abs(want).max() > 1  # real board coordinates, not normalised ones
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    assert not np.allclose(got[0], got[1])  # each row acts on its own observation


def test_evaluate_entry_runs_a_lerobot_dir(saved, tmp_path):
    cfg = EvaluateConfig(policy=str(saved), env=PUSHT, n_episodes=2, n_envs=2, max_episode_steps=10, n_videos=1,
                         vector_mode="serial", progress=False, run_dir=str(tmp_path / "eval"))
    summary = run_evaluate(cfg)
    on_disk = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert on_disk["n_episodes"] == summary["n_episodes"] == 2
    assert on_disk["lerobot_policy_type"] == lerobot_policy_type(saved) and on_disk["image_size"] == [96, 96]
    with open(tmp_path / "eval" / "episodes.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["episode"], r["length"]) for r in rows] == [("0", "10"), ("1", "10")]
    assert (tmp_path / "eval" / "videos" / "episode_0000.mp4").stat().st_size > 0

    # the run dir is guarded like every entry's: the same settings return the saved result untouched,
    # other settings are refused naming the difference, resume=false moves the first run aside
    from faults.conftest import snapshot

    from pixio_robot.evaluate.loop import EVALUATE_ARTIFACTS

    before = snapshot(tmp_path / "eval")
    assert run_evaluate(dataclasses.replace(cfg, n_envs=1))["n_episodes"] == 2  # n_envs: a run-time knob
    assert snapshot(tmp_path / "eval") == before
    with pytest.raises(ValueError, match=r"other settings: n_episodes: 2 -> 1.*resume=false"):
        run_evaluate(dataclasses.replace(cfg, n_episodes=1))
    assert snapshot(tmp_path / "eval") == before
    assert run_evaluate(dataclasses.replace(cfg, n_episodes=1, resume=False))["n_episodes"] == 1
    (aside,) = (tmp_path / "eval" / "previous").iterdir()
    assert {k: v[0] for k, v in snapshot(aside).items()} == {
        k: v[0] for k, v in before.items() if k.split("/")[0] in EVALUATE_ARTIFACTS}


@pytest.mark.parametrize("cams, state, msg", [
    (CAMS, 2, r"cameras \['observation.images.wrist'\] are missing"),
    ((IMG,), 3, "observation.state is 3-d in the policy, 2-d in the env"),
])
def test_what_the_env_cannot_give_is_one_clear_error(cams, state, msg, tmp_path):
    saved = _tiny("pixio_act", tmp_path / "p", cams=cams, state=state)
    cfg = EvaluateConfig(policy=str(saved), env=PUSHT, n_episodes=1, n_envs=1, max_episode_steps=2, n_videos=0,
                         vector_mode="serial", progress=False, run_dir=str(tmp_path / "eval"))
    with pytest.raises(ValueError, match=msg) as err:
        run_evaluate(cfg)
    text = str(err.value)
    assert "\n" not in text and "does not fit lerobot/pusht" in text and "observation.state" in text


def test_lerobot_dirs_are_told_apart(tmp_path):
    (tmp_path / "ours").mkdir()
    (tmp_path / "ours" / "config.json").write_text(json.dumps({"format": "pixio_robot.policy", "type": "x"}))
    (tmp_path / "lr").mkdir()
    (tmp_path / "lr" / "config.json").write_text(json.dumps({"type": "act"}))
    (tmp_path / "lr" / "train_config.json").write_text(json.dumps({"env": {"type": "pusht", "task": "PushT-v0"}}))
    assert lerobot_policy_type(tmp_path / "ours") is None and lerobot_policy_type(tmp_path / "lr") == "act"
    assert lerobot_env_name(tmp_path / "lr") == PUSHT and lerobot_env_name(tmp_path / "ours") is None
    (tmp_path / "lr" / "config.json").write_text(json.dumps({"type": "not_a_policy"}))
    with pytest.raises(ValueError, match="'not_a_policy', which is not installed; known types: act, "):
        LeRobotPolicy.load(tmp_path / "lr")


@pytest.mark.slow
def test_lerobot_train_output_through_the_evaluate_cli(tmp_path):
    root = _write_dataset(tmp_path / "ds", (IMG,))
    out = tmp_path / "train"
    _run([sys.executable, "-m", "lerobot.scripts.lerobot_train", *TRAIN_ACT, *TRAIN_COMMON,
          f"--dataset.root={root}", f"--output_dir={out}"], tmp_path)
    saved = out / "checkpoints" / "last" / "pretrained_model"
    assert lerobot_policy_type(saved) == "pixio_act"
    ev = tmp_path / "eval"
    _run([sys.executable, "-m", "pixio_robot.evaluate", f"policy={saved}", f"env={PUSHT}", "n_episodes=2",
          "n_envs=2", "max_episode_steps=10", "n_videos=0", "progress=false", f"run_dir={ev}"], tmp_path)
    summary = json.loads((ev / "summary.json").read_text())
    assert summary["n_episodes"] == 2 and summary["lerobot_policy_type"] == "pixio_act"
    assert 0 <= summary["success_rate"] <= 1 and len(summary["success_ci"]) == 2
    r = subprocess.run([sys.executable, "-m", "pixio_robot.evaluate", f"policy={saved}", "env=gym/Reacher-v5",
                        "n_episodes=1", "n_envs=1", "vector_mode=serial", f"run_dir={tmp_path / 'bad'}"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "does not fit gym/Reacher-v5" in err[0] and "observation.state" in err[0], r.stderr


ALOHA = "lerobot/aloha-transfer-cube"


@pytest.mark.slow
def test_a_two_camera_policy_is_evaluated_with_every_camera(tmp_path):
    """ALOHA-style cameras `observation.images.<cam>`: the env renders each (cameras=[...]), and the
    first actions equal LeRobot's own pipeline fed the same two views (lerobot-eval's dict of pixels)."""
    pytest.importorskip("gym_aloha")
    from lerobot.envs.utils import preprocess_observation

    cams = ("observation.images.top", "observation.images.angle")
    torch.manual_seed(0)
    inp, out = _features(cams, side=48, state=14, action=14)
    policy = get_policy_class("pixio_act")(PixioACTConfig(input_features=inp, output_features=out, **TINY_ACT))
    saved = _save(policy, _stats(cams, state=14, action=14, imagenet=False), tmp_path / "pretrained_model")
    lp = LeRobotPolicy.load(saved)
    assert lp.cameras == ["top", "angle"] and lp.env_defaults(ALOHA) == {"image_size": (48, 48), "camera": "top"}
    log = []
    result = evaluate_policy(lp, ALOHA, n_episodes=1, n_envs=1, seed=3, image_size=48, camera="top",
                             max_episode_steps=2, progress=False, clip_actions=False,
                             env_fn=lambda: _Recording(make_env(ALOHA, image_size=48, cameras=["top", "angle"]), log))
    assert result.n_episodes == 1 and result.n_errors == 0 and result.episodes[0].length == 2
    obs = log[0]["obs"]
    assert not np.array_equal(obs["pixels.top"], obs["pixels.angle"])  # two real views
    ref = get_policy_class("pixio_act").from_pretrained(saved)
    pre, post = make_pre_post_processors(ref.config, pretrained_path=str(saved))
    batch = preprocess_observation({"pixels": {"top": obs["pixels.top"][None], "angle": obs["pixels.angle"][None]},
                                    "agent_pos": obs["state"][None]})
    batch["task"] = [""] * 1
    ref.reset()
    with torch.inference_mode():
        want = post(ref.select_action(pre(batch))).numpy()
    np.testing.assert_allclose(log[0]["actions"][0], want[0], rtol=1e-5, atol=1e-5)
    # the evaluate entry builds the env with both cameras by itself
    s = run_evaluate(EvaluateConfig(policy=str(saved), env=ALOHA, n_episodes=1, n_envs=1, max_episode_steps=2,
                                    n_videos=0, vector_mode="serial", progress=False, run_dir=str(tmp_path / "ev")))
    assert s["n_episodes"] == 1 and s["n_errors"] == 0
    # an env with one view is refused before any episode, naming the camera it lacks
    with pytest.raises(ValueError, match=r"cameras \['observation.images.angle'\] are missing"):
        evaluate_policy(lp, ALOHA, n_episodes=1, image_size=48, max_episode_steps=2, progress=False,
                        env_fn=lambda: make_env(ALOHA, image_size=48, cameras=["top"]))
