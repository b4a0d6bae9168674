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
    base = dict(algo=algo, env="gym/Reacher-v5", n_envs=2 if algo == "ppo" else 1, total_timesteps=256,
                image_size=32, max_episode_steps=32, algo_kwargs=algo_kwargs, eval_every=128, n_episodes=2,
                ckpt_every=128, run_dir=str(tmp_path / algo), progress=False, device="cpu",
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
    from pixio_robot.rl import evaluate_agent  # the final numbers, reproduced from the saved agent

    again = evaluate_agent(model, cfg, cfg.n_episodes)
    assert again == res["final"]  # same seeds, same deterministic agent: the same episodes


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

    cfg = _cfg(tmp_path, "sac", obs="state", total_timesteps=200, eval_every=0, ckpt_every=0,
               export_path=str(tmp_path / "experts" / "reacher.zip"), net_arch=[32, 32])
    res = run_rl(cfg)
    assert res["encoder_digest_before"] is None and Path(res["exported_to"]).exists()
    expert = make_expert("gym/Reacher-v5", path=res["exported_to"])
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
        assert (expert.algo, expert.obs, expert.env) == ("sac", "state", "dmc/walker-walk")
        assert OmegaConf.to_object(compose("config", overrides=["experiment=pixel_ppo"])).algo_kwargs["n_steps"] == 256
        with pytest.raises(ConfigCompositionException):
            compose("config", overrides=["algoo=sac"])
    with pytest.raises(ValueError, match="algo='a2c'"):
        RLConfig(algo="a2c")


def test_finetuned_extractor_trains_the_encoder(tmp_path):
    from pixio_robot.policies import AdapterConfig
    from pixio_robot.rl import run_rl

    res = run_rl(_cfg(tmp_path, "ppo", total_timesteps=128, eval_every=0, ckpt_every=0, n_episodes=1,
                      encoder=AdapterConfig(image_size=32, mode="last_k", last_k=1)))
    assert res["encoder_digest_before"] != res["encoder_digest_after"]


@pytest.fixture
def rl_log(caplog):
    """The project logger does not propagate to the root logger: hand caplog's handler to it."""
    import logging

    root = logging.getLogger("pixio_robot")
    root.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="pixio_robot")
    yield caplog
    root.removeHandler(caplog.handler)


def _built(tmp_path, algo="ppo", **kw):
    from pixio_robot.rl import build_agent, make_vec

    cfg = _cfg(tmp_path, algo, n_envs=1, **kw)
    env = make_vec(cfg, 1, 0)
    return cfg, env, build_agent(cfg, env, torch.device("cpu"))


def test_pixel_obs_modes_say_what_the_agent_sees(tmp_path):
    """obs=pixels is pixels only (the env's state vector, e.g. Reacher's target position, is dropped);
    obs=pixels_state adds it; user features_extractor_kwargs are merged, not overwritten."""
    from pixio_robot.rl import describe_observation

    cfg, env, model = _built(tmp_path)
    ext = model.policy.features_extractor
    assert set(model.observation_space.spaces) == {"pixels"} and ext.state_key is None
    assert ext.features_dim == ext.adapter.out_dim == 32
    assert "no state vector" in describe_observation(cfg, model)["text"]
    env.close()
    cfg, env, model = _built(tmp_path, obs="pixels_state")
    ext = model.policy.features_extractor
    state_dim = model.observation_space["state"].shape[0]
    assert ext.state_key == "state" and ext.features_dim == 32 + state_dim
    assert describe_observation(cfg, model)["state_dim"] == state_dim
    env.close()
    kw = {"n_steps": 64, "policy_kwargs": {"features_extractor_kwargs": {"encoder": {"embedding": "all_cls"}}}}
    cfg, env, model = _built(tmp_path, algo_kwargs=kw)
    assert model.policy.features_extractor.adapter.config.embedding == "all_cls"
    assert model.policy.features_extractor.adapter.config.image_size == 32  # the rest of encoder= kept
    env.close()
    bad = {"n_steps": 64, "policy_kwargs": {"features_extractor_kwargs": {"state_key": "state"}}}
    with pytest.raises(ValueError, match="obs=pixels_state"):
        _built(tmp_path, algo_kwargs=bad)


