"""Evaluation: lockstep rollouts over many envs, metrics with confidence intervals, videos,
benchmark suites and reports. Policies are used only through the Policy API
(`reset()`, `select_action(batch)`)."""

from pixio_robot.evaluation.metrics import bootstrap_interval, mean_interval, wilson_interval
from pixio_robot.evaluation.results import EpisodeRecord, EvalResult, summarise, write_results
from pixio_robot.evaluation.rollout import evaluate_policy

__all__ = [
    "EpisodeRecord",
    "EvalResult",
    "bootstrap_interval",
    "evaluate_policy",
    "mean_interval",
    "summarise",
    "wilson_interval",
    "write_results",
]
