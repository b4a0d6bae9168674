"""Schema of `python -m pixio_robot.probe` (stored in hydra's ConfigStore as `probe_schema`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore

from pixio_robot.evaluation.suites import EncoderSpec


@dataclass
class ProbeConfig:
    """Frozen-feature probes against simulator ground truth for a set of encoders."""

    encoders: list[EncoderSpec] = field(default_factory=lambda: [  # the encoders to probe (as in the benchmark)
        EncoderSpec(label="pixio_test_random")])
    envs: list[str] = field(default_factory=lambda: [  # MetaWorld tasks (metaworld/<task>-v3) the set is rendered from
        "metaworld/drawer-open-v3", "metaworld/button-press-topdown-v3"])
    n_episodes: int = 21  # episodes per task (noisy scripted expert); the last test_episodes are held out
    test_episodes: int = 5  # the last episodes of each task, held out to score the probes (>= 2)
    train_sizes: list[int] = field(default_factory=lambda: [1, 4, 16])  # training episodes per probe fit
    steps: int = 150  # steps per episode
    every: int = 5  # keep every n-th frame
    image_size: int = 64  # rendered side (the encoder resizes to its own size)
    camera: str = "corner2"  # MetaWorld camera the probe set is rendered from
    noise: float = 0.3  # std of the Gaussian noise on the expert's actions (varied states)
    seed: int = 0  # probe-set seed: episode resets (seed * 1000 + episode) and the expert's action noise
    transfer: bool = True  # cross-task cells: fit on the other tasks, test on each
    floors: bool = True  # raw-pixel floor, and a random init of every trained encoder's architecture
    pixels_side: int = 16  # the pixel floor's downsampled image side
    dense_stride: int = 4  # dense probe: predicted pixels per patch side (then bilinear upsampling)
    bootstrap_reps: int = 1000  # resamples of the test episodes for each score's 95% interval
    batch_size: int = 64  # frames per encoder forward pass
    device: str = "auto"  # auto (cuda when available, else cpu) | cpu | cuda[:i] | mps
    set_root: str | None = None  # probe-set cache (default ~/.cache/pixio_robot/probe_sets)
    run_dir: str = "runs/probe"  # cells/, report/ and results.json
    resume: bool = True  # true: finished cells are skipped, cells run with other settings are moved to
                         # previous/<time>/ and run again; false: every finished cell is moved there and run
                         # again (nothing is deleted)
    progress: bool = True  # progress bars (probe-set rendering, cells)

    def __post_init__(self) -> None:
        if self.test_episodes < 2:
            raise ValueError(f"test_episodes must be >= 2 (intervals resample them), got {self.test_episodes}")
        if not self.train_sizes or min(self.train_sizes) < 1:
            raise ValueError(f"train_sizes must be positive episode counts, got {self.train_sizes}")
        if max(self.train_sizes) > self.n_episodes - self.test_episodes:
            raise ValueError(f"train_sizes {self.train_sizes} need {max(self.train_sizes)} training episodes but "
                             f"n_episodes={self.n_episodes} - test_episodes={self.test_episodes} leaves "
                             f"{self.n_episodes - self.test_episodes}: raise n_episodes")
        bad = [t for t in self.envs if not t.startswith("metaworld/")]
        if bad:
            raise ValueError(f"probe sets are rendered from MetaWorld tasks (metaworld/<task>-v3); got {bad}")
        if self.every < 1 or self.steps < self.every:
            raise ValueError(f"need 1 <= every <= steps, got every={self.every}, steps={self.steps}")
        self.train_sizes = sorted(set(self.train_sizes))


def register_configs() -> None:
    """`probe_schema` in hydra's ConfigStore (idempotent; done when this module is imported)."""
    from pixio_robot.utils.cli import register_resolvers

    register_resolvers()
    ConfigStore.instance().store(name="probe_schema", node=ProbeConfig)


register_configs()
