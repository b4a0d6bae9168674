"""PixioDiffusionPolicy: LeRobot's DiffusionPolicy whose ResNet trunk is a Pixio / timm encoder."""

from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy

from lerobot_policy_pixio.configuration_pixio_diffusion import PixioDiffusionConfig
from pixio_robot.policies.lerobot.swap import check_cameras, install_diffusion_trunk


class PixioDiffusionPolicy(DiffusionPolicy):
    config_class = PixioDiffusionConfig
    name = "pixio_diffusion"

    def __init__(self, config: PixioDiffusionConfig, **kwargs):
        super().__init__(config, **kwargs)
        install_diffusion_trunk(self.diffusion, config)
        self.reset()

    def forward(self, batch):
        check_cameras(self.config, batch, self.name)
        return super().forward(batch)

    def predict_action_chunk(self, batch, noise=None):
        check_cameras(self.config, batch, self.name)
        return super().predict_action_chunk(batch, noise=noise)

    def select_action(self, batch, noise=None):
        check_cameras(self.config, batch, self.name)
        return super().select_action(batch, noise=noise)

    def get_optim_params(self):
        return [p for p in self.diffusion.parameters() if p.requires_grad]  # a frozen trunk stays out