def test_periodic_eval_counts_success_at_any_step_and_saves_the_best(tmp_path):
    """Periodic evaluations use evaluate_agent like the final one (SB3's EvalCallback only looked at
    the last step's is_success: 0.0 here), and envs without a success signal report None."""
    import gymnasium as gym
    from stable_baselines3 import PPO
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    from pixio_robot.rl.loop import PeriodicEval, StateOnly, defines_success, evaluate_agent

    class Toy(gym.Env):  # success at step 3, lost again by the last step 5
        observation_space = gym.spaces.Dict({"state": gym.spaces.Box(-1, 1, (2,), np.float32)})
        action_space = gym.spaces.Box(-1, 1, (1,), np.float32)

        def reset(self, seed=None, options=None):
            super().reset(seed=seed)
            self.t = 0
            return {"state": np.zeros(2, np.float32)}, {"is_success": False}

        def step(self, a):
            self.t += 1
            return {"state": np.zeros(2, np.float32)}, 1.0, False, self.t >= 5, {"is_success": self.t == 3}

    def mk():
        return DummyVecEnv([lambda: Monitor(StateOnly(Toy()), info_keywords=("is_success",))])

    model = PPO("MlpPolicy", mk(), n_steps=16, batch_size=16, seed=0)
    cfg = _cfg(tmp_path, "ppo", obs="state", eval_every=16, n_episodes=2, env="metaworld/reach-v3")
    cb = PeriodicEval(cfg, tmp_path / "run", env_fn=Toy)
    model.learn(32, callback=cb)
    assert [e["timesteps"] for e in cb.evaluations] == [16, 32]
    assert all(e["success_rate"] == 1.0 and e["n_episodes"] == 2 for e in cb.evaluations)
    assert all(e["mean_return"] == 5.0 for e in cb.evaluations)  # 5 steps of reward 1: no early stop
    assert (tmp_path / "run" / "best" / "best_model.zip").exists()
    saved = json.loads((tmp_path / "run" / "eval" / "evaluations.json").read_text())
    assert saved == cb.evaluations
    assert not defines_success("dmc/walker-walk") and defines_success("metaworld/reach-v3")
    dmc = _cfg(tmp_path, "ppo", obs="state", env="dmc/walker-walk")
    assert evaluate_agent(model, dmc, 2, seed=0, env_fn=Toy)["success_rate"] is None


def test_bad_pixel_options_are_refused(tmp_path):
    from pixio_robot.rl import build_agent, make_vec

    with pytest.raises(ValueError, match="normalize_images"):
        _built(tmp_path, algo_kwargs={"n_steps": 64, "policy_kwargs": {"normalize_images": False}})
    for algo, kw in (("sac", {"n_steps": 64}), ("ppo", {"learning_rate": "abc"}), ("ppo", {"batch_size": 1})):
        cfg = _cfg(tmp_path, algo, n_envs=1, algo_kwargs=kw)
        env = make_vec(cfg, 1, 0)
        with pytest.raises(ValueError, match=f"bad algo_kwargs for {algo.upper()}"):
            build_agent(cfg, env, torch.device("cpu"))
        env.close()


def test_ppo_honours_share_features_extractor(tmp_path):
    from pixio_robot.policies import AdapterConfig

    for share in (False, True):
        cfg, env, model = _built(tmp_path, share_features_extractor=share,
                                 encoder=AdapterConfig(image_size=32, mode="finetune"))
        p = model.policy
        assert p.share_features_extractor is share
        assert (p.pi_features_extractor is p.vf_features_extractor) is share
        env.close()


def test_upsampling_to_the_encoder_size_is_warned(tmp_path, rl_log):
    from pixio_robot.policies import AdapterConfig
    from pixio_robot.rl import run_rl

    res = run_rl(_cfg(tmp_path, "ppo", total_timesteps=64, eval_every=0, ckpt_every=0, n_episodes=1,
                      algo_kwargs={"n_steps": 32, "batch_size": 32, "n_epochs": 1}, encoder=AdapterConfig()))
    assert "encoder.image_size=32" in rl_log.text and "4x the tokens" in rl_log.text
    assert "the agent sees pixels" in rl_log.text and res["observation"]["state_dim"] == 0
    assert 0 < res["learn_s"] < res["wall_s"] and res["steps_per_s"] == pytest.approx(
        (res["timesteps"]) / res["learn_s"])


