"""End-to-end pretraining runs on CPU: outputs, loss falls, divergence stops, SIGKILL + resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from pixio_robot.models import load_encoder
from pixio_robot.pretrain.config import register_configs

ROOT = Path(__file__).resolve().parents[1]
register_configs()


pytestmark = pytest.mark.usefixtures("private_sim_cache")


def cfg_for(run_dir: Path, *overrides: str):
    with initialize_config_module("pixio_robot.configs.pretrain", version_base="1.3"):
        cfg = compose("config", overrides=["experiment=test", f"run_dir={run_dir}", *overrides])
    return OmegaConf.to_object(cfg)


def test_run_outputs_and_loss_falls(tmp_path):
    from pixio_robot.pretrain import run_pretrain

    run = tmp_path / "run"
    out = run_pretrain(cfg_for(run, "steps=20", "optim.lr=0.2", "optim.warmup_steps=4", "logger.recon_every=10"))
    assert out["loss_end"] < out["loss_start"] - 0.02, out["loss_history"]
    assert out["curation"]["kept"] == 20 * 8 and out["keep_rate"] == 1.0
    for name in ("config.yaml", "git.txt", "command.txt", "results.json", "recon/step_00000010.png",
                 "recon/step_00000020.png", "encoder/model.safetensors", "encoder/config.json"):
        assert (run / name).exists(), name
    assert list((run / "tb").glob("events.out.tfevents.*"))
    ckpts = sorted(p.name for p in (run / "checkpoints").glob("step_*"))
    assert ckpts == ["step_00000018", "step_00000020"]  # every 3 steps + the last, keep_last=2
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(run / "tb"))
    ea.Reload()
    tags = set(ea.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/images_per_s", "train/grad_norm", "data/keep_rate"} <= tags
    enc = load_encoder(run)  # a run directory holding encoder/ is what policies load
    assert enc.embed(torch.zeros(2, 3, 64, 64)).shape == (2, enc.embed_dim)
    # re-running the same (finished) run resumes at its end and trains nothing
    again = run_pretrain(cfg_for(run, "steps=20", "optim.lr=0.2", "optim.warmup_steps=4"))
    assert again["resumed_from"] == 20 and again["loss_history"] == out["loss_history"]
    assert again["curation"] == out["curation"]


def test_divergence_stops_with_a_clear_message(tmp_path):
    from pixio_robot.pretrain import run_pretrain
    from pixio_robot.pretrain.loop import NonFiniteLossError

    with pytest.raises(NonFiniteLossError, match="non-finite losses in a row.*Lower optim.lr"):
        run_pretrain(cfg_for(tmp_path / "run", "steps=30", "optim.lr=1e12", "optim.warmup_steps=0",
                             "logger.log_every=1"))


RESUME_ARGS = ["steps=20", "ckpt_every=4", "logger.log_every=1", "data.num_workers=2", "num_threads=1", "optim.lr=0.2"]


def _cmd(run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "pixio_robot.pretrain", "experiment=test", f"run_dir={run_dir}", *RESUME_ARGS]


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    from pixio_robot.pretrain import run_pretrain

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    full = tmp_path / "full"  # the uninterrupted reference runs in-process (same threads, same workers)
    ref = run_pretrain(cfg_for(full, *RESUME_ARGS))

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(killed), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (killed / "checkpoints" / "step_00000008").exists():
        assert proc.poll() is None and time.time() < deadline, "run ended before its second checkpoint"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert not (killed / "results.json").exists()  # it really died mid-training

    subprocess.run(_cmd(killed), cwd=ROOT, env=env, check=True, timeout=300, capture_output=True)
    res = json.loads((killed / "results.json").read_text())
    assert 8 <= res["resumed_from"] < 20
    ref_losses = dict((s, v) for s, v in ref["loss_history"])
    resumed = [(s, v) for s, v in res["loss_history"] if s > res["resumed_from"]]
    assert len(resumed) == 20 - res["resumed_from"]
    for s, v in resumed:
        assert v == pytest.approx(ref_losses[s], abs=1e-6), (s, v, ref_losses[s])
    a = load_encoder(full).state_dict()
    b = load_encoder(killed).state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_resume_from_a_step_that_is_not_a_multiple_of_the_workers(tmp_path):
    """The DataLoader takes batches from its workers in turn and always starts with worker 0; a run
    resumed after an odd number of batches (2 workers) must still see the batches it would have."""
    import shutil

    from pixio_robot.pretrain import run_pretrain

    args = ["steps=7", "ckpt_every=3", "keep_last=5", "logger.log_every=1", "data.num_workers=2", "num_threads=1",
            "optim.lr=0.2", "export_encoder=false"]
    ref = run_pretrain(cfg_for(tmp_path / "full", *args))
    resumed_dir = tmp_path / "resumed"
    shutil.copytree(tmp_path / "full" / "checkpoints", resumed_dir / "checkpoints")
    for step in (6, 7):  # keep only step 3: 3 batches consumed, worker 1 was next
        shutil.rmtree(resumed_dir / "checkpoints" / f"step_{step:08d}")
    (resumed_dir / "checkpoints" / "latest.txt").write_text("step_00000003\n")
    res = run_pretrain(cfg_for(resumed_dir, *args))
    assert res["resumed_from"] == 3
    ref_losses = dict(ref["loss_history"])
    assert [s for s, _ in res["loss_history"]] == [1, 2, 3, 4, 5, 6, 7]  # the history before the resume too
    for s, v in res["loss_history"]:
        assert v == pytest.approx(ref_losses[s], abs=1e-6), (s, v, ref_losses[s])
    assert res["curation"] == ref["curation"]  # counts of the whole run, not only the resumed part


def test_run_dir_of_another_run_is_refused_and_nothing_is_lost(tmp_path):
    from pixio_robot.pretrain import run_pretrain
    from pixio_robot.utils.cli import RunError

    run = tmp_path / "run"
    args = ["steps=4", "ckpt_every=2", "export_encoder=false"]
    run_pretrain(cfg_for(run, *args))
    # no encoder/ (export off, or a run still going / killed): load_encoder reads the newest checkpoint
    enc = load_encoder(run)
    ckpt = run / "checkpoints" / "step_00000004"
    from_ckpt = load_encoder(ckpt).state_dict()
    assert all(torch.equal(v, from_ckpt[k]) for k, v in enc.state_dict().items())
    assert (ckpt / "model.safetensors").stat().st_mode & 0o044 == 0o044  # readable by the group and others
    config = (run / "config.yaml").read_text()
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    with pytest.raises(ValueError, match=r"other settings: batch_size: 8 -> 4; model.mask_ratio: 0.75 -> 0.5\."
                                         r" Choose another run_dir=.*resume=false"):
        run_pretrain(cfg_for(run, *args, "steps=6", "batch_size=4", "model.mask_ratio=0.5"))
    with pytest.raises(ValueError, match="does not exist"):  # a launch failing on its inputs
        run_pretrain(cfg_for(run, *args, "steps=6", "data.sources.sim.type=folder", "data.sources.sim.path=/nonexist",
                             "resume=false"))
    # resume=false moved the run's outputs to previous/<time>/ (nothing deleted); the failed launch wrote nothing
    (aside,) = list((run / "previous").iterdir())
    assert (aside / "config.yaml").read_text() == config and not (run / "config.yaml").exists()
    assert sorted(p.name for p in (aside / "checkpoints").iterdir()) == before
    res = run_pretrain(cfg_for(run, *args, "steps=2", "batch_size=4"))  # a fresh run in the same directory
    assert res["resumed_from"] == 0 and sorted(p.name for p in (run / "checkpoints").glob("step_*")) == ["step_00000002"]
    for ckpt in (run / "checkpoints").glob("step_*"):  # every checkpoint damaged: stop, never start over
        (ckpt / "model.safetensors").write_bytes(b"truncated")
    with pytest.raises(RunError, match="none of the 1 checkpoint.*could be loaded.*resume=false"):
        run_pretrain(cfg_for(run, *args, "steps=3", "batch_size=4"))


def test_score_then_loss_based_sampling(tmp_path):
    import numpy as np
    import pyarrow.parquet as pq

    from pixio_robot.pretrain import run_pretrain
    from pixio_robot.pretrain.config import ScoreConfig
    from pixio_robot.pretrain.score import run_score

    cfg = cfg_for(tmp_path / "run", "steps=4")
    run_pretrain(cfg)
    out = tmp_path / "scores.parquet"
    summary = run_score(ScoreConfig(checkpoint=str(tmp_path / "run"), scores=str(out), data=cfg.data, batch_size=10))
    table = pq.read_table(out).to_pydict()
    assert summary["scored"] == len(table["id"]) == 32 and len(set(table["id"])) == 32
    assert all(i.startswith("sim/gym/Pusher-v5/") for i in table["id"]) and np.isfinite(table["loss"]).all()
    again = run_score(ScoreConfig(checkpoint=str(tmp_path / "run"), scores=str(tmp_path / "b.parquet"),
                                  data=cfg.data, batch_size=7))
    assert again["loss_mean"] == pytest.approx(summary["loss_mean"], abs=1e-6)  # independent of batching
    few = run_score(ScoreConfig(checkpoint=str(tmp_path / "run"), scores=str(tmp_path / "b.parquet"),
                                data=cfg.data, batch_size=4, max_samples=5))
    kept = list((tmp_path / "previous").glob("*/b.parquet"))  # the earlier file is moved aside, not overwritten
    assert few["scored"] == 5 and len(kept) == 1 and len(pq.read_table(kept[0])) == 32
    tau = 2.0 * float(np.mean(table["loss"]))  # keep about half
    expect = float(np.minimum(np.asarray(table["loss"]) / tau, 1).mean())
    res = run_pretrain(cfg_for(tmp_path / "curated", "steps=12", "curation=scores", f"curation.scores={out}",
                               f"curation.tau={tau}"))
    assert res["curation"]["loss_dropped"] > 0 and res["curation"]["unscored"] == 0
    assert abs(res["keep_rate"] - expect) < 0.12, (res["keep_rate"], expect)
