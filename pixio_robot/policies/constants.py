"""Batch keys shared by datasets, policies and evaluation (LeRobot's names)."""

OBS_IMAGE = "observation.image"
OBS_STATE = "observation.state"
OBS_FEATURES = "observation.features"  # frozen-encoder features from the cache [B, T, *F]
ACTION = "action"
ACTION_PAD = "action_is_pad"  # [B, chunk] True where the chunk runs past the episode end
EPISODE_SEED = "episode_seed"  # [B] int64, sent by the evaluator: stochastic policies seed each row by it

POLICY_WEIGHTS = "model.safetensors"
POLICY_CONFIG = "config.json"
