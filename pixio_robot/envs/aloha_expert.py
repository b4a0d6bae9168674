"""Scripted expert for `lerobot/aloha-transfer-cube`: plan in end-effector space, act in joints.

For each episode the expert reads the cube pose from ``info["full_state"]``, drives gym-aloha's
end-effector (mocap) version of the same scene through a waypoint plan - right gripper pitched
down over the cube, grasp, lift to a meeting point above the table centre, left gripper turned
sideways takes the cube, right releases - and records the joint positions the arms reach
(grippers: the commanded opening). The joint env then replays that trajectory as its actions.

gym-aloha's mocap welds are too soft under MuJoCo 3 (the arm sags far below its target), so the
planning copy of the scene uses stiffer weld constraints; the env that is acted in is untouched.
"""

from __future__ import annotations

import collections

import numpy as np

EPISODE_STEPS = 400
_LEFT_HOME = np.array([-0.31718881, 0.5, 0.29525084])  # gym-aloha's initial mocap positions
_RIGHT_HOME = np.array([0.31718881, 0.5, 0.29525084])
_MEET = np.array([0.0, 0.5, 0.25])  # hand-over point above the table centre


def _quat(axis, degrees: float) -> np.ndarray:
    import mujoco

    q = np.zeros(4)
    mujoco.mju_axisAngle2Quat(q, np.asarray(axis, float), np.deg2rad(degrees))
    return q


def _nlerp(a: np.ndarray, b: np.ndarray, w: float) -> np.ndarray:
    b = -b if np.dot(a, b) < 0 else b
    q = (1 - w) * a + w * b
    return q / np.linalg.norm(q)


def _interp(waypoints: list[tuple], t: int) -> np.ndarray:
    """[x, y, z, qw, qx, qy, qz, gripper] at step t, linear between (t, xyz, quat, gripper) points."""
    for (t0, p0, q0, g0), (t1, p1, q1, g1) in zip(waypoints[:-1], waypoints[1:]):
        if t0 <= t <= t1:
            w = (t - t0) / (t1 - t0)
            return np.concatenate([(1 - w) * p0 + w * p1, _nlerp(q0, q1, w), [(1 - w) * g0 + w * g1]])
    _, p, q, g = waypoints[-1]
    return np.concatenate([p, q, [g]])


def transfer_plan(cube_xyz: np.ndarray, steps: int = EPISODE_STEPS) -> np.ndarray:
    """End-effector actions [steps, 16] (left pose+gripper, right pose+gripper; gripper 1 = open)."""
    level = np.array([1.0, 0.0, 0.0, 0.0])
    down = _quat([0, 1, 0], -60)  # right gripper pitched down towards the cube
    side = _quat([1, 0, 0], 90)  # left gripper turned to take the cube from the side
    c = np.asarray(cube_xyz, float)
    right = [(0, _RIGHT_HOME, level, 0.0), (90, c + [0, 0, 0.08], down, 1.0), (130, c + [0, 0, -0.015], down, 1.0),
             (170, c + [0, 0, -0.015], down, 0.0), (200, _MEET + [0.05, 0, 0], down, 0.0), (220, _MEET, down, 0.0),
             (310, _MEET, down, 1.0), (360, _MEET + [0.1, 0, 0], down, 1.0), (steps, _MEET + [0.2, 0, 0], down, 1.0)]
    left = [(0, _LEFT_HOME, level, 0.0), (100, _MEET + [-0.1, 0, -0.02], side, 1.0),
            (260, _MEET + [0.02, 0, -0.02], side, 1.0), (310, _MEET + [0.02, 0, -0.02], side, 0.0),
            (360, _MEET + [-0.1, 0, -0.02], level, 0.0), (steps, _MEET + [-0.1, 0, -0.02], level, 0.0)]
    return np.stack([np.concatenate([_interp(left, t), _interp(right, t)]) for t in range(steps)])


class AlohaTransferCubeExpert:
    """Scripted transfer-cube expert (see the module docstring); ``act(obs, info)`` needs the
    info dict of a ``lerobot/aloha-transfer-cube`` env (``full_state`` holds the cube pose)."""

    def __init__(self, steps: int = EPISODE_STEPS) -> None:
        self.steps = steps
        self._planner = None
        self._joints: np.ndarray | None = None
        self._t = 0

    def reset(self) -> None:
        self._joints, self._t = None, 0

    def _make_planner(self):
        from dm_control import mujoco as dm_mujoco
        from dm_control.rl import control
        from gym_aloha.constants import ASSETS_DIR, DT
        from gym_aloha.tasks import sim_end_effector as ee

        expert = self

        class _PlannerTask(ee.TransferCubeEndEffectorTask):
            def initialize_episode(self, physics):
                self.initialize_robots(physics)
                i = physics.model.name2id("red_box_joint", "joint")
                physics.data.qpos[i:i + 7] = expert._cube
                ee.BimanualViperXEndEffectorTask.initialize_episode(self, physics)

            def get_observation(self, physics):  # no camera renders
                return collections.OrderedDict(qpos=self.get_qpos(physics))

        physics = dm_mujoco.Physics.from_xml_path(str(ASSETS_DIR / "bimanual_viperx_end_effector_transfer_cube.xml"))
        physics.model.eq_solimp[:, :3] = [0.95, 0.99, 0.001]  # stiff mocap welds (see module docstring)
        physics.model.eq_solref[:] = [0.02, 1.0]
        return control.Environment(physics, _PlannerTask(), float("inf"), control_timestep=DT,
                                   flat_observation=False)

    def _plan(self, full_state: np.ndarray) -> np.ndarray:
        self._cube = np.asarray(full_state[28:35], np.float64)  # qpos 14 | qvel 14 | cube pose 7
        if self._planner is None:
            self._planner = self._make_planner()
        self._planner.reset()
        joints = []
        for action in transfer_plan(self._cube[:3], self.steps):
            q = self._planner.step(action).observation["qpos"].copy()
            q[6], q[13] = action[7], action[15]  # grippers: the command, not the lagging joint
            joints.append(q)
        return np.asarray(joints, np.float32)

    def act(self, obs: dict, info: dict) -> np.ndarray:
        if self._joints is None:
            full = info.get("full_state")
            if full is None or np.size(full) < 35:
                raise ValueError("The ALOHA transfer-cube expert needs info['full_state'] of a "
                                 "lerobot/aloha-transfer-cube env from make_env (it holds the cube pose).")
            self._joints = self._plan(np.asarray(full))
        action = self._joints[min(self._t, len(self._joints) - 1)]
        self._t += 1
        return action.copy()
