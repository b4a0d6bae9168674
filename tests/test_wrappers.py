"""envs.wrappers directly (ActionRepeat, PixelHistory) on a scripted env, and their order in
make_env on a real MetaWorld env: the time limit counts agent steps after the repeat."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from pixio_robot.envs import make_env
from pixio_robot.envs.wrappers import ActionRepeat, PixelHistory


class Script(gym.Env):
    """Frame t is filled with t; reward 1 per step; success only at step `win`; ends at `end`."""

    def __init__(self, win=3, end=100):
        self.win, self.end = win, end
        self.observation_space = spaces.Dict({"pixels": spaces.Box(0, 255, (2, 2, 3), np.uint8),
                                              "state": spaces.Box(-1e3, 1e3, (1,), np.float32)})
        self.action_space = spaces.Box(-1, 1, (1,), np.float32)

    def _obs(self):
        return {"pixels": np.full((2, 2, 3), self.t, np.uint8), "state": np.array([self.t], np.float32)}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        return self._obs(), 1.0, self.t >= self.end, False, {"is_success": self.t == self.win}


def test_action_repeat_sums_rewards_keeps_a_passing_success_and_stops_at_the_end():
    env = ActionRepeat(Script(win=3, end=5), 2)
    env.reset()
    obs, r, term, _, info = env.step(np.zeros(1))
    assert (r, term, info["is_success"], obs["state"][0]) == (2.0, False, False, 2)
    obs, r, term, _, info = env.step(np.zeros(1))  # steps 3 (success) and 4 (not): success is kept
    assert (r, info["is_success"], obs["state"][0]) == (2.0, True, 4)
    obs, r, term, _, info = env.step(np.zeros(1))  # step 5 ends the episode: no 6th step
    assert (r, term, obs["state"][0]) == (1.0, True, 5)
    with pytest.raises(ValueError, match="action_repeat must be >= 1"):
        ActionRepeat(Script(), 0)


def test_pixel_history_stacks_oldest_first_and_fills_with_the_first_frame():
    env = PixelHistory(Script(), 3)
    assert env.observation_space["pixels"].shape == (3, 2, 2, 3)
    obs, _ = env.reset()
    assert obs["pixels"].shape == (3, 2, 2, 3) and obs["pixels"][:, 0, 0, 0].tolist() == [0, 0, 0]
    for _ in range(4):
        obs, *_ = env.step(np.zeros(1))
    assert obs["pixels"][:, 0, 0, 0].tolist() == [2, 3, 4] and obs["state"].tolist() == [4.0]
    assert env.observation_space.contains(obs)
    with pytest.raises(ValueError, match="frame_stack must be >= 1"):
        PixelHistory(Script(), 0)
    state_only = Script()
    state_only.observation_space = spaces.Dict({"state": state_only.observation_space["state"]})
    with pytest.raises(ValueError, match="needs pixels=True"):
        PixelHistory(state_only, 2)


def test_make_env_time_limit_counts_agent_steps_after_the_repeat():
    env = make_env("metaworld/drawer-open-v3", pixels=False, action_repeat=2, max_episode_steps=3)
    env.reset(seed=0)
    inner = env.unwrapped
    n, trunc = 0, False
    while not trunc:
        _, _, _, trunc, _ = env.step(np.zeros(env.action_space.shape, np.float32))
        n += 1
    assert n == 3 and inner._env.unwrapped.curr_path_length == 6  # MetaWorld's own counter: 3 agent steps x 2
    env.close()
