"""Typed configuration of `python -m pixio_robot.pretrain` (dataclass schemas in the ConfigStore).

The YAML groups under `pixio_robot/configs/pretrain/` fill these schemas; an unknown key anywhere
is an error (OmegaConf struct mode), and `__post_init__` checks values with messages that say
what to change. Below `main()` only these dataclasses travel, never a DictConfig.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

try:
    from omegaconf import MISSING
except ImportError:  # torch + timm only (e.g. a bare GPU image running benchmarks/): the same marker
    MISSING = "???"

SOURCE_TYPES = ("folder", "webdataset", "lerobot", "sim")


@dataclass
class ModelConfig:
    """Which registered MAE to pretrain (`pixio_robot.models.create_model`) and its overrides."""

    name: str = "pixio_mae_tiny"  # registered MAE (pixio_mae_* | mae_*); with distill.teacher the student encoder
    image_size: int = 128  # model input side (timm's `img_size`)
    mask_block: int | None = None  # None: the registry's default for the size
    mask_ratio: float = 0.75  # MAE: share of the mask blocks hidden from the encoder, in (0, 1)
    num_cls_tokens: int | None = None  # class tokens; None: the registry's (8 Pixio, 1 MAE; distill: the teacher's)
    drop_path_rate: float = 0.0  # stochastic depth rate of the encoder blocks, in [0, 1)
    decoder_embed_dim: int | None = None  # MAE decoder width; None: the registry's for the size
    decoder_depth: int | None = None  # MAE decoder blocks; None: the registry's for the size
    decoder_num_heads: int | None = None  # MAE decoder attention heads; None: the registry's for the size
    norm_pix_loss: bool = True  # reconstruct per-patch normalised pixels (mean 0, var 1), as MAE / Pixio

    def create_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = dict(img_size=self.image_size, mask_ratio=self.mask_ratio,
                                  drop_path_rate=self.drop_path_rate, norm_pix_loss=self.norm_pix_loss)
        for k in ("mask_block", "num_cls_tokens", "decoder_embed_dim", "decoder_depth", "decoder_num_heads"):
            if getattr(self, k) is not None:
                kw[k] = getattr(self, k)
        return kw


@dataclass
class SourceConfig:
    """One image source. `type` is folder | webdataset | lerobot | sim; `weight` its share of the mix."""

    type: str = "sim"  # folder | webdataset | lerobot | sim
    weight: float = 1.0  # share of the mix: weight / sum of the weights (> 0)
    path: str = ""  # folder: root dir; webdataset: local glob or brace pattern / URL; lerobot: local root
    repo_id: str | None = None  # lerobot: hub id (downloads only when given and `path` does not exist)
    camera_keys: list[str] = field(default_factory=list)  # lerobot: cameras to read; empty: every colour one (depth when named)
    video_backend: str = "pyav"  # lerobot: video decoder (pyav | torchcodec)
    # sim: simulator scenes rendered once into ~/.cache/pixio_robot/sim_frames/<key>
    envs: list[str] = field(default_factory=lambda: [  # sim: make_env names the frames are rendered from
        "gym/Pusher-v5", "gym/Reacher-v5", "metaworld/reach-v3", "metaworld/drawer-open-v3",
        "metaworld/button-press-topdown-v3", "metaworld/door-open-v3", "metaworld/pick-place-v3"])
    frames: int = 2000  # sim: frames rendered in all, spread evenly over `envs`
    render_size: int = 144  # sim: rendered frame side (px)
    frame_every: int = 3  # sim: keep every n-th simulator step of an episode
    cache_dir: str | None = None  # sim: corpus cache root; None: ~/.cache/pixio_robot/sim_frames

    def __post_init__(self) -> None:
        if self.type not in SOURCE_TYPES:
            raise ValueError(f"data source type {self.type!r} is unknown; use one of {SOURCE_TYPES}")
        if self.weight <= 0:
            raise ValueError(f"data source weight must be > 0, got {self.weight}")
        if self.type in ("folder", "webdataset") and not self.path:
            raise ValueError(f"a {self.type} source needs `path` (e.g. data.sources.<name>.path=/data/images)")
        if self.type == "lerobot" and not (self.path or self.repo_id):
            raise ValueError("a lerobot source needs `path` (a local dataset root) or `repo_id` (a hub id)")


@dataclass
class DataConfig:
    """Sources (mixed by weight), augmentation and loader settings."""

    sources: dict[str, SourceConfig] = field(default_factory=dict)  # name -> source (filled by data=...)
    num_workers: int = 2  # DataLoader worker processes per rank; 0: load in the training process
    crop_scale: tuple[float, float] = (0.2, 1.0)  # RandomResizedCrop area share range (lo, hi), 0 < lo <= hi <= 1
    crop_ratio: tuple[float, float] = (0.75, 1.3333333333333333)  # RandomResizedCrop aspect (w / h) range
    prefetch_factor: int = 4  # micro-batches each loader worker prepares ahead (unused with num_workers=0)
    mix_chunk: int = 1000  # stream positions per mixing chunk; each holds every source's weight quota
    jpeg_draft: bool = True  # decode JPEGs at 1/2-1/8 scale when the crop needs no more pixels

    def __post_init__(self) -> None:
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"data.crop_scale must satisfy 0 < lo <= hi <= 1, got {self.crop_scale}")
        if self.num_workers < 0:
            raise ValueError("data.num_workers must be >= 0")


@dataclass
class OptimConfig:
    """AdamW with per-iteration linear warmup + half-cycle cosine, lr scaled by batch size."""

    lr: float = 8e-3  # peak lr at `ref_batch_size` (1e-3 at batch 32), scaled to the real global batch
    ref_batch_size: int = 256  # the global batch `lr` is given at
    scaling: str = "linear"  # linear | sqrt | none: how lr follows batch_size / ref_batch_size
    min_lr: float = 0.0  # lr at the end of the cosine decay
    betas: tuple[float, float] = (0.9, 0.95)  # AdamW (beta1, beta2)
    eps: float = 1e-8  # AdamW epsilon
    weight_decay: float = 0.05  # AdamW decay of >= 2-D weights (biases and norm weights: none)
    warmup_steps: int = 20  # optimizer steps of linear warmup to the peak lr
    clip_grad: float = 0.0  # 0 = no clipping (the paper's setting)
    fused: bool = True  # fused AdamW kernel when every parameter allows it (no host sync per step)

    def __post_init__(self) -> None:
        if self.scaling not in ("linear", "sqrt", "none"):
            raise ValueError(f"optim.scaling must be linear | sqrt | none, got {self.scaling!r}")
        if self.lr <= 0 or self.min_lr < 0:
            raise ValueError("optim.lr must be > 0 and optim.min_lr >= 0")
        if self.warmup_steps < 0 or self.clip_grad < 0:
            raise ValueError("optim.warmup_steps and optim.clip_grad must be >= 0")


@dataclass
class CurationConfig:
    """The paper's self-curation: histogram-entropy and min-resolution filters, loss-based sampling."""

    entropy_threshold: float = 0.0  # drop images with colour-histogram entropy (bits) <= this; 0 = off
    min_resolution: int = 0  # drop images whose shorter side is below this (px); 0 = off
    scores: str | None = None  # per-sample losses written by `python -m pixio_robot.pretrain.score`
    tau: float = 1.0  # keep probability min(loss / tau, 1), re-drawn each pass
    max_consecutive_drops: int = 5000  # error out when this many draws in a row from one source are unusable
    require_scores: bool = False  # set by curation=scores: a run without `scores` is an error

    def __post_init__(self) -> None:
        if self.require_scores and not self.scores:
            raise ValueError("curation=scores needs curation.scores=<scores.parquet>, written by "
                             "`python -m pixio_robot.pretrain.score checkpoint=<run dir> scores=scores.parquet`")
        if self.entropy_threshold < 0 or self.min_resolution < 0:
            raise ValueError("curation.entropy_threshold and curation.min_resolution must be >= 0")
        if self.tau <= 0:
            raise ValueError(f"curation.tau must be > 0, got {self.tau}")


