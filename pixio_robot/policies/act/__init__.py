"""Action-chunking transformer (ACT-style) policy on a Pixio backbone, for PushT / ALOHA tasks."""

from pixio_robot.policies.act.configuration_act import ACTConfig
from pixio_robot.policies.act.modeling_act import ACTPolicy

__all__ = ["ACTConfig", "ACTPolicy"]
