"""dm_control suite tasks (`dmc/walker-walk`, `dmc/cheetah-run`, ...) as gymnasium envs.

A small adapter (no shimmy): ``state`` is the task's observation dict flattened in its spec
order; the reward is dm_control's; the suite's own time limit is lifted so that the
``TimeLimit`` of ``make_env`` (1000 env steps, the suite's episode length) governs. dm_control
tasks define no success: ``is_success`` stays False and the metric is the return (CortexBench
reports return / 1000 x 100). ``camera`` is a camera id or name (default 0; 2 for quadruped,
as CortexBench).
"""

from __future__ import annotations

import functools

import numpy as np
from gymnasium import spaces

from pixio_robot.envs.base import PixelStateEnv, dict_space, refresh_exit_hook
from pixio_robot.envs.rendering import apply_quality, no_gc_finalizers

CORTEXBENCH_TASKS = ("walker-stand", "walker-walk", "reacher-easy", "cheetah-run", "finger-spin")


def _to_name(domain: str, task: str) -> str:
    return f"{domain}-{task}".replace("_", "-")


@functools.cache
def _index() -> dict[str, tuple[str, str]]:
    from dm_control import suite

    refresh_exit_hook()  # dm_control registered an eglTerminate hook on import
    return {_to_name(d, t): (d, t) for d, t in suite.ALL_TASKS}


def task_names() -> tuple[str, ...]:
    """All suite tasks as '<domain>-<task>' with '-' for '_' (e.g. 'ball-in-cup-catch')."""
    return tuple(sorted(_index()))


class DmControlMixin:
    """Rendering, flattening and closing shared by envs built on a dm_control `Environment`
    (held in `self._env`): the dm_control suite and gym-aloha."""

    def _close(self) -> None:
        self._env.close()

    @staticmethod
    def _flat(observation) -> np.ndarray:
        return np.concatenate([np.asarray(v, np.float32).reshape(-1) for v in observation.values()])

    def _frame(self) -> np.ndarray:
        h, w = self.image_hw
        with no_gc_finalizers():  # a collected env's EGL context must not unbind ours mid-render
            return self._env.physics.render(height=h, width=w, camera_id=self.camera)

    def _camera_frame(self, camera: str) -> np.ndarray:
        h, w = self.image_hw
        with no_gc_finalizers():
            return self._env.physics.render(height=h, width=w, camera_id=camera)

    @property
    def physics(self):
        return self._env.physics


class DMCEnv(DmControlMixin, PixelStateEnv):
    """One dm_control suite task; see the module docstring."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, name: str, image_size: int | tuple[int, int] = 84, *, camera: int | str | None = None,
                 pixels: bool = True, render_quality: str = "fast", seed: int | None = None) -> None:
        super().__init__(image_size, pixels=pixels, render_quality=render_quality)
        from dm_control import suite

        if name not in _index():
            raise ValueError(f"Unknown dm_control task {name!r}; known: {', '.join(task_names())}.")
        domain, task = _index()[name]
        self._env = suite.load(domain, task, task_kwargs={"random": seed, "time_limit": float("inf")})
        physics = self._env.physics
        self.camera = camera if camera is not None else (2 if domain == "quadruped" else 0)
        if isinstance(self.camera, str) and self.camera.lstrip("-").isdigit():
            self.camera = int(self.camera)
        ncam = physics.model.ncam
        names = [physics.model.id2name(i, "camera") for i in range(ncam)]
        if (isinstance(self.camera, int) and not -1 <= self.camera < ncam) or (
                isinstance(self.camera, str) and self.camera not in names):
            raise ValueError(f"dmc/{name} has no camera {self.camera!r}; ids 0..{ncam - 1} = {names}.")
        apply_quality(physics.model, self.render_quality, min_size=self.image_hw)
        spec = self._env.action_spec()
        self.action_space = spaces.Box(spec.minimum.astype(np.float32), spec.maximum.astype(np.float32),
                                       dtype=np.float32)
        state_dim = sum(int(np.prod(v.shape)) for v in self._env.observation_spec().values())
        self.observation_space = dict_space(self.image_hw, state_dim, pixels)
        self.metadata = dict(self.metadata, render_fps=int(round(1.0 / self._env.control_timestep())))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._env.task._random = np.random.RandomState(int(seed))
        ts = self._env.reset()
        return self._obs(self._flat(ts.observation)), self._info(False)

    def step(self, action):
        ts = self._env.step(np.asarray(action, dtype=np.float64))
        terminated = bool(ts.last() and ts.discount == 0.0)  # a task that ends the episode itself
        return self._obs(self._flat(ts.observation)), float(ts.reward or 0.0), terminated, False, self._info(False)