@dataclass
class DistillConfig:
    """Feature distillation from a frozen teacher (the paper's way to B/L/H/1B): set `teacher` and
    the run trains `model`'s encoder (plus a projector) on the teacher's last-block tokens instead
    of an MAE. The student sees `mask_ratio` of its 4x4 blocks hidden (paper: 0.5 for H / 1B, 0 for
    B / L); the loss is cls_weight x class-token + (1 - cls_weight) x patch-token cosine distance."""

    teacher: str | None = None  # anything `load_encoder` reads: run dir, encoder dir, official .pth
    mask_ratio: float = 0.0  # share of the student's mask blocks hidden, in [0, 1); 0: no masking
    mask_block: int = 4  # side of a mask block (patches), used when mask_ratio > 0
    cls_weight: float = 0.5  # loss weight of the class tokens, in [0, 1]; patch tokens get 1 - cls_weight
    projector_hidden: int | None = None  # hidden width of the projector head; None: the teacher's width
    required: bool = False  # set by experiment=distill_*: a run without `teacher` is an error

    def __post_init__(self) -> None:
        if self.required and not self.teacher:
            raise ValueError("this experiment distils: name the teacher with distill.teacher=<encoder> (a pretraining "
                             "run, an encoder directory or an official .pth such as pixio_vit5b16.pth)")
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ValueError(f"distill.mask_ratio must be in [0, 1), got {self.mask_ratio}")
        if not 0.0 <= self.cls_weight <= 1.0:
            raise ValueError(f"distill.cls_weight must be in [0, 1], got {self.cls_weight}")


