"""Experts: MetaWorld scripted policies succeed; SB3 .zip agents load and act as saved."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from pixio_robot.envs import make_env
from pixio_robot.envs.experts import SB3Expert, make_expert, sb3_algo_of
from pixio_robot.evaluation.experts import measure_expert

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.mark.parametrize("task", ["drawer-open-v3", "button-press-topdown-v3"])
def test_metaworld_scripted_expert_succeeds(task):
    r = measure_expert(f"metaworld/{task}", 3, seed=0)
    assert r["successes"] == 3 and r["mean_steps_to_success"] < 200


def test_expert_noise_changes_actions_and_needs_full_state():
    env = make_env("metaworld/hammer-v3", pixels=False)
    obs, info = env.reset(seed=0)
    plain, noisy = make_expert("metaworld/hammer-v3"), make_expert("metaworld/hammer-v3", noise=0.2, seed=0)
    a, b = plain.act(obs, info), noisy.act(obs, info)
    assert a.shape == (4,) and a.dtype == np.float32 and np.abs(b).max() <= 1.0
    assert not np.allclose(a, b)
    with pytest.raises(ValueError, match="39-dim"):
        plain.act(obs, {})
    env.close()


def test_aloha_transfer_cube_scripted_expert_hands_the_cube_over():
    r = measure_expert("lerobot/aloha-transfer-cube", 2, seed=0)
    assert r["successes"] == 2 and 150 < r["mean_steps_to_success"] < 400  # left gripper reaches it at ~210
    with pytest.raises(ValueError, match="full_state"):
        make_expert("lerobot/aloha-transfer-cube").act({}, {})


def test_no_scripted_expert_says_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="pixio_robot.rl"):
        make_expert("dmc/walker-walk")
    with pytest.raises(ValueError, match="Scripted experts"):
        make_expert("lerobot/aloha-insertion")
    with pytest.raises(FileNotFoundError, match="pixio_robot.rl"):
        make_expert("dmc/walker-walk", path=tmp_path / "missing.zip")
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a stable-baselines3"):
        sb3_algo_of(tmp_path / "bad.zip")


@pytest.mark.parametrize("algo", ["SAC", "PPO"])
def test_sb3_zip_expert_round_trip(tmp_path, algo):
    import stable_baselines3 as sb3
    import torch

    torch.set_num_threads(1)
    env = make_env("gym/Reacher-v5", pixels=False, seed=0)  # Dict({"state"}) observation
    if algo == "PPO":  # a plain Box-observation agent too
        env = gym.wrappers.FlattenObservation(env)
        model = sb3.PPO("MlpPolicy", env, n_steps=32, batch_size=16, n_epochs=1, seed=0, device="cpu")
    else:
        model = sb3.SAC("MultiInputPolicy", env, learning_starts=8, batch_size=8, buffer_size=100, seed=0,
                        device="cpu")
    model.learn(48)
    model.save(tmp_path / "agent.zip")
    assert sb3_algo_of(tmp_path / "agent.zip") == algo
    expert = make_expert("gym/Reacher-v5", path=tmp_path / "agent.zip")
    assert isinstance(expert, SB3Expert) and expert.algo == algo
    raw = make_env("gym/Reacher-v5", pixels=False)
    obs, info = raw.reset(seed=3)
    expected, _ = model.predict(obs["state"] if algo == "PPO" else obs, deterministic=True)
    np.testing.assert_allclose(expert.act(obs, info), expected, rtol=1e-6)
    r = measure_expert("gym/Reacher-v5", 2, expert=expert, max_episode_steps=5)
    assert r["episodes"] == 2 and np.isfinite(r["mean_return"])
    raw.close()
    if algo == "PPO":  # an agent whose run recorded pixel observations is refused as an expert
        (tmp_path / "agent.json").write_text('{"format": "pixio_robot.rl_agent", "obs": "pixels"}')
        with pytest.raises(ValueError, match="trained on obs=pixels: an expert acts on the env's state"):
            make_expert("gym/Reacher-v5", path=tmp_path / "agent.zip")


def test_measure_expert_matches_a_hand_loop_for_any_n_envs():
    """The one rollout loop counts an expert's success as a plain gymnasium loop does (seeds
    seed+episode, stop at the first is_success), for one env and for two in lockstep."""
    name, n, seed = "metaworld/drawer-open-v3", 2, 7
    env, expert, steps = make_env(name, pixels=False), make_expert(name), []
    for ep in range(n):
        obs, info = env.reset(seed=seed + ep)
        expert.reset()
        for t in range(1, 501):  # noqa: B007 - t is read after the loop
            obs, _, term, trunc, info = env.step(expert.act(obs, info))
            if info["is_success"] or term or trunc:
                break
        steps.append(t if info["is_success"] else None)
    env.close()
    for k in (1, 2):
        r = measure_expert(name, n, seed=seed, n_envs=k)
        assert r["successes"] == sum(s is not None for s in steps)
        done = [s for s in steps if s is not None]
        assert r["max_steps_to_success"] == max(done) and r["mean_steps_to_success"] == pytest.approx(np.mean(done)), (k, r)
        lo, hi = r["success_ci"]
        assert 0 <= lo <= r["success_rate"] <= hi <= 1
    with pytest.raises(ValueError, match="n_envs=1"):
        measure_expert(name, 2, expert=expert, n_envs=2)
