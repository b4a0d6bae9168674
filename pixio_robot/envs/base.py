"""The one observation contract shared by every env family.

Each family adapter subclasses :class:`PixelStateEnv` and returns a Dict observation
``{"pixels": uint8 [H, W, 3] upright, "state": float32 [S]}`` (``pixels`` is left out when the
env is built with ``pixels=False``, for cheap state-only rollouts) and ``info["is_success"]``
(bool) on every reset and step. Frame history, action repeat and time limits are generic
wrappers (:mod:`pixio_robot.envs.wrappers`) applied on top by ``make_env``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from pixio_robot.envs.rendering import check_quality, require_gl


def as_hw(image_size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """`128` -> (128, 128); `(96, 128)` -> (96, 128) as (height, width)."""
    if isinstance(image_size, int | np.integer):
        hw = (int(image_size), int(image_size))
    else:
        hw = tuple(int(v) for v in image_size)
    if len(hw) != 2 or min(hw) < 8 or max(hw) > 4096:
        raise ValueError(f"image_size must be an int or (height, width) between 8 and 4096, got {image_size!r}.")
    return hw  # type: ignore[return-value]


def dict_space(image_hw: tuple[int, int], state_dim: int, pixels: bool) -> spaces.Dict:
    """Observation space of the contract: `pixels` uint8 [H,W,3] (optional), `state` float32 [S]."""
    items: dict[str, spaces.Space] = {}
    if pixels:
        items["pixels"] = spaces.Box(0, 255, (*image_hw, 3), np.uint8)
    items["state"] = spaces.Box(-np.inf, np.inf, (state_dim,), np.float32)
    return spaces.Dict(items)


class PixelStateEnv(gym.Env):
    """Base of the family adapters: builds the Dict observation from `_state()` and `_frame()`.

    Subclasses implement `_frame() -> uint8 [H,W,3]` (upright, at `self.image_hw`) and produce
    the state vector themselves; `render()` returns the same frame the observation holds.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, image_size: int | tuple[int, int] = 128, *, pixels: bool = True,
                 render_quality: str = "fast") -> None:
        self.image_hw = as_hw(image_size)
        self.use_pixels = bool(pixels)
        self.render_quality = check_quality(render_quality)
        self.render_mode = "rgb_array"
        if self.use_pixels:
            require_gl()

    def _frame(self) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _obs(self, state: np.ndarray) -> dict[str, np.ndarray]:
        obs = {"state": np.asarray(state, dtype=np.float32).reshape(-1)}
        if self.use_pixels:
            frame = np.ascontiguousarray(self._frame())
            if frame.shape != (*self.image_hw, 3) or frame.dtype != np.uint8:
                raise RuntimeError(f"{type(self).__name__} rendered {frame.shape} {frame.dtype}, "
                                   f"expected {(*self.image_hw, 3)} uint8.")
            obs = {"pixels": frame, **obs}
        return obs

    def render(self) -> np.ndarray:
        return np.ascontiguousarray(self._frame())

    @staticmethod
    def _info(success: bool, **extra: Any) -> dict[str, Any]:
        return {"is_success": bool(success), **extra}
