"""`python -m pixio_robot.train`: BC fits a tiny dataset, cache reuse, frozen vs fine-tuned
encoder, ACT head, periodic rollouts in a real MuJoCo env, the hydra CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_policies_data import make_dataset

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_git_lookup(monkeypatch):
    """prepare_run_dir's `git status` takes seconds on a busy shared checkout; not under test here."""
    monkeypatch.setattr("pixio_robot.utils.run.git_revision", lambda *a, **k: "test")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("train") / "tiny", n_episodes=4, length=10)


def compose(*overrides):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from omegaconf import OmegaConf

    from pixio_robot.train import register_configs

    register_configs()
    with initialize_config_module("pixio_robot.configs.train", version_base="1.3"):
        return OmegaConf.to_object(hydra_compose("config", overrides=list(overrides)))


def test_bc_drives_loss_near_zero_with_cache_reuse(dataset, tmp_path):
    from pixio_robot.policies import build_adapter, load_policy
    from pixio_robot.train import run_train

    args = [f"dataset.root={dataset}", "dataset.val_fraction=0.25", "optim.batch_size=16", "optim.epochs=120",
            f"cache_dir={tmp_path / 'cache'}", "progress=false", "tensorboard=false"]
    res = run_train(compose(*args, f"run_dir={tmp_path / 'run1'}"))
    first, last = res["history"][0]["train_loss"], res["final_train_loss"]
    assert res["cache"] == "miss" and res["features_cached"]
    assert last < 0.02 and last < first / 20, (first, last)
    assert res["n_train"] == 30 and res["n_val"] == 10 and res["final_val_loss"] is not None
    assert res["best_success"] is None and res["final_success"] is None  # no env named: no rollouts
    assert res["encoder_digest"] == build_adapter().encoder_digest()  # frozen: bit-identical encoder
    policy = load_policy(res["policy_dir"])
    assert policy.policy_type == "mlp" and policy.spec.stats["action"]["mean"]
    saved = json.loads((Path(res["run_dir"]) / "results.json").read_text())
    assert saved["final_train_loss"] == pytest.approx(last)
    again = run_train(compose(*args, "optim.epochs=1", f"run_dir={tmp_path / 'run2'}"))
    assert again["cache"] == "hit"


def test_finetune_trains_from_frames_and_changes_the_encoder(dataset, tmp_path):
    from pixio_robot.policies import build_adapter
    from pixio_robot.train import run_train

    res = run_train(compose(f"dataset.root={dataset}", "encoder.mode=last_k", "encoder.last_k=1",
                            "optim.epochs=2", "optim.batch_size=16", "optim.encoder_lr=1e-2",
                            f"cache_dir={tmp_path / 'cache'}", f"run_dir={tmp_path / 'run'}", "progress=false"))
    assert res["cache"] == "off" and not res["features_cached"]
    assert res["encoder_digest"] != build_adapter().encoder_digest()
    assert list((Path(res["run_dir"]) / "tb").glob("events.out.tfevents.*"))


