"""LeRobot plugin: policy types `pixio_act` and `pixio_diffusion` (LeRobot's ACT / Diffusion with a
Pixio trunk). Importing it registers both configs with `PreTrainedConfig`; LeRobot's
`register_third_party_plugins()` (lerobot-train, lerobot-eval) imports it because the distribution's
name starts with `lerobot_policy_`."""

from lerobot_policy_pixio.configuration_pixio_act import PixioACTConfig
from lerobot_policy_pixio.configuration_pixio_diffusion import PixioDiffusionConfig

__all__ = ["PixioACTConfig", "PixioDiffusionConfig"]
