"""CortexBench MLP policy on frozen (or fine-tuned) Pixio embeddings."""

from pixio_robot.policies.mlp.configuration_mlp import MLPConfig
from pixio_robot.policies.mlp.modeling_mlp import MLPPolicy

__all__ = ["MLPConfig", "MLPPolicy"]
