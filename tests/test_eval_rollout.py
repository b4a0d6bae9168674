"""evaluate_policy on a small real gymnasium env: batching, seeding, crashes, files, videos."""

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from pixio_robot.evaluation import evaluate_policy, write_results
from pixio_robot.evaluation.results import CSV_FIELDS, read_episodes_csv
from pixio_robot.evaluation.video import count_video_frames


class LineEnv(gym.Env):
    """A point on a line that must reach 0. Pixels show its position; `state` = [x, goal].
    Episodes whose reset seed is in `crash_seeds` raise at step `crash_step` (a simulated
    physics blow-up); seeds in `reset_crash_seeds` raise in reset."""

    metadata = {"render_modes": [], "render_fps": 10}

    def __init__(self, crash_seeds=(), crash_step=3, reset_crash_seeds=(), max_steps=12, size=16):
        self.observation_space = gym.spaces.Dict({
            "pixels": gym.spaces.Box(0, 255, (size, size, 3), np.uint8),
            "state": gym.spaces.Box(-np.inf, np.inf, (2,), np.float32),
        })
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.crash_seeds, self.crash_step = set(crash_seeds), crash_step
        self.reset_crash_seeds, self.max_steps, self.size = set(reset_crash_seeds), max_steps, size

    def _obs(self):
        px = np.zeros((self.size, self.size, 3), np.uint8)
        col = int(np.clip((self.x + 2) / 4 * (self.size - 1), 0, self.size - 1))
        px[:, col] = 255
        return {"pixels": px, "state": np.array([self.x, 0.0], np.float32)}

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        if seed in self.reset_crash_seeds:
            raise RuntimeError("renderer lost its context")
        self.episode_seed, self.t = seed, 0
        self.x = float(self.np_random.uniform(-2.0, 2.0))
        return self._obs(), {"is_success": False}

    def step(self, action):
        self.t += 1
        if self.episode_seed in self.crash_seeds and self.t == self.crash_step:
            raise RuntimeError("simulated physics blow-up")
        self.x = float(np.clip(self.x + 0.3 * float(action[0]), -2, 2))
        success = abs(self.x) < 0.15
        return self._obs(), -abs(self.x), False, self.t >= self.max_steps, {"is_success": success}


class PGain(torch.nn.Module):
    """Deterministic policy a = -gain * x, clipped by the evaluator; logs its batch sizes."""

    def __init__(self, gain=2.0):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.tensor(gain))
        self.calls, self.resets = [], 0

    def reset(self):
        self.resets += 1

    def select_action(self, batch):
        img, state = batch["observation.image"], batch["observation.state"]
        assert img.dtype == torch.uint8 and img.ndim == 4 and state.dtype == torch.float32
        self.calls.append(img.shape[0])
        return -self.gain * state[:, :1]


def run(policy=None, **kw):
    env_kw = kw.pop("env_kw", {})
    kw.setdefault("n_episodes", 7)
    kw.setdefault("n_envs", 3)
    kw.setdefault("seed", 10)
    return evaluate_policy(policy or PGain(), "test/line", env_fn=lambda: LineEnv(**env_kw), progress=False, **kw)


def _key(res):
    return [(r.episode, r.seed, r.success, round(r.episode_return, 6), r.length) for r in res.episodes]


def test_batched_lockstep_and_reproducible():
    pol = PGain()
    res = run(pol)
    # rounds of 3, 3, 1 episodes; one batched call per step of the longest episode of a round
    assert pol.resets == 3
    assert sorted(set(pol.calls)) == [1, 3]
    assert res.n_episodes == 7 and [r.seed for r in res.episodes] == list(range(10, 17))
    assert res.steps == sum(res.lengths)
    assert _key(res) == _key(run())  # same seed -> same episodes
    assert _key(res) == _key(run(n_envs=1))  # per-episode seeds: n_envs does not change results
    assert _key(res) != _key(run(seed=11))
    assert res.success_rate == res.successes / 7
    assert res.success_ci[0] <= res.success_rate <= res.success_ci[1]
    assert res.return_ci[0] <= res.mean_return <= res.return_ci[1]


def test_bad_policy_lowers_success():
    good, bad = run(PGain(2.0)), run(PGain(-2.0))  # pushing away from the goal never succeeds
    assert good.success_rate > 0.8 and bad.success_rate == 0.0
    assert bad.success_ci == (0.0, pytest.approx(0.3543, abs=1e-3))


@pytest.mark.parametrize("mode", ["serial", "subproc"])
def test_crashing_env_episode_is_a_failure(mode):
    res = run(env_kw={"crash_seeds": {12, 15}, "reset_crash_seeds": {16}}, vector_mode=mode)
    assert res.n_episodes == 7 and res.n_errors == 3
    by_ep = {r.episode: r for r in res.episodes}
    for ep in (2, 5):
        assert not by_ep[ep].success and "simulated physics blow-up" in by_ep[ep].error
        assert by_ep[ep].length == 2  # crashed on its third step
    assert "reset" in by_ep[6].error and by_ep[6].length == 0
    # the crashed env was rebuilt: episodes after the crash on the same env index ran normally
    assert by_ep[3].error == "" and by_ep[3].length > 0
    assert res.successes == sum(r.success for r in res.episodes) and res.successes <= 4
    assert any("episode 2 (seed 12)" in e for e in res.errors)


