"""LeRobot benchmark suites (`suite.policy: act | diffusion`): a resnet18 column (LeRobot's built-in
policy and trunk) and a Pixio column in one grid, trained by the train entry, rolled out by the
evaluator, reported with the existing report (paired comparisons)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_lerobot_plugin import IMG, TINY_ACT, TINY_DIFFUSION, _write_dataset

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_git_lookup(monkeypatch):
    monkeypatch.setattr("pixio_robot.utils.run.git_revision", lambda *a, **k: "test")


@pytest.fixture(scope="module")
def pusht(tmp_path_factory) -> Path:
    return _write_dataset(tmp_path_factory.mktemp("suites") / "pusht", (IMG,), side=64, episodes=2, frames=12)


def _cfg(tmp_path, pusht, policy, options, **suite):
    from pixio_robot.benchmark import BenchmarkConfig
    from pixio_robot.evaluation.suites import EncoderSpec, SuiteConfig

    s = SuiteConfig(name=f"tiny_{policy}", envs=["lerobot/pusht"], policy=policy, dataset_root=str(pusht),
                    policy_options={k: v for k, v in options.items() if k != "device"}, epochs=1, batch_size=8,
                    n_episodes=1, max_episode_steps=8, image_size=64, seeds=[0], **suite)
    encoders = [EncoderSpec(label="resnet18", source="resnet18"),
                EncoderSpec(label="pixio_test", source="pixio", name="pixio_vittest", image_size=32)]
    return BenchmarkConfig(suite=s, encoders=encoders, run_dir=str(tmp_path / "bench"), n_envs=1, device="cpu",
                           data_root=str(tmp_path / "demos"), cache_dir=str(tmp_path / "cache"), progress=False)


@pytest.mark.slow
def test_act_suite_grid_compares_resnet18_with_pixio_in_one_report(tmp_path, pusht):
    from lerobot.policies.factory import get_policy_class

    from pixio_robot.benchmark import run_benchmark

    summary = run_benchmark(_cfg(tmp_path, pusht, "act", TINY_ACT))
    assert summary["cells"] == 2 and summary["done"] == 2 and not summary["failed"], summary
    cells = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "bench" / "cells").glob("*.json")}
    by_enc = {c["encoder"]: c for c in cells.values()}
    assert set(by_enc) == {"resnet18", "pixio_test"}
    for enc, typ in (("resnet18", "act"), ("pixio_test", "pixio_act")):
        c = by_enc[enc]
        assert c["status"] == "done" and c["policy_type"] == typ and c["n_eval_episodes"] == 1
        assert 0.0 <= c["final_success"] <= 1.0 and c["best_success"] == c["final_success"]
        assert json.loads((Path(c["eval_dir"]) / "summary.json").read_text())["n_episodes"] == 1
    # the resnet18 column is LeRobot's own `act` directory, loadable by LeRobot's API, trunk a ResNet
    pdir = Path(by_enc["resnet18"]["policy_dir"])
    assert json.loads((pdir / "config.json").read_text())["type"] == "act"
    policy = get_policy_class("act").from_pretrained(pdir)
    assert type(policy.model.backbone).__name__ == "IntermediateLayerGetter"
    assert policy.config.pretrained_backbone_weights is None and policy.config.dim_model == TINY_ACT["dim_model"]
    # one report: both columns in the table and a paired comparison between them
    md = Path(summary["report"]["markdown"]).read_text()
    header = next(line for line in md.splitlines() if line.startswith("| task |"))
    assert "resnet18" in header and "pixio_test" in header
    assert "## Paired comparisons" in md and any(line.startswith("- final:") and "resnet18" in line
                                                 and "pixio_test" in line for line in md.splitlines())
    # re-running resumes: nothing trains again
    again = run_benchmark(_cfg(tmp_path, pusht, "act", TINY_ACT))
    assert again["done"] == 2 and not again["failed"]


@pytest.mark.slow
def test_diffusion_suite_trains_lerobot_diffusion_for_the_resnet18_column(tmp_path, pusht):
    from lerobot.policies.factory import get_policy_class

    from pixio_robot.benchmark import run_benchmark

    opts = {**TINY_DIFFUSION, "crop_shape": [48, 48], "num_inference_steps": 2, "scheduler_warmup_steps": 0}
    cfg = _cfg(tmp_path, pusht, "diffusion", opts)
    cfg.encoders = cfg.encoders[:1]  # the pixio_diffusion column is the act test's twin; keep this one short
    summary = run_benchmark(cfg)
    assert summary["done"] == 1 and not summary["failed"], summary
    (cell,) = [json.loads(p.read_text()) for p in (tmp_path / "bench" / "cells").glob("*.json")]
    assert cell["policy_type"] == "diffusion"
    policy = get_policy_class("diffusion").from_pretrained(cell["policy_dir"])
    assert list(policy.config.crop_shape) == [48, 48] and policy.config.pretrained_backbone_weights is None


def test_resnet18_column_needs_a_lerobot_suite_and_options_need_a_lerobot_policy(tmp_path, pusht):
    from pixio_robot.benchmark import BenchmarkConfig
    from pixio_robot.evaluation.suites import EncoderSpec, SuiteConfig

    with pytest.raises(ValueError, match="need a LeRobot suite"):
        BenchmarkConfig(suite=SuiteConfig(), encoders=[EncoderSpec(label="r", source="resnet18")])
    with pytest.raises(ValueError, match="suite.policy_options are LeRobot config fields"):
        SuiteConfig(policy_options={"chunk_size": 4})
    with pytest.raises(ValueError, match="suite.policy must be one of"):
        SuiteConfig(policy="vqbet")
    s = SuiteConfig(envs=["lerobot/pusht"], policy="pixio_diffusion")
    assert s.lerobot == "diffusion" and s.lerobot_type(EncoderSpec(source="resnet18")) == "diffusion"
    assert s.lerobot_type(EncoderSpec()) == "pixio_diffusion"


def test_lerobot_suite_configs_compose():
    from hydra import compose, initialize_config_module

    from pixio_robot.utils.cli import to_config

    for suite, policy in (("pusht_diffusion", "diffusion"), ("aloha_act", "act")):
        with initialize_config_module("pixio_robot.configs.benchmark", version_base="1.3"):
            cfg = to_config(compose("config", overrides=[f"suite={suite}", "encoders=resnet18_vs_pixio"]))
        assert cfg.suite.policy == policy and [e.source for e in cfg.encoders] == ["resnet18", "pixio"]
        assert cfg.run_dir == f"runs/benchmark/{suite}"


def test_pusht_scripted_pusher_moves_the_block_to_the_goal():
    from pixio_robot.envs.experts import make_expert
    from pixio_robot.envs.pusht_expert import PushTPusherExpert
    from pixio_robot.evaluation.experts import measure_expert

    assert isinstance(make_expert("lerobot/pusht"), PushTPusherExpert)
    r = measure_expert("lerobot/pusht", 6, seed=0)  # seed 5 reaches 95% coverage in ~40 steps
    assert r["successes"] >= 1 and r["mean_steps_to_success"] < 100, r


def test_resnet18_column_may_start_from_torchvision_weights(tmp_path, pusht):
    """`path` of a resnet18 column becomes LeRobot's `pretrained_backbone_weights` (ImageNet's when the
    user has them); without it the trunk is random init and nothing downloads."""
    from lerobot.policies.act.configuration_act import ACTConfig

    from pixio_robot.benchmark.lerobot import lerobot_train_config
    from pixio_robot.evaluation.grid import Cell
    from pixio_robot.evaluation.suites import EncoderSpec

    cfg = _cfg(tmp_path, pusht, "act", TINY_ACT)
    cell = Cell("lerobot/pusht", "resnet18", 0)
    imagenet = EncoderSpec(label="resnet18_in1k", source="resnet18", path="ResNet18_Weights.IMAGENET1K_V1")
    tc = lerobot_train_config(cfg, cell, imagenet, pusht, tmp_path / "r")
    assert tc.policy.type == "act" and tc.policy.options["pretrained_backbone_weights"] == imagenet.path
    assert ACTConfig(**{k: v for k, v in tc.policy.options.items() if k != "device"}).pretrained_backbone_weights \
        == "ResNet18_Weights.IMAGENET1K_V1"  # a field LeRobot's ACT takes as it is
    plain = lerobot_train_config(cfg, cell, EncoderSpec(label="resnet18", source="resnet18"), pusht, tmp_path / "r")
    assert "pretrained_backbone_weights" not in plain.policy.options  # the train entry sets None: random init
    pixio = lerobot_train_config(cfg, Cell("lerobot/pusht", "pixio_test", 0), cfg.encoders[1], pusht, tmp_path / "p")
    assert "pretrained_backbone_weights" not in pixio.policy.options


@pytest.mark.slow
def test_aloha_act_suite_runs_both_trunks_end_to_end(tmp_path):
    """The aloha_act suite at toy size: scripted transfer-cube demos, LeRobot's ACT with its
    ResNet-18 and pixio_act with a frozen Pixio trunk, rolled out on ALOHA, one report."""
    pytest.importorskip("gym_aloha")
    from hydra import compose, initialize_config_module

    from pixio_robot.benchmark import run_benchmark
    from pixio_robot.data import open_dataset
    from pixio_robot.utils.cli import to_config

    overrides = ["suite=aloha_act", "encoders=resnet18_vs_pixio", f"run_dir={tmp_path / 'bench'}",
                 f"data_root={tmp_path / 'demos'}", f"cache_dir={tmp_path / 'cache'}", "suite.n_demos=2",
                 "suite.only_success=false", "suite.epochs=1", "suite.n_episodes=1", "suite.max_episode_steps=20",
                 "suite.image_size=32", "encoders.1.image_size=32", "encoders.1.name=pixio_vittest",
                 "suite.seeds=[0]", "n_envs=1", "progress=false", "device=cpu"]
    with initialize_config_module("pixio_robot.configs.benchmark", version_base="1.3"):
        cfg = to_config(compose("config", overrides=overrides))
    out = run_benchmark(cfg)
    cells = {p.stem.split("__")[1]: json.loads(p.read_text()) for p in (tmp_path / "bench" / "cells").glob("*.json")}
    assert set(cells) == {"resnet18", "pixio"} and all(c["status"] == "done" for c in cells.values()), out
    assert cells["resnet18"]["policy_type"] == "act" and cells["pixio"]["policy_type"] == "pixio_act"
    assert cells["pixio"]["cache"] == "miss"  # the frozen trunk's maps were cached, then trained on
    demos = open_dataset(cells["resnet18"]["demos"])
    assert demos.meta.total_episodes == 2 and demos.meta.total_frames == 40
    assert demos.meta.camera_keys == ["observation.image"]  # the suite's one camera (top)
    summary = json.loads((Path(cells["pixio"]["eval_dir"]) / "summary.json").read_text())
    assert summary["env_name"] == "lerobot/aloha-transfer-cube" and summary["lengths"] == [20]
    assert "resnet18 vs pixio" in (tmp_path / "bench" / "report" / "results.md").read_text()
