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
- `pusht_diffusion`, `aloha_act`: LeRobot's own Diffusion Policy on PushT / ACT on ALOHA
  transfer-cube (`policy: diffusion | act`), CPU-sized; an encoder column `source: resnet18` is
  LeRobot's built-in policy with its own ResNet-18 trunk, any other column the same policy with
  that encoder as its trunk (`pixio_diffusion` / `pixio_act`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

METRICS = ("success", "return")
# suite.policy: the CortexBench MLP on frozen features, or one of LeRobot's own policies (the column picks its trunk)
SUITE_POLICIES = ("mlp", "act", "diffusion", "pixio_act", "pixio_diffusion")
RESNET18 = "resnet18"  # EncoderSpec.source of LeRobot's built-in ResNet-18 trunk (LeRobot suites only)


@dataclass
class SuiteConfig:
    """Tasks, demos, protocol and evaluation of one benchmark suite."""

    name: str = "quick"  # the suite's name (titles the report)
    envs: list[str] = field(default_factory=lambda: [  # the tasks (make_env names), one grid row each
        "metaworld/button-press-topdown-v3", "metaworld/drawer-open-v3"])
    metric: str = "success"  # success | return (score = return / return_scale * 100)
    return_scale: float = 1.0  # metric=return: the return that scores 100 (> 0)
    # demonstrations
    n_demos: int = 10  # demonstration episodes per task
    demo_seed: int = 10_000  # demo episode seeds start here (far from the evaluation seeds)
    only_success: bool = True  # keep only the demos the expert solved
    expert_dir: str | None = None  # SB3 experts as <expert_dir>/<task file-safe name>.zip (dmc)
    image_size: int = 64  # env frame side, for demos and rollouts
    camera: str | None = None  # demos and rollouts; None: the env family's default camera
    max_episode_steps: int | None = None  # None: the env family's limit
    dataset_root: str | None = None  # a LeRobotDataset used instead of collecting demos ({task}: the task's
                                     # file-safe name); None: collect them under the benchmark's data_root
    policy: str = "mlp"  # mlp (CortexBench, below) | act | diffusion (LeRobot's own; pixio_act / pixio_diffusion
                         # say the same); the encoder column picks the trunk
    policy_options: dict[str, Any] = field(default_factory=dict)  # LeRobot config fields, for every column
    # protocol (CortexBench MLP; LeRobot policies use epochs and batch_size, their lr is in policy_options)
    history: int = 3  # MLP: frames of embeddings per step (the current one and the ones before it)
    hidden_sizes: list[int] = field(default_factory=lambda: [256, 256, 256])  # MLP: widths of the ReLU layers
    use_state: bool = True  # MLP: append the proprioceptive state to the embeddings
    epochs: int = 20  # training epochs per cell
    batch_size: int = 256  # rows per optimizer step
    lr: float = 1e-3  # MLP: Adam learning rate (LeRobot policies: policy_options.optimizer_lr)
    val_fraction: float = 0.0  # share of the demo episodes held out for the validation loss
    # evaluation during training
    eval_every_epochs: int = 10  # epochs (and after the last)
    n_episodes: int = 10  # rollout episodes per evaluation
    seeds: list[int] = field(default_factory=lambda: [100])  # training / rollout seeds, one grid cell each

    def __post_init__(self) -> None:
        if not self.envs:
            raise ValueError(f"suite {self.name!r} has no envs; list make_env names under suite.envs")
        if self.metric not in METRICS:
            raise ValueError(f"suite.metric must be one of {METRICS}, got {self.metric!r}")
        if self.metric == "return" and self.return_scale <= 0:
            raise ValueError(f"suite.return_scale must be > 0, got {self.return_scale}")
        for name in ("n_demos", "epochs", "n_episodes", "batch_size", "history", "image_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"suite.{name} must be >= 1, got {getattr(self, name)}")
        if self.policy not in SUITE_POLICIES:
            raise ValueError(f"suite.policy must be one of {SUITE_POLICIES}, got {self.policy!r}")
        if self.policy_options and not self.lerobot:
            raise ValueError("suite.policy_options are LeRobot config fields: set suite.policy=act|diffusion, "
                             "or leave them empty for the MLP")
        if self.dataset_root and len(self.envs) > 1 and "{task}" not in self.dataset_root:
            raise ValueError(f"suite.dataset_root={self.dataset_root!r} would serve all {len(self.envs)} tasks: "
                             "put {task} in it (the task's file-safe name) or run one task")
        if not self.seeds:
            raise ValueError("suite.seeds is empty; give at least one seed, e.g. suite.seeds=[100]")
        self.seeds = [int(s) for s in self.seeds]

    @property
    def lerobot(self) -> str | None:
        """`act` / `diffusion` for the LeRobot suites, None for the MLP one."""
        return None if self.policy == "mlp" else self.policy.removeprefix("pixio_")

    def lerobot_type(self, enc: EncoderSpec) -> str:
        """LeRobot policy type of a column: built-in `act` / `diffusion` for resnet18, else the plugin's."""
        return self.lerobot if enc.source == RESNET18 else f"pixio_{self.lerobot}"


@dataclass
class EncoderSpec:
    """One column of the grid: a frozen encoder given to the policies' adapter.

    `source`: pixio (a registry size, random init with `init_seed`), checkpoint (`path` to a
    `save_encoder` dir / `.safetensors` / official `.pth` / pretraining run dir), or timm; in the
    LeRobot suites also `resnet18`: LeRobot's built-in policy with its own ResNet-18 trunk (random
    init, trained with the policy; `path` may name torchvision weights, e.g.
    `ResNet18_Weights.IMAGENET1K_V1`, LeRobot's `pretrained_backbone_weights`, read from torch's hub
    cache: it downloads when absent there).
    """

    label: str = "pixio_random"  # the column's name in the grid and the report (unique)
    source: str = "pixio"  # pixio | checkpoint | timm | resnet18 (LeRobot suites only)
    name: str = "pixio_vittest"  # registry / timm model name (source=pixio / timm)
    path: str | None = None  # checkpoint: encoder dir/.safetensors/.pth/run dir; timm: weights file; resnet18: weights
    embedding: str = "mean_cls"  # mean_cls | all_cls | spatial | multi_block (how tokens become one embedding)
    image_size: int | None = None  # side fed to the encoder (None: its native size)
    init_seed: int = 0  # seed of the random init (source=pixio, or timm without weights)

    def adapter_config(self):
        """The policies' `AdapterConfig` for this encoder (always frozen: the suites' protocol)."""
        from pixio_robot.policies import AdapterConfig

        return AdapterConfig(source=self.source, name=self.name, path=self.path, mode="frozen",
                             embedding=self.embedding, image_size=self.image_size, init_seed=self.init_seed)