def test_stop_on_success_shortens_episodes():
    full, early = run(), run(stop_on_success=True)
    assert early.success_rate == full.success_rate
    assert sum(early.lengths) < sum(full.lengths)
    assert all(r.length == r.first_success_step for r in early.episodes if r.success)


def test_csv_json_and_videos(tmp_path):
    res = run(env_kw={"crash_seeds": {11}}, video_dir=tmp_path / "videos", n_videos=2)
    paths = write_results(res, tmp_path, extra={"policy": "pgain"})
    summary = json.loads(paths["summary"].read_text())
    assert summary["n_episodes"] == 7 and summary["successes"] == res.successes
    assert summary["success_ci"] == pytest.approx(list(res.success_ci))
    assert summary["n_errors"] == 1 and "simulated physics blow-up" in summary["errors"][0]
    assert summary["policy"] == "pgain" and summary["lengths"] == res.lengths
    header = paths["csv"].read_text().splitlines()[0].split(",")
    assert header == CSV_FIELDS
    rows = read_episodes_csv(paths["csv"])
    assert [(r.episode, r.success, r.length, r.error) for r in rows] == \
        [(r.episode, r.success, r.length, r.error) for r in res.episodes]
    assert [r.episode_return for r in rows] == pytest.approx([r.episode_return for r in res.episodes], rel=1e-5)
    videos = sorted((tmp_path / "videos").glob("*.mp4"))
    assert [v.name for v in videos] == ["episode_0000.mp4", "episode_0001.mp4"]
    assert rows[0].video.endswith("episode_0000.mp4") and rows[2].video == ""
    # one frame for the reset plus one per step (episode 1 crashed after 2 steps)
    assert count_video_frames(videos[0]) == rows[0].length + 1
    assert count_video_frames(videos[1]) == 3


def test_bad_arguments_explain_themselves():
    with pytest.raises(ValueError, match="video_dir"):
        run(n_videos=1)
    with pytest.raises(ValueError, match="n_episodes"):
        run(n_episodes=0)

    class Wrong(PGain):
        def select_action(self, batch):
            return torch.zeros(1, 1)

    with pytest.raises(ValueError, match=r"\[B, A\]"):
        run(Wrong())


class KillerEnv(LineEnv):
    """Its process dies (SIGKILL, like a segfault in the simulator) at step 2 of seed 11."""

    def step(self, action):
        if self.episode_seed == 11 and self.t == 1:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
        return super().step(action)


def test_dead_worker_is_a_failure_and_is_replaced():
    res = evaluate_policy(PGain(), "test/killer", env_fn=KillerEnv, n_episodes=5, n_envs=2, seed=10,
                          vector_mode="subproc", progress=False)
    by_ep = {r.episode: r for r in res.episodes}
    assert res.n_episodes == 5 and res.n_errors == 1
    assert "died" in by_ep[1].error and not by_ep[1].success and by_ep[1].length == 1
    assert by_ep[3].env_index == 1 and by_ep[3].error == "" and by_ep[3].length > 0  # fresh worker
    assert _key(res)[2:] == _key(run(n_episodes=5, n_envs=2))[2:]  # later episodes unaffected


class HangingEnv(LineEnv):
    """Stops answering (a deadlocked renderer) at step 2 of seed 11."""

    def step(self, action):
        if self.episode_seed == 11 and self.t == 1:
            import time

            time.sleep(3600)
        return super().step(action)


def test_hung_worker_times_out_as_a_failure_after_serial_rendering():
    # an in-process (serial) evaluation first: a forked worker could inherit its state and hang
    run(n_episodes=2, n_envs=2)
    res = evaluate_policy(PGain(), "test/hang", env_fn=HangingEnv, n_episodes=4, n_envs=2, seed=10,
                          vector_mode="subproc", progress=False, env_timeout_s=3)
    by_ep = {r.episode: r for r in res.episodes}
    assert res.n_errors == 1 and "no answer to 'step' within 3 s" in by_ep[1].error
    assert _key(res)[2:] == _key(run(n_episodes=4, n_envs=2))[2:]  # the replaced worker goes on normally


def test_policy_that_does_not_fit_the_env_is_refused_with_both_sides():
    from types import SimpleNamespace

    from gymnasium import spaces

    from pixio_robot.evaluation.rollout import check_fits

    policy = SimpleNamespace(spec=SimpleNamespace(action_dim=4, state_dim=4, env_name="metaworld/drawer-open-v3"))
    obs = spaces.Dict({"pixels": spaces.Box(0, 255, (8, 8, 3), dtype=np.uint8),
                       "state": spaces.Box(-1, 1, (4,), dtype=np.float32)})
    check_fits(policy, "x", obs, spaces.Box(-1, 1, (4,)))  # fits: no error
    with pytest.raises(ValueError, match=r"outputs 4-d actions, dmc/point-mass-easy takes 2-d \(it was trained on "
                                         r"metaworld/drawer-open-v3 demos\)"):
        check_fits(policy, "dmc/point-mass-easy", obs, spaces.Box(-1, 1, (2,)))
    no_state = spaces.Dict({"pixels": obs["pixels"]})
    with pytest.raises(ValueError, match="reads a 4-d state, y gives none"):
        check_fits(policy, "y", no_state, spaces.Box(-1, 1, (4,)))
