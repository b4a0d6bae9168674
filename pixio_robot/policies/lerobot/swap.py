"""Put a Pixio trunk into a built LeRobot ACT / Diffusion model in place of its ResNet.

    install_act_trunk(act_model, config)        model.backbone -> {"feature_map": (B, C, h, w)};
                                                encoder_img_feat_input_proj -> Conv2d(C, dim_model, 1)
    install_diffusion_trunk(diffusion, config)  each DiffusionRgbEncoder: backbone -> (B, C, h, w),
                                                pool -> SpatialSoftmax((C, h, w), num_kp)

Everything else (CVAE, transformer, temporal ensembling; U-Net, FiLM, schedulers, crops) stays
LeRobot's own code.
"""

from __future__ import annotations

from lerobot.utils.constants import OBS_IMAGE
from torch import nn

from pixio_robot.policies.lerobot.trunk import ActTrunk, PixioTrunk, trunk_spec


def _image_hw(config) -> dict[str, tuple[int, int]]:
    return {k: tuple(int(v) for v in ft.shape[1:]) for k, ft in config.image_features.items()}


def install_act_trunk(model: nn.Module, config) -> None:
    """Swap ACT's ResNet for one trunk shared by every camera (what ACT itself does)."""
    if not config.image_features:
        return
    trunk = PixioTrunk(trunk_spec(config))
    for _key, hw in _image_hw(config).items():
        trunk.input_side(hw)  # a ViT input off the patch grid fails here, before training
    model.backbone = ActTrunk(trunk)
    model.encoder_img_feat_input_proj = nn.Conv2d(trunk.embed_dim, config.dim_model, kernel_size=1)


def install_diffusion_trunk(diffusion: nn.Module, config) -> None:
    """Swap the ResNet of each `DiffusionRgbEncoder` (one, or one per camera) and resize its pool."""
    from lerobot.policies.diffusion.modeling_diffusion import SpatialSoftmax

    if not config.image_features:
        return
    enc = diffusion.rgb_encoder
    encoders = list(enc) if isinstance(enc, nn.ModuleList) else [enc]
    hw = next(iter(_image_hw(config).values()))
    if config.crop_shape is not None:  # LeRobot's order: resize -> crop -> backbone
        hw = tuple(config.crop_shape)
    elif config.resize_shape is not None:
        hw = tuple(config.resize_shape)
    for rgb in encoders:
        trunk = PixioTrunk(trunk_spec(config))
        shape = trunk.map_shape(hw)  # (C, h, w)
        rgb.backbone = trunk
        rgb.pool = SpatialSoftmax(shape, num_kp=config.spatial_softmax_num_keypoints)


def check_cameras(config, batch: dict, policy_type: str) -> None:
    """Refuse a batch that lacks a camera the policy was built for (never guess another one)."""
    missing = [k for k in config.image_features if k not in batch]
    if missing:
        given = sorted(k for k in batch if k.startswith(OBS_IMAGE))
        raise KeyError(f"{policy_type} was built for cameras {list(config.image_features)}, but the batch "
                       f"lacks {missing} (its image keys: {given}); rename the keys to the trained ones "
                       "(lerobot's --rename_map) or train on these cameras")
