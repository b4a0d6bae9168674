"""PixioDiffusionPolicy: LeRobot's DiffusionPolicy whose ResNet trunk is a Pixio / timm encoder."""

from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy

from lerobot_policy_pixio.configuration_pixio_diffusion import PixioDiffusionConfig


class PixioDiffusionPolicy(DiffusionPolicy):
    config_class = PixioDiffusionConfig
    name = "pixio_diffusion"

    def __init__(self, config: PixioDiffusionConfig, **kwargs):
        from pixio_robot.policies.lerobot.swap import install_diffusion_trunk

        super().__init__(config, **kwargs)
        install_diffusion_trunk(self.diffusion, config)
        self.reset()

    def get_optim_params(self):
        return [p for p in self.diffusion.parameters() if p.requires_grad]  # a frozen trunk stays out
