"""MetaWorld v3 single-task envs (`metaworld/<task>-v3`) under the project's observation contract.

Facts this adapter handles (metaworld 3.0.0, see ENVIRONMENT.md):
- ``reset(seed=...)`` of the raw env is ignored; seeding goes through ``env.seed(s)``, and the
  object/goal positions are drawn from that seeded RNG (``seeded_rand_vec``), as CortexBench.
- The goal is observable (CortexBench convention); ``state`` is the 4-dim proprioception
  ``obs[0:4]`` (end-effector xyz + gripper opening) or, with ``state="full"``, all 39 dims.
  The full vector is always in ``info["full_state"]`` for scripted experts.
- ``mj_forward`` after reset, so the first frame is not stale.
- ``corner*`` cameras render upside down: they are rotated 180 degrees.
"""

from __future__ import annotations

import functools
from typing import Any

import mujoco
import numpy as np

from pixio_robot.envs.base import PixelStateEnv, dict_space
from pixio_robot.envs.rendering import apply_quality, render_gym_mujoco

DEFAULT_CAMERA = "corner2"
CAMERAS = ("corner", "corner2", "corner3", "topview", "behindGripper", "gripperPOV")
EPISODE_STEPS = 500  # MetaWorld's max_path_length, also CortexBench's horizon
CORTEXBENCH_TASKS = ("assembly-v3", "bin-picking-v3", "button-press-topdown-v3", "drawer-open-v3", "hammer-v3")
STATE_MODES = ("proprio", "full")


@functools.cache
def task_names() -> tuple[str, ...]:
    """All MetaWorld v3 single-task names, e.g. 'drawer-open-v3'."""
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    return tuple(sorted(ALL_V3_ENVIRONMENTS))


class MetaWorldEnv(PixelStateEnv):
    """One MetaWorld v3 task; see the module docstring for conventions."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 80}

    def __init__(self, task: str, image_size: int | tuple[int, int] = 128, *, camera: str | None = None,
                 pixels: bool = True, render_quality: str = "fast", state: str = "proprio",
                 seed: int | None = None) -> None:
        super().__init__(image_size, pixels=pixels, render_quality=render_quality)
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS

        if task not in ALL_V3_ENVIRONMENTS:
            raise ValueError(f"Unknown MetaWorld task {task!r}; known: {', '.join(task_names())}.")
        if state not in STATE_MODES:
            raise ValueError(f"state must be one of {STATE_MODES}, got {state!r}.")
        self.task = task
        self.camera = camera or DEFAULT_CAMERA
        self.state_mode = state
        h, w = self.image_hw
        env = ALL_V3_ENVIRONMENTS[task](render_mode="rgb_array" if pixels else None, width=w, height=h,
                                        camera_name=self.camera)
        cams = [env.model.camera(i).name for i in range(env.model.ncam)]
        if self.camera not in cams:
            env.close()
            raise ValueError(f"MetaWorld has no camera {self.camera!r}; choose one of {cams}.")
        apply_quality(env.model, self.render_quality, min_size=self.image_hw)
        # Goal observable, positions drawn from the env's own seeded RNG (CortexBench's set-up).
        env._partially_observable = False
        try:
            del env.sawyer_observation_space  # cached property: recompute with the goal visible
        except AttributeError:
            pass
        env._freeze_rand_vec = False
        env.seeded_rand_vec = True
        env._set_task_called = True
        env.max_path_length = 10**9  # the TimeLimit wrapper of make_env governs episode length
        self._env = env
        self._flip = self.camera.startswith("corner")
        self.action_space = env.action_space
        full_dim = int(env.sawyer_observation_space.shape[0])
        self.observation_space = dict_space(self.image_hw, 4 if state == "proprio" else full_dim, pixels)
        self._env.seed(int(seed) if seed is not None else int(np.random.SeedSequence().entropy % 2**31))

    # -- gymnasium API -------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._env.seed(int(seed))
        self._env.reset()
        env = self._env
        mujoco.mj_forward(env.model, env.data)  # the first frame after reset can be stale otherwise
        env._prev_obs = env._get_curr_obs_combined_no_goal()
        full = env._get_obs()
        return self._obs(self._state(full)), self._info(False, full_state=full.astype(np.float32))

    def step(self, action):
        full, reward, terminated, truncated, info = self._env.step(np.asarray(action, dtype=np.float32))
        success = bool(info.get("success", 0.0) > 0.5)
        extra: dict[str, Any] = {"full_state": np.asarray(full, np.float32)}
        return (self._obs(self._state(full)), float(reward), bool(terminated), bool(truncated),
                self._info(success, **extra))

    def _close(self) -> None:
        self._env.close()

    # -- helpers -----------------------------------------------------------------------------------
    def _state(self, full: np.ndarray) -> np.ndarray:
        return full[:4] if self.state_mode == "proprio" else full

    def _frame(self) -> np.ndarray:
        img = render_gym_mujoco(self._env)
        return img[::-1, ::-1] if self._flip else img  # corner cameras: rotate 180 degrees

    @property
    def model(self):
        return self._env.model

    @property
    def data(self):
        return self._env.data

    @property
    def raw_env(self):
        """The wrapped MetaWorld env (for scripted experts and debugging)."""
        return self._env
