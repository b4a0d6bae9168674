"""PixioACTPolicy: LeRobot's ACTPolicy whose ResNet trunk is a Pixio / timm encoder."""

from lerobot.policies.act.modeling_act import ACTPolicy

from lerobot_policy_pixio.configuration_pixio_act import PixioACTConfig
from pixio_robot.policies.lerobot.swap import check_cameras, install_act_trunk


class PixioACTPolicy(ACTPolicy):
    config_class = PixioACTConfig
    name = "pixio_act"

    def __init__(self, config: PixioACTConfig, **kwargs):
        super().__init__(config, **kwargs)
        install_act_trunk(self.model, config)
        self.reset()

    def forward(self, batch):
        check_cameras(self.config, batch, self.name)
        return super().forward(batch)

    def predict_action_chunk(self, batch):
        check_cameras(self.config, batch, self.name)
        return super().predict_action_chunk(batch)

    def select_action(self, batch):
        check_cameras(self.config, batch, self.name)
        return super().select_action(batch)
