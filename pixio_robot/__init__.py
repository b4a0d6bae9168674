"""pixio_robot: Pixio (pixel-supervised MAE) pretraining and robot policies on a Pixio backbone."""

__version__ = "0.1.0"
