"""Scripted pusher for `lerobot/pusht`: demonstrations without a human dataset.

Each step reads the block position from ``info["full_state"]`` (agent xy, block xy, block angle)
and pushes the block's centre toward the goal's: the agent first goes to a point `standoff` px
behind the block on the goal line (around the block when it is on the goal side), then drives
through the block toward the goal. It ignores the block's angle, so it moves the T near the goal
but seldom reaches LeRobot's 95% coverage: demonstrations of the motion, not of success (collect
them with ``only_success=False``). Actions are the agent's target positions in [0, 512]^2.

    python -m pixio_robot.evaluation.experts lerobot/pusht --episodes 20
"""

from __future__ import annotations

import numpy as np

GOAL_XY = np.array([256.0, 256.0])  # gym-pusht's goal_pose[:2]


class PushTPusherExpert:
    """Scripted centre-pushing policy for PushT (see the module docstring)."""

    def __init__(self, standoff: float = 100.0, reach: float = 25.0, step: float = 40.0) -> None:
        self.standoff, self.reach, self.step = float(standoff), float(reach), float(step)
        self._pushing = False

    def reset(self) -> None:
        self._pushing = False

    def act(self, obs: dict, info: dict) -> np.ndarray:
        full = np.asarray(info.get("full_state", ()), np.float64)
        if full.shape[-1] != 5:
            raise ValueError("the PushT pusher needs info['full_state'] (agent xy, block xy, angle): pass the info "
                             "dict of a lerobot/pusht env of make_env")
        agent, block = full[:2], full[2:4]
        to_goal = GOAL_XY - block
        dist = float(np.linalg.norm(to_goal))
        if dist < 1.0:  # centred: hold still
            return agent.astype(np.float32)
        u = to_goal / dist  # (2,) unit direction block -> goal
        behind = block - self.standoff * u
        if not self._pushing and np.linalg.norm(agent - behind) < self.reach:
            self._pushing = True
        rel = agent - block
        if self._pushing and float(rel @ u) > 0.0:  # slipped past the block: set up again
            self._pushing = False
        if self._pushing:
            target = agent + self.step * u  # drive along the goal line
            target += 0.5 * ((block - agent) - float((block - agent) @ u) * u)  # stay on the line
        elif float(rel @ u) > -0.5 * self.standoff:  # on the goal side: go around the block first
            side = np.array([-u[1], u[0]])
            side = side if float(rel @ side) >= 0 else -side
            target = block + 1.6 * self.standoff * side - 0.6 * self.standoff * u
        else:
            target = behind
        return np.clip(target, 0.0, 512.0).astype(np.float32)
