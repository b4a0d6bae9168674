"""Pixio models: encoder, MAE (decoder + block masking + loss), registry, checkpoint I/O."""

from pixio_robot.models.checkpoint import load_encoder, load_model, save_encoder, save_model
from pixio_robot.models.config import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DecoderConfig,
    EncoderConfig,
    MAEConfig,
    MaskConfig,
)
from pixio_robot.models.encoder import PixioEncoder
from pixio_robot.models.mae import PixioMAE
from pixio_robot.models.masking import BlockMasking
from pixio_robot.models.registry import create_model, list_models

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "BlockMasking",
    "DecoderConfig",
    "EncoderConfig",
    "MAEConfig",
    "MaskConfig",
    "PixioEncoder",
    "PixioMAE",
    "create_model",
    "list_models",
    "load_encoder",
    "load_model",
    "save_encoder",
    "save_model",
]
