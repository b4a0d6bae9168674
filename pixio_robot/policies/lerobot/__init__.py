"""LeRobot's own ACT / Diffusion policies with a Pixio trunk (used by the `lerobot_policy_pixio` plugin).

The policy types `pixio_act` and `pixio_diffusion` live in the plugin distribution
(`plugins/lerobot_policy_pixio`); this subpackage holds what they share with the project: the trunk
module and the swap into LeRobot's models.
"""

from pixio_robot.policies.lerobot.swap import install_act_trunk, install_diffusion_trunk
from pixio_robot.policies.lerobot.trunk import (
           ActTrunk,
           PixioTrunk,
           TrunkSpec,
           trunk_spec,
           validate_trunk_fields,
)

__all__ = ["ActTrunk", "PixioTrunk", "TrunkSpec", "install_act_trunk", "install_diffusion_trunk", "trunk_spec",
           "validate_trunk_fields"]
