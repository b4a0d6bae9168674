"""PixioACTPolicy: LeRobot's ACTPolicy whose ResNet trunk is a Pixio / timm encoder."""

from lerobot.policies.act.modeling_act import ACTPolicy

from lerobot_policy_pixio.configuration_pixio_act import PixioACTConfig


class PixioACTPolicy(ACTPolicy):
    config_class = PixioACTConfig
    name = "pixio_act"

    def __init__(self, config: PixioACTConfig, **kwargs):
        from pixio_robot.policies.lerobot.swap import install_act_trunk

        super().__init__(config, **kwargs)
        install_act_trunk(self.model, config)
        self.reset()
