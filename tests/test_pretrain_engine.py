"""Pretraining configs (every one composes), optimizer groups, schedule, non-finite handling."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from pixio_robot.models import create_model
from pixio_robot.pretrain.config import OptimConfig, PretrainConfig, register_configs
from pixio_robot.pretrain.engine import Engine, build_optimizer, lr_at, param_groups, scaled_lr

CONFIG_DIR = Path(__file__).resolve().parents[1] / "pixio_robot" / "configs" / "pretrain"
register_configs()


def compose_cfg(overrides: list[str]) -> PretrainConfig:
    with initialize_config_module("pixio_robot.configs.pretrain", version_base="1.3"):
        return OmegaConf.to_object(compose("config", overrides=overrides))


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml")))
def test_every_experiment_composes(experiment):
    extra = [] if experiment in ("tiny_cpu", "test") else ["data.sources.web.path='/data/{000..009}.tar'"]
    if experiment.startswith("distill_"):
        with pytest.raises(ValueError, match="distill.teacher=<encoder>"):  # the teacher must be named
            compose_cfg([f"experiment={experiment}", *extra])
        extra.append("distill.teacher=/weights/pixio_vit5b16.pth")
    cfg = compose_cfg([f"experiment={experiment}", *extra])
    assert isinstance(cfg, PretrainConfig) and cfg.name == experiment
    if experiment.startswith("distill_"):  # the paper's distillation recipe
        assert cfg.batch_size == 8192 and cfg.steps == 500000 and cfg.distill.mask_ratio == 0.0
        assert scaled_lr(cfg.optim, cfg.batch_size) == pytest.approx(1e-3) and cfg.model.image_size == 256
    if experiment.startswith("pixio_"):  # the paper's recipe
        assert cfg.batch_size == 16384 and cfg.steps == 1284000 and cfg.optim.warmup_steps == 128400
        assert cfg.optim.lr == 8e-4 and scaled_lr(cfg.optim, cfg.batch_size) == pytest.approx(8e-4)
        assert cfg.model.mask_block == 4 and cfg.model.image_size == 256 and cfg.curation.entropy_threshold == 4.5
        assert cfg.parallel == ("fsdp" if experiment in ("pixio_1b16", "pixio_5b16") else "ddp")


@pytest.mark.parametrize("group", ["model", "data", "optim", "curation", "logger"])
def test_every_group_option_composes(group):
    for p in sorted((CONFIG_DIR / group).glob("*.yaml")):
        extra = {"folder": ["data.sources.folder.path=/x"], "webdataset": ["data.sources.web.path=/x"],
                 "sim_and_folder": ["data.sources.folder.path=/x"], "lerobot": ["data.sources.lerobot.path=/x"],
                 "scores": ["curation.scores=/x.parquet"]}.get(p.stem, [])
        cfg = compose_cfg([f"{group}={p.stem}", *extra])
        assert isinstance(cfg, PretrainConfig)
    if group == "model":
        for p in sorted((CONFIG_DIR / "model").glob("pixio_*.yaml")):
            m = compose_cfg([f"model={p.stem}"]).model
            if m.name.endswith(("test", "tiny")):
                assert create_model(m.name, **m.create_kwargs()).masking.num_blocks > 1


def test_unknown_keys_and_bad_values_fail_with_a_message():
    with pytest.raises(Exception, match="foo"):
        compose_cfg(["model.foo=1"])
    with pytest.raises(Exception, match="amp must be"):
        compose_cfg(["amp=fp8"])
    with pytest.raises(Exception, match="needs `path`"):
        compose_cfg(["data=folder", "data.sources.folder.path="])


def test_param_groups_and_schedule():
    model = create_model("pixio_mae_test", img_size=64)
    decay, no_decay = param_groups(model, 0.05)
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim <= 1 for p in no_decay["params"])
    assert no_decay["weight_decay"] == 0 and len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    cfg = OptimConfig(lr=1e-3, ref_batch_size=256)
    assert scaled_lr(cfg, 512) == pytest.approx(2e-3)
    assert scaled_lr(OptimConfig(lr=1e-3, scaling="sqrt"), 1024) == pytest.approx(2e-3)
    lrs = [lr_at(s, 100, 1.0, 10, 0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0) and lrs[55] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:])) and lrs[-1] > 0.1


def _engine(clip=0.0):
    torch.manual_seed(0)
    model = create_model("pixio_mae_test", img_size=64)
    opt = build_optimizer(model, OptimConfig(lr=1e-2, warmup_steps=0), 1e-2)
    return model, Engine(model, model, opt, device=torch.device("cpu"), amp="none", clip_grad=clip, accum=1)


def _batch(b=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"images": torch.randint(0, 256, (b, 3, 64, 64), dtype=torch.uint8, generator=g),
            "noise": torch.rand(b, 4, generator=g)}


@pytest.mark.parametrize("clip", [0.0, 1.0])
def test_nonfinite_step_is_skipped_on_device(clip):
    model, engine = _engine(clip)
    assert engine.fused  # the skip happens inside the fused kernel, without a host sync
    engine.step([_batch()], 1e-2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt_before = {id(p): {k: v.clone() for k, v in s.items()} for p, s in engine.opt.state.items()}
    hook = model.decoder_pred.register_forward_hook(lambda m, i, o: o * float("nan"))
    out = engine.step([_batch(seed=1)], 1e-2, want_norm=True)
    hook.remove()
    assert not bool(out.finite)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    for p, s in engine.opt.state.items():
        assert all(torch.equal(opt_before[id(p)][k], v) for k, v in s.items())
    out = engine.step([_batch(seed=2)], 1e-2)
    assert bool(out.finite) and not torch.equal(before["decoder_pred.weight"], model.decoder_pred.weight)


def test_accumulation_matches_one_big_batch():
    big = _batch(8, seed=3)
    halves = [{k: v[:4] for k, v in big.items()}, {k: v[4:] for k, v in big.items()}]
    m1, e1 = _engine()
    m2, e2 = _engine()
    o1, o2 = e1.step([big], 1e-2), e2.step(halves, 1e-2)
    assert float(o1.loss) == pytest.approx(float(o2.loss), abs=1e-6)
    # first moments = (1 - beta1) * gradient: the accumulated gradient equals the big batch's
    # (weights are not compared: Adam turns round-off in zero gradients, e.g. key biases, into +-lr)
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        a, b = e1.opt.state[p1]["exp_avg"], e2.opt.state[p2]["exp_avg"]
        assert torch.allclose(a, b, atol=1e-7, rtol=1e-4)


def test_sources_can_be_added_from_the_command_line():
    cfg = compose_cfg(["data=webdataset", "data.sources.web.path='/d/{0..3}.tar'", "+data/source@data.sources.extra=folder",
                       "data.sources.extra.path=/imgs", "data.sources.extra.weight=0.25"])
    assert set(cfg.data.sources) == {"web", "extra"} and cfg.data.sources["web"].path == "/d/{0..3}.tar"
    assert cfg.data.sources["extra"].type == "folder" and cfg.data.sources["extra"].weight == 0.25


READS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "numpy")


def _count_host_reads(monkeypatch) -> list[str]:
    """Record every Python-level read of a tensor's value (a host sync on a GPU)."""
    seen: list[str] = []
    for name in READS:
        orig = getattr(torch.Tensor, name)

        def wrapper(self, *a, _orig=orig, _name=name, **k):
            seen.append(_name)
            return _orig(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, wrapper)
    return seen


