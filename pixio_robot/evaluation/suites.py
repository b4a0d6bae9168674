"""Benchmark suite and encoder schemas (filled by `pixio_robot/configs/benchmark/suite/*.yaml`).

A suite fixes the tasks, the demonstrations, the policy protocol and the evaluation; the grid
then runs it for several encoders and seeds. Shipped suites:

- `cortexbench_metaworld`: assembly, bin-picking, button-press-topdown, drawer-open, hammer;
  25 scripted-expert demos; frozen encoder, 3-frame history + proprioception, MLP 256x3, MSE,
  batch 256, lr 1e-3, 100 epochs, 25 rollouts every 5 epochs, seeds 100/200/300, 256 px.
- `cortexbench_dmc`: walker-stand, walker-walk, reacher-easy, cheetah-run, finger-spin; 100
  demos from the project's SB3 experts (`expert_dir/<task>.zip`), 10 rollouts, score =
  return / 1000 * 100.
- `quick`: two MetaWorld tasks at 64 px, CPU-laptop sized (minutes, not hours).
"""

from __future__ import annotations

from dataclasses import dataclass, field

METRICS = ("success", "return")


@dataclass
class SuiteConfig:
    """Tasks, demos, protocol and evaluation of one benchmark suite."""

    name: str = "quick"
    tasks: list[str] = field(default_factory=lambda: ["metaworld/button-press-topdown-v3",
                                                      "metaworld/drawer-open-v3"])
    metric: str = "success"  # success | return (score = return / return_scale * 100)
    return_scale: float = 1.0
    # demonstrations
    n_demos: int = 10
    demo_seed: int = 10_000  # demo episode seeds start here (far from the evaluation seeds)
    only_success: bool = True
    expert_dir: str | None = None  # SB3 experts as <expert_dir>/<task file-safe name>.zip (dmc)
    image_size: int = 64  # env frame side, for demos and rollouts
    camera: str | None = None
    max_episode_steps: int | None = None  # None: the env family's limit
    # protocol (CortexBench MLP)
    history: int = 3
    hidden_sizes: list[int] = field(default_factory=lambda: [256, 256, 256])
    use_state: bool = True
    epochs: int = 20
    batch_size: int = 256
    lr: float = 1e-3
    val_fraction: float = 0.0
    # evaluation during training
    eval_every: int = 10  # epochs (and after the last)
    eval_episodes: int = 10
    seeds: list[int] = field(default_factory=lambda: [100])

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ValueError(f"suite {self.name!r} has no tasks; list make_env names under suite.tasks")
        if self.metric not in METRICS:
            raise ValueError(f"suite.metric must be one of {METRICS}, got {self.metric!r}")
        if self.metric == "return" and self.return_scale <= 0:
            raise ValueError(f"suite.return_scale must be > 0, got {self.return_scale}")
        for name in ("n_demos", "epochs", "eval_episodes", "batch_size", "history", "image_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"suite.{name} must be >= 1, got {getattr(self, name)}")
        if not self.seeds:
            raise ValueError("suite.seeds is empty; give at least one seed, e.g. suite.seeds=[100]")
        self.seeds = [int(s) for s in self.seeds]


@dataclass
class EncoderSpec:
    """One column of the grid: a frozen encoder given to the policies' adapter.

    `source`: pixio (a registry size, random init with `init_seed`), checkpoint (`path` to a
    `save_encoder` dir / `.safetensors` / official `.pth` / pretraining run dir), or timm.
    """

    label: str = "pixio_random"
    source: str = "pixio"
    name: str = "pixio_vittest"
    path: str | None = None
    embedding: str = "mean_cls"
    image_size: int | None = None  # side fed to the encoder (None: its native size)
    init_seed: int = 0

    def adapter_config(self):
        """The policies' `AdapterConfig` for this encoder (always frozen: the suites' protocol)."""
        from pixio_robot.policies import AdapterConfig

        return AdapterConfig(source=self.source, name=self.name, path=self.path, mode="frozen",
                             embedding=self.embedding, image_size=self.image_size, init_seed=self.init_seed)
