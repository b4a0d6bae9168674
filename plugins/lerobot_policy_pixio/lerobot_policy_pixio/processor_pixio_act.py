"""Processors of `pixio_act`: LeRobot's ACT pipeline (normalise, batch, device; unnormalise)."""

from lerobot.policies.act.processor_act import make_act_pre_post_processors


def make_pixio_act_pre_post_processors(config, dataset_stats=None):
    return make_act_pre_post_processors(config, dataset_stats)
