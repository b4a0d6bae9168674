"""`python -m pixio_robot.rl`: PPO and SAC with the Pixio extractor on a real MuJoCo pixel env,
the state-only expert path the envs' SB3 expert loader reads, config composition."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _no_git_lookup(monkeypatch):
    monkeypatch.setattr("pixio_robot.utils.run.git_revision", lambda *a, **k: "test")


def _cfg(tmp_path, algo, **kw):
    from pixio_robot.policies import AdapterConfig
    from pixio_robot.rl import RLConfig

    algo_kwargs = {"ppo": {"n_steps": 64, "batch_size": 64, "n_epochs": 2},
                   "sac": {"learning_starts": 64, "buffer_size": 500, "batch_size": 16}}[algo]
    base = dict(algo=algo, env_name="gym/Reacher-v5", n_envs=2 if algo == "ppo" else 1, total_timesteps=256,
                image_size=32, max_episode_steps=32, algo_kwargs=algo_kwargs, eval_every=128, eval_episodes=2,
                checkpoint_every=128, run_dir=str(tmp_path / algo), progress=False, device="cpu",
                encoder=AdapterConfig(image_size=32))
    base.update(kw)
    return RLConfig(**base)


@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_pixel_agent_trains_with_frozen_extractor(tmp_path, algo):
    from pixio_robot.policies import AdapterConfig
    from pixio_robot.policies.sb3_extractor import PixioFeaturesExtractor
    from pixio_robot.rl import load_agent, run_rl

    cfg = _cfg(tmp_path, algo)
    res = run_rl(cfg)
    assert res["timesteps"] >= 256
    assert res["encoder_digest_before"] == res["encoder_digest_after"]  # frozen: bit-identical
    from pixio_robot.policies.encoder_adapter import EncoderAdapter

    # ... and they are the weights the config names (PPO's orthogonal init used to redraw them)
    assert res["encoder_digest_before"] == EncoderAdapter(AdapterConfig(image_size=32)).encoder_digest()
    assert [e["timesteps"] for e in res["evaluations"]] == [128, 256]
    assert res["final"]["n_episodes"] == 2 and np.isfinite(res["final"]["mean_return"])
    run = Path(res["run_dir"])
    meta = json.loads((run / "agent.json").read_text())
    assert meta["algo"] == algo and meta["encoder"]["digest"] == res["encoder_digest_before"]
    assert (run / "best" / "best_model.zip").exists() and list((run / "checkpoints").glob("*.zip"))
    model = load_agent(run)
    ext = model.policy.features_extractor if algo == "ppo" else model.policy.actor.features_extractor
    assert isinstance(ext, PixioFeaturesExtractor)
    assert ext.adapter.encoder_digest() == res["encoder_digest_before"]
    if algo == "sac":  # a frozen encoder is shared by actor and critic: one encoder pass per step
        assert model.policy.critic.features_extractor is ext
    model.observation_space.seed(0)
    obs = model.observation_space.sample()
    a1, _ = model.predict(obs, deterministic=True)
    a2, _ = load_agent(run / "model.zip").predict(obs, deterministic=True)  # save -> load: same actions
    np.testing.assert_array_equal(a1, a2)
    from pixio_robot.rl import evaluate_agent, make_vec  # the final numbers, reproduced from the saved agent

    env = model._wrap_env(make_vec(cfg, 1, cfg.seed + 10_000), verbose=0)
    again = evaluate_agent(model, env, cfg.eval_episodes, seed=cfg.seed + 10_000)
    env.close()
    assert again == pytest.approx(res["final"])


def test_extractor_batches_the_vectorised_envs():
    import gymnasium as gym

    from pixio_robot.policies.sb3_extractor import PixioFeaturesExtractor

    space = gym.spaces.Dict({"pixels": gym.spaces.Box(0, 255, (3, 32, 32), np.uint8),
                             "state": gym.spaces.Box(-1, 1, (5,), np.float32)})
    ext = PixioFeaturesExtractor(space, encoder={"image_size": 32})
    calls = []
    orig = ext.adapter.encode
    ext.adapter.encode = lambda x: (calls.append(x.shape[0]), orig(x))[1]
    out = ext({"pixels": torch.rand(6, 3, 32, 32), "state": torch.zeros(6, 5)})
    assert out.shape == (6, ext.features_dim) == (6, 32 + 5)
    assert calls == [6]  # one encoder call for the whole batch
    stacked = gym.spaces.Dict({"pixels": gym.spaces.Box(0, 255, (2, 32, 32, 3), np.uint8)})
    ext2 = PixioFeaturesExtractor(stacked, encoder={"image_size": 32})
    assert ext2({"pixels": torch.rand(3, 2, 32, 32, 3) * 255}).shape == (3, 64)
    with pytest.raises(ValueError, match="obs=state"):
        PixioFeaturesExtractor(gym.spaces.Box(-1, 1, (3,)), encoder={})


def test_state_sac_expert_loads_in_the_envs_expert_loader(tmp_path):
    from pixio_robot.envs import make_env
    from pixio_robot.envs.experts import make_expert
    from pixio_robot.rl import run_rl

    cfg = _cfg(tmp_path, "sac", obs="state", total_timesteps=200, eval_every=0, checkpoint_every=0,
               save_path=str(tmp_path / "experts" / "reacher.zip"), net_arch=[32, 32])
    res = run_rl(cfg)
    assert res["encoder_digest_before"] is None and Path(res["saved_to"]).exists()
    expert = make_expert("gym/Reacher-v5", path=res["saved_to"])
    env = make_env("gym/Reacher-v5", pixels=False, seed=0)
    obs, info = env.reset(seed=0)
    action = expert.act(obs, info)
    assert action.shape == env.action_space.shape and np.isfinite(action).all()
    env.close()


def test_rl_configs_compose():
    from hydra import compose, initialize_config_module
    from hydra.errors import ConfigCompositionException
    from omegaconf import OmegaConf

    from pixio_robot.rl import RLConfig, register_configs

    register_configs()
    with initialize_config_module("pixio_robot.configs.rl", version_base="1.3"):
        base = OmegaConf.to_object(compose("config"))
        assert isinstance(base, RLConfig) and base.algo == "ppo" and base.encoder.mode == "frozen"
        expert = OmegaConf.to_object(compose("config", overrides=["experiment=dmc_expert"]))
        assert (expert.algo, expert.obs, expert.env_name) == ("sac", "state", "dmc/walker-walk")
        assert OmegaConf.to_object(compose("config", overrides=["experiment=pixel_ppo"])).algo_kwargs["n_steps"] == 256
        with pytest.raises(ConfigCompositionException):
            compose("config", overrides=["algoo=sac"])
    with pytest.raises(ValueError, match="algo='a2c'"):
        RLConfig(algo="a2c")


def test_finetuned_extractor_trains_the_encoder(tmp_path):
    from pixio_robot.policies import AdapterConfig
    from pixio_robot.rl import run_rl

    res = run_rl(_cfg(tmp_path, "ppo", total_timesteps=128, eval_every=0, checkpoint_every=0, eval_episodes=1,
                      encoder=AdapterConfig(image_size=32, mode="last_k", last_k=1)))
    assert res["encoder_digest_before"] != res["encoder_digest_after"]
