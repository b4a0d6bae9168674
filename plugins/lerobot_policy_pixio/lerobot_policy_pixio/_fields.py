"""The `pixio_*` config fields both policy types add to LeRobot's config."""

from dataclasses import dataclass


@dataclass
class PixioTrunkFields:
    """Which encoder replaces the ResNet, and how it trains (see pixio_robot.policies.lerobot.trunk)."""

    pixio_encoder_source: str = "pixio"  # pixio (registry name, random init) | checkpoint (path) | timm (name)
    pixio_encoder_name: str | None = "pixio_vittest"  # registry / timm name (ignored for source=checkpoint)
    pixio_encoder_path: str | None = None  # save_encoder dir / official .pth / PixioModel dir; timm: weights
    pixio_mode: str = "frozen"  # frozen | finetune | last_k
    pixio_last_k: int = 1  # trainable last blocks (+ final norm) with pixio_mode=last_k
    pixio_image_size: int | None = None  # square side the trunk resizes to (None: as it comes)
    pixio_init_seed: int = 0  # seed of a random init (source=pixio, or timm without weights)


def check_no_resnet_weights(cfg) -> None:
    if cfg.pretrained_backbone_weights is not None:
        raise ValueError(f"pretrained_backbone_weights={cfg.pretrained_backbone_weights!r}: the ResNet is "
                         "replaced by the Pixio trunk (pixio_encoder_*), so its weights would only be "
                         "downloaded and thrown away; leave it None")
