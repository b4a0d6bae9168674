"""Diffusion policy head (DDPM training, DDIM sampling) over action chunks on a Pixio backbone."""

from pixio_robot.policies.diffusion.configuration_diffusion import DiffusionConfig
from pixio_robot.policies.diffusion.modeling_diffusion import DiffusionPolicy

__all__ = ["DiffusionConfig", "DiffusionPolicy"]