def _interrupt_at(monkeypatch, steps):
    from pixio_robot import rl

    orig = rl.ProgressCallback._on_step

    def on_step(self):
        if self.num_timesteps >= steps:
            raise KeyboardInterrupt
        return orig(self)

    monkeypatch.setattr(rl.ProgressCallback, "_on_step", on_step)
    return lambda: monkeypatch.setattr(rl.ProgressCallback, "_on_step", orig)


@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_ctrl_c_saves_and_the_same_command_resumes(tmp_path, monkeypatch, rl_log, algo):
    from pixio_robot.rl import load_agent, run_rl

    cfg = _cfg(tmp_path, algo, tensorboard=False)
    undo = _interrupt_at(monkeypatch, 192)
    with pytest.raises(KeyboardInterrupt):
        run_rl(cfg)
    undo()
    run = Path(cfg.run_dir)
    ck = run / "checkpoints" / f"{algo}_192_steps.zip"
    assert ck.exists() and json.loads((run / "run_state.json").read_text())["status"] == "interrupted"
    if algo == "sac":
        # SB3's CheckpointCallback names: the buffer of the newest checkpoint only
        assert [p.name for p in (run / "checkpoints").glob("*.pkl")] == ["sac_replay_buffer_192_steps.pkl"]
    res = run_rl(cfg)  # the same command again
    assert res["resumed_from"] == str(ck) and res["resumed_at"] == 192 and res["timesteps"] >= 256
    assert [e["timesteps"] for e in res["evaluations"]] == [128, 256]
    if algo == "sac":
        assert "resumed the replay buffer (19" in rl_log.text  # 191: the interrupted step was not stored
    assert load_agent(run).num_timesteps == res["timesteps"]
    again = run_rl(cfg)  # finished: nothing to do
    assert again["timesteps"] == res["timesteps"] and "already finished" in rl_log.text


def test_run_dir_of_another_run_is_refused_and_resume_false_moves_it_aside(tmp_path):
    from pixio_robot.rl import load_agent, run_rl

    cfg = _cfg(tmp_path, "ppo", total_timesteps=128, eval_every=64, ckpt_every=0, n_episodes=1,
               tensorboard=False)
    run_rl(cfg)
    run = Path(cfg.run_dir)
    assert load_agent(run / "best").num_timesteps in (64, 128)  # best/ holds best_model.zip
    other = _cfg(tmp_path, "sac", run_dir=cfg.run_dir, total_timesteps=64, eval_every=0, ckpt_every=0)
    with pytest.raises(ValueError, match="other settings: algo: 'ppo' -> 'sac'"):
        run_rl(other)
    other.resume = False
    res = run_rl(other)
    assert res["algo"] == "sac" and not (run / "best").exists()
    (old,) = (run / "previous").iterdir()
    assert (old / "best" / "best_model.zip").exists() and json.loads((old / "agent.json").read_text())["algo"] == "ppo"


