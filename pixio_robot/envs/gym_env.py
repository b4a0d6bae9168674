"""gymnasium's MuJoCo tasks (`gym/Pusher-v5`, `gym/Reacher-v5`, ...) under the observation contract.

``state`` is the task's own observation vector. These tasks define no success, so the project
uses a distance threshold for the goal-reaching ones (see ``SUCCESS_DISTANCE``); for the
locomotion tasks ``is_success`` stays False and the return is the metric.
"""

from __future__ import annotations

import functools

import gymnasium as gym
import numpy as np

from pixio_robot.envs.base import PixelStateEnv, dict_space
from pixio_robot.envs.rendering import apply_quality, render_gym_mujoco

# Views that fill the frame with the scene (gymnasium's defaults show a tiny arm far away);
# ``default_camera_config=...`` overrides them.
DEFAULT_VIEWS = {
    "Pusher": dict(distance=1.8, elevation=-60.0, azimuth=120.0, lookat=(0.2, -0.2, -0.3)),
    "Reacher": dict(distance=0.7, elevation=-90.0, azimuth=90.0, lookat=(0.0, 0.0, 0.0)),
}
# info key holding -distance, threshold in metres (the fingertip / object reached the target)
SUCCESS_DISTANCE = {"Reacher": ("reward_dist", 0.02), "Pusher": ("reward_dist", 0.05)}


@functools.cache
def task_names() -> tuple[str, ...]:
    """gymnasium ids of the MuJoCo tasks, newest version of each, e.g. 'Pusher-v5'."""
    best: dict[str, tuple[int, str]] = {}
    for env_id, spec in gym.registry.items():
        ep = spec.entry_point if isinstance(spec.entry_point, str) else ""
        if not ep.startswith("gymnasium.envs.mujoco") or spec.namespace is not None:
            continue
        version = spec.version or 0
        if spec.name not in best or version > best[spec.name][0]:
            best[spec.name] = (version, env_id)
    return tuple(sorted(v[1] for v in best.values()))


class GymMujocoEnv(PixelStateEnv):
    """A gymnasium MuJoCo task; the wrapped env is `gym.make(env_id).unwrapped`."""

    def __init__(self, env_id: str, image_size: int | tuple[int, int] = 128, *, camera: str | None = None,
                 pixels: bool = True, render_quality: str = "fast", seed: int | None = None,
                 **kwargs) -> None:
        super().__init__(image_size, pixels=pixels, render_quality=render_quality)
        h, w = self.image_hw
        if env_id not in gym.registry:
            raise ValueError(f"Unknown gymnasium id {env_id!r}; MuJoCo ids: {', '.join(task_names())}.")
        self.spec_max_steps = gym.registry[env_id].max_episode_steps
        render_kw = dict(render_mode="rgb_array", width=w, height=h) if pixels else {}
        if camera is not None:
            render_kw["camera_name"] = camera
        view = DEFAULT_VIEWS.get(env_id.split("-")[0])
        if pixels and camera is None and view is not None and "default_camera_config" not in kwargs:
            kwargs["default_camera_config"] = {k: np.asarray(v) if isinstance(v, tuple) else v
                                               for k, v in view.items()}
        env = gym.make(env_id, disable_env_checker=True, **render_kw, **kwargs).unwrapped
        if camera is not None:
            cams = [env.model.camera(i).name for i in range(env.model.ncam)]
            if camera not in cams:
                env.close()
                raise ValueError(f"{env_id} has no camera {camera!r}; choose one of {cams} or None "
                                 "(the task's default view).")
        apply_quality(env.model, self.render_quality, min_size=self.image_hw)
        self._env = env
        self.env_id = env_id
        self._success_rule = SUCCESS_DISTANCE.get(env_id.split("-")[0])
        self.action_space = env.action_space
        self.observation_space = dict_space(self.image_hw, int(np.prod(env.observation_space.shape)), pixels)
        self.metadata = dict(self.metadata, render_fps=env.metadata.get("render_fps", 30))
        if seed is not None:
            self._env.reset(seed=int(seed))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        state, _ = self._env.reset(seed=seed, options=options)
        return self._obs(state), self._info(False)

    def step(self, action):
        state, reward, terminated, truncated, info = self._env.step(np.asarray(action, dtype=np.float32))
        success = False
        if self._success_rule is not None:
            key, thresh = self._success_rule
            success = -float(info.get(key, -np.inf)) < thresh
        return self._obs(state), float(reward), bool(terminated), bool(truncated), self._info(success)

    def _close(self) -> None:
        self._env.close()

    def _frame(self) -> np.ndarray:
        return render_gym_mujoco(self._env)

    @property
    def model(self):
        return self._env.model

    @property
    def data(self):
        return self._env.data