@dataclass
class LoggerConfig:
    """Where scalars and images go, and how often."""

    log_every: int = 10  # scalars are read from the device only every N steps
    tensorboard: bool = True  # TensorBoard events in <run_dir>/tb
    wandb: bool = False  # also log to Weights & Biases (needs `wandb login` or WANDB_MODE=offline)
    wandb_project: str = "pixio_robot"  # W&B project name (with wandb=true)
    recon_every: int = 100  # reconstruction grid PNG every N steps (0 = only at the end)
    recon_images: int = 8  # images of the last micro-batch shown in the reconstruction grid
    progress: bool = True  # progress bars (steps, sim rendering) on rank 0


@dataclass
class PretrainConfig:
    """Root schema: groups model / data / optim / curation / logger plus run settings."""

    model: ModelConfig = field(default_factory=ModelConfig)  # the MAE (or distillation student) trained (group `model`)
    data: DataConfig = field(default_factory=DataConfig)  # image sources, augmentation, loader (group `data`)
    optim: OptimConfig = field(default_factory=OptimConfig)  # AdamW, lr scaling and schedule (group `optim`)
    curation: CurationConfig = field(default_factory=CurationConfig)  # filters, loss-based sampling (group `curation`)
    logger: LoggerConfig = field(default_factory=LoggerConfig)  # scalars, recon grids, progress (group `logger`)
    distill: DistillConfig = field(default_factory=DistillConfig)  # feature distillation from a frozen teacher
    name: str = "tiny_cpu"  # run name (the default run_dir is runs/pretrain/<name>)
    run_dir: str = "runs/pretrain/${name}"  # checkpoints, encoder/, results.json, tb/, recon/
    seed: int = 0  # initial weights, data order, crops, masks, sim corpus (part of the run's identity)
    steps: int = 200  # optimizer steps in all (a resumed run continues up to it)
    batch_size: int = 32  # global batch per optimizer step (all ranks, all accumulation steps)
    micro_batch_size: int | None = None  # per rank and forward pass; None = batch_size / world size;
                                         # 0 = auto: the largest divisor of the per-rank batch that fits the GPU
    amp: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | bf16 | fp16 | none
    compile: bool = False  # torch.compile each transformer block (and a distill teacher's), with compile_mode
    compile_mode: str = "default"  # default | max-autotune-no-cudagraphs | reduce-overhead | max-autotune
    activation_checkpointing: bool = False  # recompute block activations in backward (memory for compute)
    parallel: str = "ddp"  # ddp | fsdp (FSDP2 fully_shard; also single-process: bf16 params, offload) | hsdp
    fsdp_cpu_offload: bool = False  # FSDP2: fp32 weights, grads and AdamW states in host memory
    hsdp_shard_size: int = 0  # hsdp: ranks per shard group (0 = GPUs per node, LOCAL_WORLD_SIZE)
    device: str = "auto"  # auto (this rank's GPU, else cpu) | cpu | cuda[:i]
    num_threads: int | None = None  # torch threads per process on CPU (null: cores / local ranks - loader workers)
    ckpt_every: int = 100  # optimizer steps between checkpoints (one is also written at the last step)
    keep_last: int = 2  # checkpoints kept in <run_dir>/checkpoints (older ones deleted)
    ckpt_format: str = "full"  # full (safetensors, gathered on rank 0) | sharded (DCP, every rank writes its shards)
    resume: bool = True  # re-running the same command continues from the last checkpoint
    max_nonfinite: int = 3  # stop after this many non-finite losses in a row
    export_encoder: bool = True  # at the end write <run_dir>/encoder/ (save_encoder format; distill: the student)
    plan_only: bool = False  # print memory / FLOPs / step time of this config and exit (no data, no weights)
    plan_device_gib: float = 0.0  # plan_only / micro_batch_size=0: the card to plan for (0 = this GPU)
    plan_world_size: int = 0  # plan_only: ranks to plan for (0 = this launch's)

    def __post_init__(self) -> None:
        name = self.model.name
        if self.distill.teacher:
            if not name.startswith(("pixio_mae_", "pixio_vit")):
                raise ValueError(f"model.name={name}: a distillation student is a Pixio encoder (pixio_vit*, or "
                                 "the encoder of a pixio_mae_* model, e.g. model=pixio_small)")
            if self.plan_only or self.micro_batch_size == 0:
                raise ValueError("plan_only and micro_batch_size=0 plan MAE pretraining, not distillation: "
                                 "set micro_batch_size explicitly")
        elif not name.startswith(("pixio_mae_", "mae_")):
            raise ValueError(f"model.name={name} is not a pretraining model: pretraining needs an MAE "
                             "(pixio_mae_* or mae_*, e.g. pixio_mae_tiny, pixio_mae_vitb16; or model=pixio_b16), "
                             "or distill.teacher=<encoder> to distil into this encoder")
        if self.micro_batch_size is not None and self.micro_batch_size < 0:
            raise ValueError("micro_batch_size must be >= 1, 0 (auto: fit the GPU) or null (batch / world size)")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be >= 1")
        # the default names the run after `name`; Hydra interpolates it, a config built in Python
        # (PretrainConfig(name="x")) must too, or the run dir is a folder literally named ${name}
        self.run_dir = str(self.run_dir).replace("${name}", self.name)
        if self.amp not in ("auto", "bf16", "fp16", "none"):
            raise ValueError(f"amp must be auto | bf16 | fp16 | none, got {self.amp!r}")
        if self.parallel not in ("ddp", "fsdp", "hsdp"):
            raise ValueError(f"parallel must be ddp | fsdp | hsdp, got {self.parallel!r}")
        if self.fsdp_cpu_offload and self.parallel == "ddp":
            raise ValueError("fsdp_cpu_offload=true needs parallel=fsdp (or hsdp)")
        modes = ("default", "max-autotune-no-cudagraphs", "reduce-overhead", "max-autotune")
        if self.compile_mode not in modes:
            raise ValueError(f"compile_mode must be one of {modes}, got {self.compile_mode!r}")
        if self.hsdp_shard_size < 0:
            raise ValueError("hsdp_shard_size must be >= 0 (0 = GPUs per node)")
        if self.ckpt_format not in ("full", "sharded"):
            raise ValueError(f"ckpt_format must be full | sharded, got {self.ckpt_format!r}")
        if self.keep_last < 1 or self.ckpt_every < 1:
            raise ValueError("keep_last and ckpt_every must be >= 1")