def test_cli_errors_and_ctrl_c(tmp_path):
    """One `error:` line (exit 1) for a bad SB3 option; Ctrl-C exits 130 saying how to resume."""
    import os
    import signal
    import subprocess
    import sys
    import time

    base = [sys.executable, "-m", "pixio_robot.rl", "n_envs=1", "image_size=32", "encoder.image_size=32",
            "progress=false", "tensorboard=false", "eval_every=0", "max_episode_steps=32"]
    env = dict(os.environ, HYDRA_FULL_ERROR="0")
    r = subprocess.run(base + ["algo=sac", "+algo_kwargs.n_steps=64", f"run_dir={tmp_path / 'bad'}"],
                       capture_output=True, text=True, env=env, timeout=300)
    errs = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.returncode == 1 and len(errs) == 1 and "n_steps" in errs[0], r.stderr[-2000:]
    run = tmp_path / "cc"
    p = subprocess.Popen(base + ["total_timesteps=1000000", "+algo_kwargs.n_steps=32", "+algo_kwargs.batch_size=32",
                                 f"run_dir={run}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 240
    while time.time() < deadline and not (run / "run_state.json").exists():
        time.sleep(0.5)
    time.sleep(3)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, err[-2000:]
    assert "re-run the same command to resume" in err and list((run / "checkpoints").glob("ppo_*_steps.zip"))


def test_sac_target_critic_keeps_the_frozen_encoder_bit_identical(tmp_path):
    """SB3 averages every parameter into the target critic; for a frozen encoder that rounding
    drifted the target's copy (up to 2.4e-7): frozen parameters are now skipped, trainable ones
    still move."""
    from pixio_robot.rl import load_agent, run_rl

    res = run_rl(_cfg(tmp_path, "sac", eval_every=0, ckpt_every=0))
    model = load_agent(res["run_dir"])
    online = model.policy.actor.features_extractor.adapter.backbone.state_dict()
    target_ext = model.policy.critic_target.features_extractor
    target = target_ext.adapter.backbone.state_dict()
    assert target_ext is not model.policy.actor.features_extractor
    assert all(torch.equal(online[k], target[k]) for k in online)
    q, q_t = model.policy.critic.q_networks[0], model.policy.critic_target.q_networks[0]
    assert any(not torch.equal(a, b) for a, b in zip(q.parameters(), q_t.parameters(), strict=True))  # averaged
    # SB3's SAC itself (no patched module globals): the policy subclass does it, and owns its feature cache
    import stable_baselines3.sac.sac as sac_module
    from stable_baselines3.common.utils import polyak_update

    assert type(model) is sac_module.SAC and sac_module.polyak_update is polyak_update
    cache = model.policy.actor.features_extractor.feature_cache
    assert cache is not None and target_ext.feature_cache is cache
    assert load_agent(res["run_dir"]).policy.actor.features_extractor.feature_cache is not cache


def test_state_agents_on_metaworld_see_the_full_state(tmp_path):
    """MetaWorld's default state is the 4-d hand + gripper (what pixel policies add): a state-only
    agent gets the full 39-d observation (objects and goal) unless env_options.state says otherwise."""
    from pixio_robot.rl import env_factory

    cfg = _cfg(tmp_path, "ppo", env="metaworld/reach-v3", obs="state")
    env = env_factory(cfg, 0, 0)()
    assert env.observation_space.shape == (39,)
    env.close()
    cfg = _cfg(tmp_path, "ppo", env="metaworld/reach-v3", obs="state", env_options={"state": "proprio"})
    env = env_factory(cfg, 0, 0)()
    assert env.observation_space.shape == (4,)
    env.close()


def test_frozen_encoder_features_are_reused_within_a_sac_step(tmp_path, monkeypatch):
    """SAC hands one replay batch to the frozen encoder 5 times per gradient step (actor, critic x2,
    next-obs actor and target critic); identical pixels reuse the features: at most 2 encoder
    passes per step, and the run is the same as without the reuse."""
    import pixio_robot.policies.sb3_extractor as ext_mod
    from pixio_robot.policies.encoder_adapter import EncoderAdapter
    from pixio_robot.rl import run_rl

    calls = []
    real = EncoderAdapter.encode
    monkeypatch.setattr(EncoderAdapter, "encode", lambda self, x: calls.append(x.shape[0]) or real(self, x))
    kw = dict(eval_every=0, ckpt_every=0, total_timesteps=96)
    res = run_rl(_cfg(tmp_path / "reuse", "sac", **kw))
    batch = [n for n in calls if n == 16]  # the replay batches (rollouts encode 1 frame at a time)
    steps = 96 - 64  # gradient steps after learning_starts
    assert 0 < len(batch) <= 2 * steps, (len(batch), steps)
    calls.clear()
    monkeypatch.setattr(ext_mod.FrozenFeatureCache, "features", lambda self, adapter, key, x: adapter.encode(x))
    ref = run_rl(_cfg(tmp_path / "plain", "sac", **kw))
    assert len([n for n in calls if n == 16]) == 5 * steps
    assert res["final"] == ref["final"]
