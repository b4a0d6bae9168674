"""`pixio_act`: LeRobot's ACTConfig plus the Pixio trunk fields."""

from dataclasses import dataclass, field

from lerobot.configs import NormalizationMode, PreTrainedConfig
from lerobot.policies.act.configuration_act import ACTConfig

from lerobot_policy_pixio._fields import PixioTrunkFields, check_no_resnet_weights


@PreTrainedConfig.register_subclass("pixio_act")
@dataclass
class PixioACTConfig(ACTConfig, PixioTrunkFields):
    """ACT (CVAE + transformer, LeRobot's code) on a Pixio / timm trunk instead of the ResNet.

    Images reach the trunk in [0,1] (VISUAL is IDENTITY): the trunk normalises them itself."""

    pretrained_backbone_weights: str | None = None
    normalization_mapping: dict[str, NormalizationMode] = field(
        default_factory=lambda: {
            "VISUAL": NormalizationMode.IDENTITY,
            "STATE": NormalizationMode.MEAN_STD,
            "ACTION": NormalizationMode.MEAN_STD,
        }
    )

    def __post_init__(self):
        super().__post_init__()
        from pixio_robot.policies.lerobot.trunk import validate_trunk_fields

        check_no_resnet_weights(self)
        validate_trunk_fields(self)
