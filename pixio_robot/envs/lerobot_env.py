"""LeRobot's simulation envs: `lerobot/pusht` (gym-pusht) and `lerobot/aloha-transfer-cube`,
`lerobot/aloha-insertion` (gym-aloha), under the project's observation contract.

- PushT: ``state`` = agent position (2, pixels of the 512x512 board); the full 5-dim state
  (agent xy, block xy, block angle) is in ``info["full_state"]``. Actions are target positions
  in [0, 512]^2. Success: >95% of the T covers the goal; the episode ends there (as LeRobot).
- ALOHA: the gym-aloha task renders three 480x640 cameras on every step whatever the
  observation size; this adapter drives the same dm_control task without those renders and
  draws only the chosen camera (``top`` by default) at ``image_size``; ``cameras=[...]`` also
  draws those into ``obs["pixels.<camera>"]`` (multi-camera policies: the evaluator asks for the
  cameras a policy was trained on). ``state`` = the 14 joint positions (``agent_pos`` in
  LeRobot's datasets). Success: reward == 4; the episode ends.
Episode limits follow LeRobot's configs: PushT 300 steps, ALOHA 400.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np
from gymnasium import spaces

from pixio_robot.envs.base import PixelStateEnv, dict_space, refresh_exit_hook
from pixio_robot.envs.dmc_env import DmControlMixin
from pixio_robot.envs.rendering import apply_quality


@dataclass(frozen=True)
class LeRobotTask:
    kind: str  # "pusht" | "aloha"
    episode_steps: int
    aloha_task: str | None = None
    text: str = ""


TASKS = {
    "pusht": LeRobotTask("pusht", 300, text="Push the T-shaped block onto the T-shaped target."),
    "aloha-transfer-cube": LeRobotTask("aloha", 400, "transfer_cube",
                                       "Pick the cube with the right arm and transfer it to the left arm."),
    "aloha-insertion": LeRobotTask("aloha", 400, "insertion", "Insert the peg into the socket."),
}


def supports_cameras(task: str) -> bool:
    """Whether `lerobot/<task>` takes `cameras=[...]` (ALOHA: several views; PushT: one)."""
    return TASKS[task].kind == "aloha"


def make_lerobot_env(task: str, **kw) -> PixelStateEnv:
    """Factory used by the registry: PushT or ALOHA adapter for a `lerobot/<task>` name."""
    spec = TASKS[task]
    return PushTEnv(**kw) if spec.kind == "pusht" else AlohaEnv(spec.aloha_task, **kw)


class PushTEnv(PixelStateEnv):
    """gym-pusht's PushT with the Dict observation contract (see module docstring)."""

    def __init__(self, image_size: int | tuple[int, int] = 96, *, camera: str | None = None, pixels: bool = True,
                 render_quality: str = "fast", seed: int | None = None) -> None:
        super().__init__(image_size, pixels=pixels, render_quality=render_quality)
        if camera is not None:
            raise ValueError("lerobot/pusht is a 2-D scene with a single view: leave camera=None.")
        from gym_pusht.envs import PushTEnv as _PushT

        h, w = self.image_hw
        self._env = _PushT(obs_type="state", render_mode="rgb_array", observation_width=w, observation_height=h)
        self.action_space = spaces.Box(0.0, 512.0, (2,), np.float32)
        self.observation_space = dict_space(self.image_hw, 2, pixels)
        self.metadata = dict(self.metadata, render_fps=10)
        if seed is not None:
            self._env.reset(seed=int(seed))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        full, _ = self._env.reset(seed=seed, options=options)
        return self._obs(full[:2]), self._info(False, full_state=np.asarray(full, np.float32))

    def step(self, action):
        full, reward, terminated, truncated, info = self._env.step(np.asarray(action, dtype=np.float64))
        return (self._obs(full[:2]), float(reward), bool(terminated), bool(truncated),
                self._info(bool(info["is_success"]), full_state=np.asarray(full, np.float32),
                           coverage=float(info["coverage"])))

    def _close(self) -> None:
        self._env.close()

    def _frame(self) -> np.ndarray:
        return self._env._render(visualize=False)


class AlohaEnv(DmControlMixin, PixelStateEnv):
    """gym-aloha's bimanual ViperX tasks, rendering one camera at the requested size."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 50}

    def __init__(self, task: str, image_size: int | tuple[int, int] = (480, 640), *, camera: str | None = None,
                 cameras: list[str] | tuple[str, ...] | None = None, pixels: bool = True,
                 render_quality: str = "fast", seed: int | None = None) -> None:
        super().__init__(image_size, pixels=pixels, render_quality=render_quality)
        from dm_control import mujoco as dm_mujoco
        from dm_control.rl import control
        from gym_aloha.constants import ASSETS_DIR, DT, JOINTS
        from gym_aloha.tasks import sim

        refresh_exit_hook()  # dm_control registered an eglTerminate hook on import

        base, xml = {"transfer_cube": (sim.TransferCubeTask, "bimanual_viperx_transfer_cube.xml"),
                     "insertion": (sim.InsertionTask, "bimanual_viperx_insertion.xml")}[task]

        class _Quiet(base):
            """The gym-aloha task without its three 480x640 renders per step."""

            def get_observation(self, physics):
                return collections.OrderedDict(qpos=self.get_qpos(physics), qvel=self.get_qvel(physics),
                                               env_state=self.get_env_state(physics))

        physics = dm_mujoco.Physics.from_xml_path(str(ASSETS_DIR / xml))
        self._env = control.Environment(physics, _Quiet(), float("inf"), control_timestep=DT,
                                        flat_observation=False)
        self._sim = sim
        self.task = task
        self.cameras = tuple(str(c) for c in cameras or ())
        self.camera = camera or (self.cameras[0] if self.cameras else "top")
        names = [physics.model.id2name(i, "camera") for i in range(physics.model.ncam)]
        for cam in (self.camera, *self.cameras):
            if cam not in names:
                raise ValueError(f"ALOHA has no camera {cam!r}; choose one of {names}.")
        apply_quality(physics.model, self.render_quality, min_size=self.image_hw)
        self.action_space = spaces.Box(-1.0, 1.0, (14,), np.float32)
        self.observation_space = dict_space(self.image_hw, len(JOINTS), pixels, self.cameras)
        if seed is not None:
            super().reset(seed=int(seed))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        from gym_aloha.utils import sample_box_pose, sample_insertion_pose

        super().reset(seed=seed)
        pose_seed = int(self.np_random.integers(2**31 - 1))
        if self.task == "transfer_cube":
            self._sim.BOX_POSE[0] = sample_box_pose(pose_seed)  # read by the task's episode init
        else:
            self._sim.BOX_POSE[0] = np.concatenate(sample_insertion_pose(pose_seed))
        ts = self._env.reset()
        return self._obs(ts.observation["qpos"]), self._info(False, full_state=self._flat(ts.observation))

    def step(self, action):
        ts = self._env.step(np.asarray(action, dtype=np.float64))
        success = float(ts.reward or 0.0) >= self._env.task.max_reward
        return (self._obs(ts.observation["qpos"]), float(ts.reward or 0.0), success, False,
                self._info(success, full_state=self._flat(ts.observation)))

