"""The memory / step-time plan: its activation constant is what the project's block really saves,
its static bytes are what AdamW really holds, and it predicts BENCHMARKS.md's measured peaks."""

from __future__ import annotations

import pytest
import torch

from pixio_robot.models import create_model
from pixio_robot.models.blocks import Block
from pixio_robot.pretrain.config import OptimConfig
from pixio_robot.pretrain.engine import build_optimizer
from pixio_robot.pretrain.plan import (
    ACT_BYTES_BF16,
    ACT_BYTES_FP32,
    count_params,
    fits_message,
    flops_per_image,
    max_micro_batch,
    plan_memory,
    step_time_on_paper,
)


def _saved_bytes(module, x, bf16: bool) -> int:
    storages: dict[int, int] = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            module(x)
    return sum(storages.values())


@pytest.mark.parametrize("dim,heads,tokens", [(192, 3, 72), (512, 16, 264)])
@pytest.mark.parametrize("bf16", [True, False])
def test_activation_bytes_per_token_and_width_are_measured(dim, heads, tokens, bf16):
    blk = Block(dim, heads, 4.0, True, 0.0, 1e-6)
    b = 4
    saved = _saved_bytes(blk, torch.randn(b, tokens, dim, requires_grad=True), bf16)
    weights = sum(p.numel() for p in blk.parameters()) * (2 if bf16 else 4)  # autocast's copies / fp32 weights
    per = (saved - weights) / (b * tokens * dim)
    assert per == pytest.approx(ACT_BYTES_BF16 if bf16 else ACT_BYTES_FP32, rel=0.02)


def test_static_bytes_are_what_adamw_holds():
    model = create_model("pixio_mae_test", img_size=64)
    total, largest = count_params(model.config)
    assert total == sum(p.numel() for p in model.parameters())
    assert largest == max(sum(p.numel() for p in b.parameters()) for b in [*model.encoder.blocks, *model.decoder_blocks])
    opt = build_optimizer(model, OptimConfig(), 1e-3)
    loss, _, _ = model(torch.randn(2, 3, 64, 64))
    loss.backward()
    opt.step()
    held = sum(p.numel() * 4 + p.grad.numel() * 4 for p in model.parameters())
    held += sum(v.numel() * v.element_size() for s in opt.state.values() for k, v in s.items() if k != "step")
    plan = plan_memory(model.config, 1, bf16=False)
    assert plan.device_states_gib * 2**30 == pytest.approx(held, rel=1e-6)
    sharded = plan_memory(model.config, 1, bf16=False, fsdp=True, world=4)
    assert sharded.device_states_gib == pytest.approx(plan.device_states_gib / 4)
    off = plan_memory(model.config, 1, fsdp=True, offload=True)
    assert off.device_states_gib == 0 and off.host_gib == pytest.approx(plan.device_states_gib)


# BENCHMARKS.md: the reference loop's peak GiB on one H200, bf16 autocast, 256 px
@pytest.mark.parametrize("name,batch,measured", [("pixio_mae_vitb16", 256, 47.7), ("pixio_mae_vitl16", 128, 32.8),
                                                 ("pixio_mae_vith16", 64, 26.1), ("pixio_mae_vitb16", 512, 90.8)])
def test_plan_predicts_measured_reference_peaks(name, batch, measured):
    with torch.device("meta"):
        cfg = create_model(name, img_size=256).config
    assert plan_memory(cfg, batch).total_gib == pytest.approx(measured, rel=0.10)


def test_flops_match_benchmarks_and_5b_needs_sharding_or_offload_on_80gb():
    with torch.device("meta"):
        b16 = create_model("pixio_mae_vitb16", img_size=256).config
        big = create_model("pixio_mae_vit5b16", img_size=256).config
    f = flops_per_image(b16)
    assert f["total"] / 1e9 == pytest.approx(214, rel=0.02)  # BENCHMARKS.md: 214 GFLOP per image
    assert f["decoder_blocks"] / f["total"] == pytest.approx(0.8, abs=0.03)
    assert max_micro_batch(big, 80) == 0
    assert max_micro_batch(big, 80, fsdp=True, ac=True) == 0
    assert max_micro_batch(big, 80, fsdp=True, ac=True, offload=True) >= 16
    assert max_micro_batch(big, 141, fsdp=True, ac=True) >= 16
    msg = fits_message(plan_memory(big, 16), 80)
    assert "activation_checkpointing=true" in msg and "fsdp_cpu_offload=true" in msg
    assert fits_message(plan_memory(b16, 64), 141) is None


