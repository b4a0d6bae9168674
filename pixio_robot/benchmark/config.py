"""The schema of `python -m pixio_robot.benchmark` (hydra ConfigStore nodes)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore

from pixio_robot.evaluation.suites import RESNET18, EncoderSpec, SuiteConfig


@dataclass
class BenchmarkConfig:
    """Schema of the benchmark entry."""

    suite: SuiteConfig = field(default_factory=SuiteConfig)  # tasks, demos, protocol, evaluation (group `suite`)
    encoders: list[EncoderSpec] = field(default_factory=lambda: [EncoderSpec()])  # the grid's columns: label,
                                                      # source, name, path, embedding, ... (group `encoders`)
    envs: list[str] | None = None  # subset of the suite's envs (default: all)
    seeds: list[int] | None = None  # override the suite's seeds
    cell: int | None = None  # run only this cell index (0-based, in task/encoder/seed order)
    report_only: bool = False  # only aggregate the finished cells
    resume: bool = True  # true: finished cells are skipped, cells run with other settings are moved to
                         # previous/<time>/ and run again; false: every finished cell is moved there and run
                         # again (nothing is deleted)
    run_dir: str = "runs/benchmark/quick"  # stable per suite, so re-running resumes
    data_root: str = "~/.cache/pixio_robot/demos"  # collected demos, one folder per task and demo settings
    cache_dir: str = "~/.cache/pixio_robot/features"  # frozen-encoder feature cache, shared by the cells
    n_envs: int = 5  # rollout envs run side by side
    vector_mode: str = "serial"  # serial | subproc (rollout envs in worker processes)
    device: str = "auto"  # auto (cuda when available, else cpu) | cpu | cuda[:i] | mps
    num_threads: int | None = None  # torch intra-op threads (null: torch's default)
    tensorboard: bool = False  # TensorBoard events in each cell's run dir (<run_dir>/runs/<cell>/tb)
    progress: bool = True  # progress bars (demos, encoding, epochs, rollouts)
    probe_dir: str | None = None  # a `python -m pixio_robot.probe` run dir of the same encoders (same labels):
                                  # the report adds their probe scores and the rank correlation with success

    def __post_init__(self) -> None:
        if not self.encoders:
            raise ValueError("no encoders: give at least one under encoders (see configs/benchmark/encoders)")
        unknown = sorted(set(self.envs or []) - set(self.suite.envs))
        if unknown:
            raise ValueError(f"envs {unknown} are not in suite {self.suite.name!r}: {self.suite.envs}")
        if self.vector_mode not in ("serial", "subproc"):
            raise ValueError(f"vector_mode must be 'serial' or 'subproc', got {self.vector_mode!r}")
        labels = [e.label for e in self.encoders]
        if len(set(labels)) != len(labels):
            raise ValueError(f"encoder labels must be unique (they name the grid's columns): {labels}")
        resnet = [e.label for e in self.encoders if e.source == RESNET18]
        if resnet and not self.suite.lerobot:
            raise ValueError(f"encoders {resnet} (source=resnet18: LeRobot's built-in trunk) need a LeRobot suite "
                             "(suite.policy=act|diffusion, e.g. suite=pusht_diffusion); the MLP suites take "
                             "pixio / checkpoint / timm encoders")


def register_configs() -> None:
    """`benchmark_schema` in hydra's ConfigStore (idempotent; done when this module is imported)."""
    from pixio_robot.utils.cli import register_resolvers

    register_resolvers()
    ConfigStore.instance().store(name="benchmark_schema", node=BenchmarkConfig)


register_configs()
