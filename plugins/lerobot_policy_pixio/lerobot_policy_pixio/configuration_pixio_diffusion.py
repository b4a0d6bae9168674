"""`pixio_diffusion`: LeRobot's DiffusionConfig plus the Pixio trunk fields."""

from dataclasses import dataclass, field

from lerobot.configs import NormalizationMode, PreTrainedConfig
from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig

from lerobot_policy_pixio._fields import PixioTrunkFields, check_no_resnet_weights


@PreTrainedConfig.register_subclass("pixio_diffusion")
@dataclass
class PixioDiffusionConfig(DiffusionConfig, PixioTrunkFields):
    """Diffusion Policy (U-Net, FiLM, diffusers scheduler: LeRobot's code) on a Pixio / timm trunk.

    The crop (`crop_shape`, else `resize_shape`, else the image) must be a multiple of the ViT patch
    size, or set `pixio_image_size` to resize inside the trunk. One trunk is shared by all cameras
    unless `use_separate_rgb_encoder_per_camera=true`."""

    pretrained_backbone_weights: str | None = None
    use_separate_rgb_encoder_per_camera: bool = False
    normalization_mapping: dict[str, NormalizationMode] = field(
        default_factory=lambda: {
            "VISUAL": NormalizationMode.IDENTITY,
            "STATE": NormalizationMode.MIN_MAX,
            "ACTION": NormalizationMode.MIN_MAX,
        }
    )

    def __post_init__(self):
        super().__post_init__()
        from pixio_robot.policies.lerobot.trunk import validate_trunk_fields

        check_no_resnet_weights(self)
        validate_trunk_fields(self)