def test_hybrid_sharding_scales_where_full_sharding_is_bound_by_the_network():
    with torch.device("meta"):
        cfg = create_model("pixio_mae_vit1b16", img_size=256).config
    fl = 767e9
    one = step_time_on_paper(cfg, fl, 32, 1, ac=True)
    node = step_time_on_paper(cfg, fl, 32 * 8, 8, ac=True)
    full = step_time_on_paper(cfg, fl, 32 * 64, 64, ac=True, hybrid=False)
    hsdp = step_time_on_paper(cfg, fl, 32 * 64, 64, ac=True, hybrid=True)
    assert one["scaling_efficiency"] == 1.0 and node["scaling_efficiency"] > 0.9
    assert full["scaling_efficiency"] < 0.6 < 0.9 < hsdp["scaling_efficiency"]


def test_auto_micro_batch_fits_the_card_and_divides_the_batch():
    from pixio_robot.pretrain.config import ModelConfig, PretrainConfig
    from pixio_robot.pretrain.loop import _batch_math, auto_micro_batch

    def cfg(name, batch, **kw):
        return PretrainConfig(model=ModelConfig(name=name, image_size=256), batch_size=batch, micro_batch_size=0, **kw)

    plain = {"world": 8, "bf16": True, "fsdp": False, "ac": False, "offload": False}
    b16 = cfg("pixio_mae_vitb16", 2048)
    assert auto_micro_batch(b16, 8, 80.0, plain) == 256  # the whole per-rank batch fits (~49 GiB)
    half = auto_micro_batch(b16, 8, 40.0, plain)
    assert half == 128 and 256 % half == 0
    assert auto_micro_batch(b16, 8, None, plain) == 256  # CPU: no memory limit
    assert _batch_math(b16, 8) == (256, 1)  # on CPU auto means batch / world
    odd = auto_micro_batch(cfg("pixio_mae_vitb16", 8 * 96), 8, 40.0, plain)
    assert 96 % odd == 0 and odd == 96  # ~18 GiB: a divisor, not only powers of two
    with pytest.raises(ValueError, match="not even a micro-batch of 1 fits.*fsdp_cpu_offload=true"):
        auto_micro_batch(cfg("pixio_mae_vit5b16", 64), 1, 80.0, {**plain, "world": 1})
    big = auto_micro_batch(cfg("pixio_mae_vit5b16", 1024), 1, 80.0,
                           {"world": 1, "bf16": True, "fsdp": True, "ac": True, "offload": True})
    assert big >= 16 and 1024 % big == 0
    with pytest.raises(ValueError, match="micro_batch_size must be"):
        PretrainConfig(micro_batch_size=-1)


def test_plan_only_reports_without_touching_data_and_sees_accumulation(tmp_path):
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from pixio_robot.pretrain import run_pretrain
    from pixio_robot.pretrain.config import register_configs

    register_configs()

    def plan(*extra):
        with initialize_config_module("pixio_robot.configs.pretrain", version_base="1.3"):
            cfg = OmegaConf.to_object(compose("config", overrides=[
                "experiment=pixio_5b16", "data.sources.web.path=/nonexistent/shards", f"run_dir={tmp_path}/run",
                "plan_only=true", "plan_device_gib=80", *extra]))
        return run_pretrain(cfg)

    eight = plan("plan_world_size=8", "micro_batch_size=8")
    assert not (tmp_path / "run").exists()  # no run directory, no data read, no weights built
    assert eight["fits"] is True and eight["accumulation"] == 256 and eight["memory"]["params"] > 5e9
    sixty_four = plan("plan_world_size=8")  # the experiment's micro-batch
    assert sixty_four["micro_batch"] == 64 and sixty_four["images_per_s_on_paper"] > 1.2 * eight["images_per_s_on_paper"]
    one = plan("plan_world_size=1", "activation_checkpointing=true")
    assert one["fits"] is False and "fsdp_cpu_offload=true" in one["advice"]
    assert plan("plan_world_size=1", "fsdp_cpu_offload=true")["fits"] is True
