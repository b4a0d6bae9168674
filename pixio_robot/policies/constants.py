"""Batch keys of the project's own that LeRobot has no name for, plus policy file names.

LeRobot's batch keys (`OBS_IMAGE`, `OBS_IMAGES`, `OBS_STATE`, `ACTION`, ...) come from
`lerobot.utils.constants`; import them from there. They are re-exported here only so that older
imports keep working.
"""

from lerobot.utils.constants import ACTION, OBS_IMAGE, OBS_IMAGES, OBS_STATE

OBS_FEATURES = "observation.features"  # frozen-encoder features from the cache [B, T, *F]
ACTION_PAD = "action_is_pad"  # [B, chunk] True where the chunk runs past the episode end (LeRobot's key)
EPISODE_SEED = "episode_seed"  # [B] int64, sent by the evaluator: stochastic policies seed each row by it

POLICY_WEIGHTS = "model.safetensors"
POLICY_CONFIG = "config.json"

__all__ = ["ACTION", "ACTION_PAD", "EPISODE_SEED", "OBS_FEATURES", "OBS_IMAGE", "OBS_IMAGES", "OBS_STATE",
           "POLICY_CONFIG", "POLICY_WEIGHTS"]