@dataclass
class ScoreConfig:
    """`python -m pixio_robot.pretrain.score`: per-sample reconstruction losses of a checkpoint."""

    checkpoint: str = MISSING  # a pretraining run dir, checkpoint dir or `save_model` directory
    scores: str = "scores.parquet"  # the parquet file written (the same key curation reads: curation.scores=)
    data: DataConfig = field(default_factory=DataConfig)  # the images scored: data.sources (crop, loader keys unused)
    image_size: int | None = None  # None: the model's
    batch_size: int = 64  # images per forward pass
    num_masks: int = 2  # masks averaged per image
    seed: int = 0  # mask noise (drawn per sample id), the sim corpus rendered, webdataset shard order
    max_samples: int | None = None  # stop after this many samples; None: every sample of every source once
    device: str = "auto"  # auto (cuda when available, else cpu) | cpu | cuda[:i]

    def __post_init__(self) -> None:
        if self.num_masks < 1 or self.batch_size < 1:
            raise ValueError("score: num_masks and batch_size must be >= 1")


def register_configs() -> None:
    """Put the schemas in hydra's ConfigStore (idempotent)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="pretrain_schema", node=PretrainConfig)
    cs.store(name="score_schema", node=ScoreConfig)
    cs.store(group="data/source", name="schema", node=SourceConfig)


try:  # importing the schema module registers it (every entry does the same) ...
    register_configs()
except ImportError:  # ... unless hydra is absent (a bare GPU image running benchmarks/ with torch+timm);
    pass  # the dataclasses still work, and every CLI entry calls register_configs() itself
