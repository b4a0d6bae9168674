"""The one observation contract shared by every env family.

Each family adapter subclasses :class:`PixelStateEnv` and returns a Dict observation
``{"pixels": uint8 [H, W, 3] upright, "state": float32 [S]}`` (``pixels`` is left out when the
env is built with ``pixels=False``, for cheap state-only rollouts) and ``info["is_success"]``
(bool) on every reset and step. Frame history, action repeat and time limits are generic
wrappers (:mod:`pixio_robot.envs.wrappers`) applied on top by ``make_env``.
"""

from __future__ import annotations

import atexit
import weakref
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from pixio_robot.envs.rendering import check_quality, require_gl

_LIVE: weakref.WeakSet = weakref.WeakSet()
_AT_EXIT = False


def _track(env: PixelStateEnv) -> None:
    """Remember a live env that has rendered. The exit hook is registered after the first frame,
    hence after mujoco's ``eglTerminate`` hook (registered with the first GL context; hooks run
    last registered first), so contexts are freed while EGL still works."""
    global _AT_EXIT
    _AT_EXIT = True
    refresh_exit_hook()
    _LIVE.add(env)


def refresh_exit_hook() -> None:
    """Move the exit hook behind hooks registered since (dm_control registers its own
    ``eglTerminate`` when imported), so that it still runs first."""
    if _AT_EXIT:
        atexit.unregister(_close_live_envs)
        atexit.register(_close_live_envs)


def _close_live_envs() -> None:
    """Free GL contexts while the GL library is still loaded (else every script that forgets
    ``env.close()`` prints EGL errors from destructors at interpreter exit)."""
    for env in list(_LIVE):
        try:
            env.close()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


def as_hw(image_size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """`128` -> (128, 128); `(96, 128)` -> (96, 128) as (height, width)."""
    if isinstance(image_size, int | np.integer):
        hw = (int(image_size), int(image_size))
    else:
        hw = tuple(int(v) for v in image_size)
    if len(hw) != 2 or min(hw) < 8 or max(hw) > 4096:
        raise ValueError(f"image_size must be an int or (height, width) between 8 and 4096, got {image_size!r}.")
    return hw  # type: ignore[return-value]


CAMERA_PREFIX = "pixels."  # extra cameras: obs["pixels.<camera>"] uint8 [H,W,3]


def dict_space(image_hw: tuple[int, int], state_dim: int, pixels: bool,
               cameras: tuple[str, ...] = ()) -> spaces.Dict:
    """Observation space of the contract: `pixels` uint8 [H,W,3] (optional), `state` float32 [S];
    an env built with `cameras=[...]` also gives `pixels.<camera>` [H,W,3] for each of them."""
    items: dict[str, spaces.Space] = {}
    if pixels:
        items["pixels"] = spaces.Box(0, 255, (*image_hw, 3), np.uint8)
        for cam in cameras:
            items[CAMERA_PREFIX + cam] = spaces.Box(0, 255, (*image_hw, 3), np.uint8)
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
        self.cameras: tuple[str, ...] = ()  # extra cameras rendered into obs["pixels.<camera>"]
        self.render_quality = check_quality(render_quality)
        self.render_mode = "rgb_array"
        if self.use_pixels:
            require_gl()
        self._closed = False

    def _frame(self) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _obs(self, state: np.ndarray) -> dict[str, np.ndarray]:
        obs = {"state": np.asarray(state, dtype=np.float32).reshape(-1)}
        if self.use_pixels:
            frame = np.ascontiguousarray(self._frame())
            if self not in _LIVE:
                _track(self)
            if frame.shape != (*self.image_hw, 3) or frame.dtype != np.uint8:
                raise RuntimeError(f"{type(self).__name__} rendered {frame.shape} {frame.dtype}, "
                                   f"expected {(*self.image_hw, 3)} uint8.")
            obs = {"pixels": frame, **{CAMERA_PREFIX + c: np.ascontiguousarray(self._camera_frame(c))
                                        for c in self.cameras}, **obs}
        return obs

    def _camera_frame(self, camera: str) -> np.ndarray:
        """uint8 [H,W,3] of a named camera (envs that take `cameras=[...]` implement it)."""
        raise NotImplementedError(f"{type(self).__name__} renders one camera")

    def _close(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        """Release the simulator and its GL context (idempotent)."""
        if not getattr(self, "_closed", True):
            self._closed = True
            self._close()

    def __del__(self) -> None:
        try:  # free the GL context now: the simulator may sit in a reference cycle until exit
            self.close()
        except Exception:  # noqa: BLE001
            pass

    def render(self) -> np.ndarray:
        frame = np.ascontiguousarray(self._frame())
        if self not in _LIVE:
            _track(self)
        return frame

    @staticmethod
    def _info(success: bool, **extra: Any) -> dict[str, Any]:
        return {"is_success": bool(success), **extra}