@pytest.mark.parametrize("clip,accum", [(0.0, 1), (1.0, 1), (1.0, 2)])
def test_step_never_reads_device_values(monkeypatch, clip, accum):
    """The step (prepare, forward, backward, clipping, skip-on-non-finite, fused AdamW) issues no
    `.item()` / `bool()` / `float()`: on a GPU it never waits for the device."""
    model, engine = _engine(clip)
    engine.step([_batch()], 1e-2)  # AdamW state is created on the first step
    seen = _count_host_reads(monkeypatch)
    batches = [_batch(seed=s) for s in range(accum)]
    for s in range(3):
        out = engine.step(batches, 1e-2, want_norm=s == 1)
    assert seen == [], seen
    engine.fused = False  # the counter does see a sync: the unfused path's `if finite`
    engine.step(batches, 1e-2)
    monkeypatch.undo()
    assert seen == ["__bool__"]
    assert bool(out.finite) and (out.grad_norm is not None or clip == 0.0)


def test_scalar_reports_wait_for_the_copy_and_still_stop_a_diverged_run(tmp_path):
    """Logged scalars are read only once their device->host copy has landed (CUDA event query),
    in order; a diverged run still raises when its scalars are read."""
    from pixio_robot.pretrain.loop import NonFiniteLossError, _ScalarReports

    class Event:
        def __init__(self):
            self.done = False

        def query(self):
            return self.done

        def synchronize(self):
            self.done = True

    logged = []

    class Logger:
        def scalars(self, step, scalars):
            logged.append((step, scalars["train/loss"]))

    class Bar:
        def set_postfix(self, **kw):
            pass

    reports = _ScalarReports(PretrainConfig(max_nonfinite=3), Logger(), Bar(), tmp_path, None)
    first, second = Event(), Event()
    host = {"train/lr": 1e-3, "train/images_per_s": 10.0, "data/keep_rate": 1.0}
    reports.pending.append((10, torch.tensor([5.0, 10.0, 0.0, 0.0, 1.5]), first, host))
    reports.pending.append((20, torch.tensor([4.0, 10.0, 0.0, 0.0, float("nan")]), second, host))
    reports.drain()
    assert logged == [] and len(reports.pending) == 2  # nothing landed yet: the host does not wait
    second.done = True
    reports.drain()
    assert logged == []  # still in order: step 10 first
    first.done = True
    reports.drain()
    assert logged == [(10, 0.5), (20, 0.4)] and reports.loss_start == 0.5 and reports.history[-1] == (20, 0.4)
    reports.pending.append((30, torch.tensor([0.0, 0.0, 3.0, 3.0, float("nan")]), Event(), host))
    with pytest.raises(NonFiniteLossError, match="3 non-finite losses in a row at step 30"):
        reports.drain(wait=True)


def test_run_dir_default_names_the_run_also_outside_hydra():
    from pixio_robot.pretrain.config import PretrainConfig

    assert PretrainConfig(name="my_run").run_dir == "runs/pretrain/my_run"  # not a folder named ${name}
    assert PretrainConfig(name="x", run_dir="/tmp/elsewhere").run_dir == "/tmp/elsewhere"
