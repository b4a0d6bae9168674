"""The quick suite end to end on tiny settings (real MetaWorld, LeRobotDataset, training, rollouts),
its resume, and the evaluate entry on the policy it trained."""

import json

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

pytest.importorskip("metaworld")
pytest.importorskip("pixio_robot.data")


def shared_demo_root(tmp_path_factory):
    """One demo folder for the session: the quickstart test reuses these demos (same keyed dir)."""
    return tmp_path_factory.getbasetemp() / "shared_demos"


@pytest.mark.slow
def test_quick_suite_end_to_end_resume_and_evaluate(tmp_path, tmp_path_factory):
    from pixio_robot.benchmark import run_benchmark
    from pixio_robot.evaluate import EvaluateConfig, run_evaluate
    from pixio_robot.evaluation.results import read_episodes_csv
    from pixio_robot.evaluation.video import count_video_frames

    overrides = ["suite=quick", "envs=[metaworld/drawer-open-v3]", "suite.n_demos=2", "suite.epochs=2",
                 "suite.eval_every_epochs=1", "suite.n_episodes=1", "n_envs=1", f"run_dir={tmp_path / 'bench'}",
                 f"data_root={shared_demo_root(tmp_path_factory)}", f"cache_dir={tmp_path / 'cache'}",
                 "progress=false", "num_threads=1"]
    with initialize_config_module("pixio_robot.configs.benchmark", version_base="1.3"):
        cfg = OmegaConf.to_object(compose("config", overrides=overrides))
    out = run_benchmark(cfg)
    assert out["cells"] == 1 and out["done"] == 1 and out["failed"] == []
    cell_file = next((tmp_path / "bench" / "cells").glob("*.json"))
    rec = json.loads(cell_file.read_text())
    assert rec["status"] == "done" and rec["task"] == "metaworld/drawer-open-v3" and rec["seed"] == 100
    assert [c[0] for c in rec["curve"]] == [1, 2]  # rollouts after epochs 1 and 2
    assert rec["best_success"] == max(c[1] for c in rec["curve"]) and rec["final_success"] == rec["curve"][-1][1]
    assert rec["n_eval_episodes"] == 1
    assert rec["cache"] == "miss" and rec["final_train_loss"] > 0
    md = (tmp_path / "bench" / "report" / "results.md").read_text()
    assert "metaworld/drawer-open-v3" in md and "pixio_test_random" in md
    assert len((tmp_path / "bench" / "report" / "results.csv").read_text().splitlines()) == 1 + 4

    # resume: the finished cell is skipped (its record and its training run are left untouched)
    before = cell_file.read_text()
    train_results = tmp_path / "bench" / "runs" / rec["key"] / "results.json"
    mtime = train_results.stat().st_mtime_ns
    assert run_benchmark(cfg)["done"] == 1
    assert cell_file.read_text() == before and train_results.stat().st_mtime_ns == mtime
    # the report leaves out a cell run with other settings (report_only after an encoder change)
    from pixio_robot.benchmark import cell_fingerprint
    from pixio_robot.evaluation.grid import make_cells

    with initialize_config_module("pixio_robot.configs.benchmark", version_base="1.3"):
        other = OmegaConf.to_object(compose("config", overrides=[*overrides, "encoders.0.init_seed=7",
                                                                 "report_only=true"]))
        more_seeds = OmegaConf.to_object(compose("config", overrides=[*overrides, "suite.seeds=[100,200]"]))
    stale = run_benchmark(other)
    assert stale["stale"] == [rec["key"]] and stale["done"] == 0
    assert cell_file.read_text() == before
    cell = make_cells(["metaworld/drawer-open-v3"], [cfg.encoders[0].label], [100])[0]
    assert cell_fingerprint(more_seeds, cell) == cell_fingerprint(cfg, cell)  # another seed: this cell stays

    # the evaluate entry on the trained policy: env / image size from its config, subprocess envs
    s = run_evaluate(EvaluateConfig(policy=rec["policy_dir"], n_episodes=3, n_envs=2, max_episode_steps=8,
                                    n_videos=1, vector_mode="subproc", progress=False,
                                    run_dir=str(tmp_path / "eval")))
    assert s["env_name"] == "metaworld/drawer-open-v3" and s["n_episodes"] == 3 and s["lengths"] == [8, 8, 8]
    assert s["n_errors"] == 0 and 0.0 <= s["success_ci"][0] <= s["success_rate"] <= s["success_ci"][1]
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["image_size"] == 64 and summary["seed"] == 1000
    rows = read_episodes_csv(tmp_path / "eval" / "episodes.csv")
    assert [r.seed for r in rows] == [1000, 1001, 1002]
    assert count_video_frames(rows[0].video) == 9