def _reacher_dataset(root: Path, n_episodes=2, length=12) -> Path:
    """Demonstrations recorded from the real env (random actions) in LeRobot format."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from pixio_robot.envs import make_env

    env = make_env("gym/Reacher-v5", image_size=32, seed=0)
    s_dim, a_dim = env.observation_space["state"].shape[0], env.action_space.shape[0]
    feats = {"observation.image": {"dtype": "video", "shape": (32, 32, 3), "names": ["height", "width", "channels"]},
             "observation.state": {"dtype": "float32", "shape": (s_dim,), "names": None},
             "action": {"dtype": "float32", "shape": (a_dim,), "names": None}}
    ds = LeRobotDataset.create("local/reacher", fps=20, features=feats, root=root, use_videos=True)
    rng = np.random.default_rng(0)
    for ep in range(n_episodes):
        obs, _ = env.reset(seed=ep)
        for _ in range(length):
            action = rng.uniform(-1, 1, a_dim).astype(np.float32)
            ds.add_frame({"observation.image": obs["pixels"], "observation.state": obs["state"],
                          "action": action, "task": "reach"})
            obs, *_ = env.step(action)
        ds.save_episode()
    ds.finalize()
    env.close()
    return root


def test_periodic_rollouts_record_best_and_final_success(tmp_path):
    from pixio_robot.data.lerobot_io import write_collect_info
    from pixio_robot.policies import load_policy
    from pixio_robot.train import run_train

    root = _reacher_dataset(tmp_path / "reacher")
    write_collect_info(root, {"env": "gym/Reacher-v5", "camera": None})  # as pixio_robot.collect records it
    res = run_train(compose(f"dataset.root={root}", "optim.epochs=4", "optim.batch_size=8",
                            "eval.every_epochs=2", "eval.n_episodes=2",
                            "eval.n_envs=2", "eval.max_episode_steps=8", f"cache_dir={tmp_path / 'cache'}",
                            "eval.n_videos=1", f"run_dir={tmp_path / 'run'}", "progress=false"))
    evals = [h for h in res["history"] if "success" in h]
    # eval.n_videos: the final evaluation's first episode as an mp4 (the reset frame + one per step)
    import av

    (video,) = res["final_videos"]
    assert Path(video) == tmp_path / "run" / "videos" / "episode_0000.mp4"
    with av.open(video) as f:
        n_frames = sum(1 for _ in f.decode(video=0))
    assert n_frames == 1 + 8  # Reacher never terminates: every episode runs to eval.max_episode_steps
    assert [h["epoch"] for h in evals] == [2, 4]
    assert 0.0 <= res["best_success"] <= 1.0 and 0.0 <= res["final_success"] <= 1.0
    # best = the max over the periodic rollouts (first epoch on ties), final = the last one
    assert res["best_success"] == max(h["success"] for h in evals) and res["final_success"] == evals[-1]["success"]
    assert res["best_epoch"] == next(h["epoch"] for h in evals if h["success"] == res["best_success"])
    best = load_policy(res["best_policy_dir"])
    assert best.spec.env_name == "gym/Reacher-v5" and best.spec.image_size == 32


def _with_policy(policy, tmp_path):
    cfg = compose(f"run_dir={tmp_path / 'retired'}", "progress=false")
    cfg.policy = policy
    return cfg


def test_config_errors_are_clear(dataset, tmp_path):
    from hydra.errors import ConfigCompositionException

    from pixio_robot.train import run_train

    with pytest.raises(ConfigCompositionException):
        compose("optim.lrr=1")
    with pytest.raises(ConfigCompositionException):  # policy groups are typed too
        compose("policy=pixio_act", "policy.hidden_sizes=[8]")
    from pixio_robot.policies import MLPConfig
    from pixio_robot.policies.lerobot.training import LeRobotPolicyChoice

    assert [type(compose(f"policy={p}").policy) for p in ("mlp", "pixio_act", "pixio_diffusion")] == \
        [MLPConfig, LeRobotPolicyChoice, LeRobotPolicyChoice]
    with pytest.raises(ValueError, match="policy=act .* is retired: use policy=pixio_act"):
        run_train(_with_policy({"type": "act"}, tmp_path))
    with pytest.raises(ValueError, match="dataset.root"):
        run_train(compose(f"run_dir={tmp_path / 'r'}", "progress=false"))
    with pytest.raises(Exception, match="encoder.embedding='cls'"):
        compose("encoder.embedding=cls")
    # the rollout env is checked before any training: a typo, or an env the demos do not fit
    with pytest.raises(ValueError, match="Unknown env|unknown env"):
        run_train(compose(f"dataset.root={dataset}", "eval.env=gym/Reachr-v5", f"run_dir={tmp_path / 'typo'}",
                          "progress=false", f"cache_dir={tmp_path / 'cache'}"))
    with pytest.raises(ValueError, match=r"policy and env do not fit: the policy reads 4-d states, gym/Reacher-v5 "
                                         r"gives 10-d"):
        run_train(compose(f"dataset.root={dataset}", "eval.env=gym/Reacher-v5", f"run_dir={tmp_path / 'dims'}",
                          "progress=false", f"cache_dir={tmp_path / 'cache'}"))
    assert not (tmp_path / "dims" / "tb").exists()  # failed before training began


@pytest.mark.slow
def test_cli_runs(dataset, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "pixio_robot.train", f"dataset.root={dataset}", "optim.epochs=2",
                          "optim.batch_size=16", f"cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}",
                          "progress=false"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "run" / "policy" / "model.safetensors").exists()
    assert (tmp_path / "run" / "config.yaml").exists() and (tmp_path / "run" / "results.json").exists()


def test_train_records_and_logs_the_dataset_keys(tmp_path, caplog, monkeypatch):
    import logging

    from pixio_robot.policies import load_policy
    from pixio_robot.train import run_train

    root = make_dataset(tmp_path / "alt", n_episodes=2, length=3, size=16, video=False, state_dim=3,
                        cameras=("observation.images.top", "observation.images.wrist"),
                        state_key="observation.joint_pos")
    monkeypatch.setattr(logging.getLogger("pixio_robot"), "propagate", True)
    caplog.set_level(logging.INFO)
    res = run_train(compose(f"dataset.root={root}", "dataset.state_key=observation.joint_pos", "optim.epochs=1",
                            "optim.batch_size=4", f"cache_dir={tmp_path / 'cache'}", f"run_dir={tmp_path / 'run'}",
                            "progress=false", "tensorboard=false"))
    line = [r.getMessage() for r in caplog.records if r.getMessage().startswith("dataset ")]
    cams = "['observation.images.top', 'observation.images.wrist']"
    assert line and set(line) == {f"dataset {root}: cameras {cams} (of {cams}), state observation.joint_pos (3-d), "
                                  "action action (2-d), 2 episodes, 6 frames, fps 10"}  # (pytest may see a record twice)
    spec = load_policy(res["policy_dir"]).spec
    assert (spec.image_key, spec.image_keys, spec.state_key, spec.action_key, spec.state_dim) == \
        ("observation.images.top", ["observation.images.top", "observation.images.wrist"], "observation.joint_pos",
         "action", 3)  # every camera by default
    assert spec.dataset == str(root)
    with pytest.raises(ValueError, match=r"dataset.state_key='observation.state' is not a feature.*joint_pos"):
        run_train(compose(f"dataset.root={root}", "dataset.state_key=observation.state", "progress=false",
                          f"run_dir={tmp_path / 'bad'}", f"cache_dir={tmp_path / 'cache'}"))


def test_eval_env_mismatch_names_the_training_dataset(dataset, tmp_path):
    import traceback

    from pixio_robot.train import run_train

    with pytest.raises(ValueError) as info:
        run_train(compose(f"dataset.root={dataset}", "eval.env=gym/Reacher-v5", f"run_dir={tmp_path / 'r'}",
                          "progress=false", f"cache_dir={tmp_path / 'cache'}"))
    msg = str(info.value)
    assert "trained on gym/Reacher-v5" not in msg  # the eval env is not what it was trained on
    assert f"trained on the demos of dataset {dataset}" in msg and "eval.env=gym/Reacher-v5 does not fit" in msg
    where = traceback.extract_tb(info.value.__traceback__)[-1]  # what user_errors reports as the location
    assert Path(where.filename).name == "loop.py" and where.name == "_check_eval_env"
    # evaluating a saved policy on an env that does not fit names its dataset, not the env it is checked against
    from types import SimpleNamespace

    from gymnasium import spaces

    from pixio_robot.evaluation.rollout import check_fits

    spec = SimpleNamespace(action_dim=7, state_dim=0, env_name="lerobot/pusht", dataset="/data/my_robot")
    with pytest.raises(ValueError, match=r"takes 2-d \(it was trained on the demos of dataset /data/my_robot\)"):
        check_fits(SimpleNamespace(spec=spec), "lerobot/pusht", spaces.Dict({}), spaces.Box(-1, 1, (2,)))
