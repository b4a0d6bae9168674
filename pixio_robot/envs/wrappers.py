"""Generic wrappers applied by ``make_env`` on top of a family adapter.

Order (inside -> outside): adapter -> ActionRepeat -> TimeLimit -> PixelHistory.
The time limit counts agent steps (after action repeat); the history stacks rendered frames.
"""

from __future__ import annotations

from collections import deque

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class ActionRepeat(gym.Wrapper):
    """Repeat each action `repeat` times; rewards are summed, success is true if reached at any
    of the repeated steps; stops early when the episode ends."""

    def __init__(self, env: gym.Env, repeat: int) -> None:
        super().__init__(env)
        if int(repeat) < 1:
            raise ValueError(f"action_repeat must be >= 1, got {repeat}.")
        self.repeat = int(repeat)

    def step(self, action):
        total, success = 0.0, False
        for _ in range(self.repeat):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            success = success or bool(info.get("is_success", False))
            if terminated or truncated:
                break
        info = dict(info, is_success=success)
        return obs, total, terminated, truncated, info


class PixelHistory(gym.Wrapper):
    """Keep the last `k` frames: ``pixels`` becomes uint8 [k, H, W, 3] (oldest first); ``state``
    stays the current vector. After reset the history is filled with the first frame."""

    def __init__(self, env: gym.Env, k: int) -> None:
        super().__init__(env)
        if int(k) < 1:
            raise ValueError(f"frame_stack must be >= 1, got {k}.")
        if "pixels" not in env.observation_space.spaces:
            raise ValueError("frame_stack > 1 needs pixels=True.")
        self.k = int(k)
        pix = env.observation_space["pixels"]
        self.observation_space = spaces.Dict({
            **env.observation_space.spaces,
            "pixels": spaces.Box(0, 255, (self.k, *pix.shape), np.uint8),  # (T, H, W, 3)
        })
        self._frames: deque[np.ndarray] = deque(maxlen=self.k)

    def _stacked(self, obs: dict) -> dict:
        return {**obs, "pixels": np.stack(self._frames, axis=0)}  # (T, H, W, 3)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._frames.clear()
        for _ in range(self.k):
            self._frames.append(obs["pixels"])
        return self._stacked(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._frames.append(obs["pixels"])
        return self._stacked(obs), reward, terminated, truncated, info
