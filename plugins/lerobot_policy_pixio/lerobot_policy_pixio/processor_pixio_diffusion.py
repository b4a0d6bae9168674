"""Processors of `pixio_diffusion`: LeRobot's Diffusion pipeline (normalise, batch, device; unnormalise)."""

from lerobot.policies.diffusion.processor_diffusion import make_diffusion_pre_post_processors


def make_pixio_diffusion_pre_post_processors(config, dataset_stats=None):
    return make_diffusion_pre_post_processors(config, dataset_stats)
