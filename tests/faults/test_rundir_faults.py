"""Run directories under faults, for every entry that writes one (pretrain, train, rl, collect,
benchmark, probe, evaluate, quickstart): a re-run with other settings is refused (nothing
overwritten, checked by bytes and mtimes) or moved aside with resume=false; a second process is
refused naming the holder; a SIGKILLed pretraining resumes to the losses of an uninterrupted run, a
SIGKILLed training is moved aside and trained again; distinct corrupt and high-bit-depth files.
(Evaluate's and probe's re-run guards are checked in test_evaluate_lerobot.py and test_probe.py,
beside the runs they re-use.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .conftest import ENV, ROOT, compose, run_cli, snapshot, wait_for

pytestmark = pytest.mark.usefixtures("private_sim_cache")


def _images(folder: Path, n_good: int = 6, bad: tuple[str, ...] = ("bad0.png", "bad1.png", "bad2.png"),
            n_16bit: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n_good):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(folder / f"ok{i}.png")
    for i in range(n_16bit):  # 16-bit grey PNGs (PIL mode I;16)
        Image.fromarray(rng.integers(0, 65535, (64, 64), dtype=np.uint16)).save(folder / f"deep{i}.png")
    for name in bad:
        (folder / name).write_bytes(b"not an image")
    return folder


def _pretrain_cfg(run_dir: Path, images: Path, *extra: str):
    return compose("pretrain", "experiment=test", "data=folder", f"data.sources.folder.path={images}",
                   f"run_dir={run_dir}", "steps=6", "ckpt_every=2", "logger.log_every=1", "data.num_workers=0",
                   "num_threads=1", *extra)


def test_pretrain_guard_and_distinct_corrupt_files(tmp_path):
    from pixio_robot.pretrain import run_pretrain

    images, run = _images(tmp_path / "imgs", n_16bit=2), tmp_path / "run"
    out = run_pretrain(_pretrain_cfg(run, images))
    # 2 of the 11 files are 16-bit: 48 draws meet each several times, and 2 distinct images are counted
    assert out["high_bit_depth_converted"] == {"folder": 2}
    # 3 bad files, drawn many times: the file count is 3, the draws are counted apart
    assert out["corrupt_files"] == 3 and out["corrupt_draws"] == out["curation"]["corrupt"] > 3
    assert sorted((run / "corrupt_files.txt").read_text().split()) == ["folder/bad0.png", "folder/bad1.png",
                                                                       "folder/bad2.png"]
    before = snapshot(run)
    with pytest.raises(ValueError, match=r"other settings: seed: 0 -> 1"):
        run_pretrain(_pretrain_cfg(run, images, "seed=1"))
    assert snapshot(run) == before  # refused before anything was written
    again = run_pretrain(_pretrain_cfg(run, images))  # same settings: finished, nothing trained
    assert again["resumed_from"] == 6 and again["loss_history"] == out["loss_history"]
    assert again["corrupt_files"] == 3 and again["high_bit_depth_converted"] == {"folder": 2}  # from the checkpoint
    old_ckpt = {k: v for k, v in before.items() if k.startswith("checkpoints/")}
    run_pretrain(_pretrain_cfg(run, images, "seed=1", "resume=false"))
    (aside,) = (run / "previous").iterdir()  # moved, byte for byte
    moved = {k: v[0] for k, v in snapshot(aside).items() if k.startswith("checkpoints/")}
    assert moved == {k: v[0] for k, v in old_ckpt.items()}


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> Path:
    from test_policies_data import make_dataset

    return make_dataset(tmp_path_factory.mktemp("faults") / "tiny", n_episodes=4, length=10)


def _train_cfg(run: Path, demos: Path, tmp: Path, *extra: str):
    return compose("train", f"dataset.root={demos}", "optim.batch_size=16", "optim.epochs=2", "eval.n_episodes=0",
                   f"cache_dir={tmp / 'cache'}", "progress=false", f"run_dir={run}", *extra)


def test_train_guard(demos, tmp_path):
    from pixio_robot.train import run_train

    run = tmp_path / "run"
    first = run_train(_train_cfg(run, demos, tmp_path))
    before = snapshot(run)
    assert "policy/model.safetensors" in before and "results.json" in before and any(
        k.startswith("tb/") for k in before)
    with pytest.raises(ValueError, match=r"other settings: optim.lr: 0.001 -> 0.01.*resume=false"):
        run_train(_train_cfg(run, demos, tmp_path, "optim.lr=0.01"))
    assert snapshot(run) == before
    done = run_train(_train_cfg(run, demos, tmp_path, "eval.n_envs=3"))  # a run-time knob: the same run, finished
    assert done == json.loads((run / "results.json").read_text()) and done["final_train_loss"] == first[
        "final_train_loss"]
    assert snapshot(run) == before
    run_train(_train_cfg(run, demos, tmp_path, "optim.lr=0.01", "resume=false"))
    (aside,) = (run / "previous").iterdir()
    assert {k: v[0] for k, v in snapshot(aside).items()} == {k: v[0] for k, v in before.items()}


def test_rl_guard(tmp_path):
    from pixio_robot.rl import RLConfig, run_rl

    def cfg(**kw):
        base = dict(algo="ppo", env="gym/Reacher-v5", obs="state", n_envs=1, total_timesteps=64,
                    max_episode_steps=16, algo_kwargs={"n_steps": 32, "batch_size": 32, "n_epochs": 1},
                    eval_every=0, n_episodes=1, ckpt_every=32, run_dir=str(tmp_path / "rl"),
                    progress=False, device="cpu", tensorboard=False)
        return RLConfig(**{**base, **kw})

    run_rl(cfg())
    run = tmp_path / "rl"
    before = snapshot(run)
    with pytest.raises(ValueError, match=r"other settings: seed: 0 -> 1\. Choose another run_dir="):
        run_rl(cfg(seed=1))
    assert snapshot(run) == before
    run_rl(cfg(seed=1, resume=False))
    (aside,) = (run / "previous").iterdir()
    assert hashlib_of(aside / "model.zip") == before["model.zip"][0]
    # a run that died before its first checkpoint (its model and checkpoints gone, its records left):
    # the same command keeps those records under previous/ and trains afresh, overwriting nothing
    import shutil

    for name in ("model.zip", "results.json", "checkpoints"):
        shutil.rmtree(run / name) if (run / name).is_dir() else (run / name).unlink()
    left = {k: v[0] for k, v in snapshot(run).items() if not k.startswith("previous/")}
    run_rl(cfg(seed=1))
    newest = max((run / "previous").iterdir(), key=lambda p: p.stat().st_mtime_ns)
    assert newest != aside and {k: v[0] for k, v in snapshot(newest).items()} == left
    assert (run / "model.zip").exists()


def hashlib_of(p: Path) -> str:
    import hashlib

    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_collect_refuses_other_settings_into_a_root(tmp_path):
    from pixio_robot.collect import CollectConfig, run_collect

    root = tmp_path / "demos"
    run_collect(CollectConfig(env="metaworld/drawer-open-v3", n_episodes=1, root=str(root), image_size=32,
                              progress=False, use_videos=False), run_dir=tmp_path / "c1")
    before = snapshot(root)
    with pytest.raises(ValueError):
        run_collect(CollectConfig(env="metaworld/drawer-open-v3", n_episodes=1, root=str(root), image_size=48,
                                  progress=False, use_videos=False), run_dir=tmp_path / "c2")
    assert snapshot(root) == before


def _lock_refusal(fn, holder_pid: int) -> None:
    from pixio_robot.utils.rundir import RunDirBusy

    with pytest.raises(RunDirBusy, match=rf"in use by pid {holder_pid} on \S+ \(`-c`"):
        fn()


def test_second_process_is_refused_for_every_entry(tmp_path, lock_holder):
    """A real process holds each run dir's lock; every entry stops at once naming it."""
    from pixio_robot.benchmark import run_benchmark
    from pixio_robot.collect import CollectConfig, run_collect
    from pixio_robot.evaluate import EvaluateConfig, run_evaluate
    from pixio_robot.probe.config import ProbeConfig
    from pixio_robot.probe.loop import run_probe
    from pixio_robot.quickstart import QuickstartConfig, run_quickstart
    from pixio_robot.rl import RLConfig, run_rl
    from pixio_robot.train import TrainConfig, run_train

    dirs = {k: tmp_path / k for k in ("train", "rl", "collect", "bench", "probe", "eval", "quick", "root")}
    for d in dirs.values():
        d.mkdir()
    holders = {k: lock_holder(d) for k, d in dirs.items() if k != "root"}
    holders["root"] = lock_holder(dirs["root"], tmp_path / ".demos.lock")
    before = {k: snapshot(d) for k, d in dirs.items()}
    _lock_refusal(lambda: run_train(TrainConfig(run_dir=str(dirs["train"]))), holders["train"].pid)
    _lock_refusal(lambda: run_rl(RLConfig(run_dir=str(dirs["rl"]))), holders["rl"].pid)
    _lock_refusal(lambda: run_collect(CollectConfig(root=str(tmp_path / "other")), run_dir=dirs["collect"]),
                  holders["collect"].pid)
    _lock_refusal(lambda: run_collect(CollectConfig(root=str(tmp_path / "demos"))), holders["root"].pid)
    _lock_refusal(lambda: run_benchmark(compose("benchmark", f"run_dir={dirs['bench']}")), holders["bench"].pid)
    _lock_refusal(lambda: run_probe(ProbeConfig(run_dir=str(dirs["probe"]))), holders["probe"].pid)
    _lock_refusal(lambda: run_evaluate(EvaluateConfig(policy=str(tmp_path / "no-policy"), run_dir=str(dirs["eval"]))),
                  holders["eval"].pid)
    _lock_refusal(lambda: run_quickstart(QuickstartConfig(run_dir=str(dirs["quick"]))), holders["quick"].pid)
    assert {k: snapshot(d) for k, d in dirs.items()} == before
    # pretrain through its CLI: one error line naming the holder, exit 1
    run = tmp_path / "pre"
    holder = lock_holder(run)
    r = run_cli("pixio_robot.pretrain", "experiment=test", f"run_dir={run}", "steps=2", cwd=tmp_path)
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert r.returncode == 1 and len(err) == 1 and f"pid {holder.pid}" in err[0], r.stderr[-2000:]
    assert "Traceback" not in r.stderr and not (run / "checkpoints").exists()


def test_sigkill_then_rerun_resumes_to_the_same_losses(tmp_path):
    """Kill -9 after the first checkpoint; the lock dies with the process and the re-run resumes
    to the losses of an uninterrupted run (and to its distinct corrupt files)."""
    from pixio_robot.pretrain import run_pretrain

    images = _images(tmp_path / "imgs")
    # long enough that the kill lands mid-run (keep_last=2 prunes early checkpoints, so wait for any)
    steps = "steps=200"
    ref = run_pretrain(_pretrain_cfg(tmp_path / "ref", images, steps))
    run = tmp_path / "killed"
    args = ["experiment=test", "data=folder", f"data.sources.folder.path={images}", f"run_dir={run}", steps,
            "ckpt_every=2", "logger.log_every=1", "data.num_workers=0", "num_threads=1"]
    log = tmp_path / "killed.log"
    delay = __import__("random").uniform(0.0, 1.0)  # a random moment after the first checkpoint
    with open(log, "w") as fh:
        p = subprocess.Popen([sys.executable, "-m", "pixio_robot.pretrain", *args], env=ENV, cwd=ROOT,
                             stdout=fh, stderr=subprocess.STDOUT)
    try:
        ok = wait_for(lambda: any((run / "checkpoints").glob("step_*/state.json")), 120)
        assert ok, log.read_text()[-3000:]
        time.sleep(delay)
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    assert not (run / "results.json").exists(), f"the run ended before the kill ({delay=:.2f} s): raise steps"
    out = run_pretrain(_pretrain_cfg(run, images, steps))
    assert 2 <= out["resumed_from"] < 200, delay
    assert out["loss_history"] == ref["loss_history"] and out["corrupt_files"] == ref["corrupt_files"] == 3


def test_sigkilled_training_is_moved_aside_and_trained_again_to_the_same_result(demos, tmp_path):
    """BC training has no checkpoints: kill -9 mid-run, and the same command moves the partial
    run to previous/<time>/ (kept, not deleted) and trains again to an uninterrupted run's result."""
    from pixio_robot.train import run_train

    ref = run_train(_train_cfg(tmp_path / "ref", demos, tmp_path, "optim.epochs=30", "seed=3"))
    run = tmp_path / "killed"
    args = [f"dataset.root={demos}", "optim.batch_size=16", "optim.epochs=30", "eval.n_episodes=0", "seed=3",
            f"cache_dir={tmp_path / 'cache'}", "progress=false", f"run_dir={run}"]
    log = tmp_path / "killed.log"
    with open(log, "w") as fh:
        p = subprocess.Popen([sys.executable, "-m", "pixio_robot.train", *args], env=ENV, cwd=ROOT, stdout=fh,
                             stderr=subprocess.STDOUT)
    try:
        assert wait_for(lambda: (run / "config.yaml").exists() and any((run / "tb").glob("events.*")), 120), \
            log.read_text()[-3000:]
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    assert not (run / "results.json").exists(), "the run ended before the kill: raise optim.epochs"
    partial = snapshot(run)
    out = run_train(_train_cfg(run, demos, tmp_path, "optim.epochs=30", "seed=3"))
    assert out["final_train_loss"] == pytest.approx(ref["final_train_loss"], rel=1e-6)
    (aside,) = (run / "previous").iterdir()  # the killed run's files, byte for byte
    assert {k: v[0] for k, v in snapshot(aside).items()} == {
        k: v[0] for k, v in partial.items() if not k.startswith((".hydra/", "train.log"))}


def test_sigkilled_rl_resumes_from_its_newest_checkpoint(tmp_path):
    """Kill -9 an RL run at a random moment after its first checkpoint; the same command resumes
    from the newest checkpoint that was written whole and trains to total_timesteps."""
    import random

    from pixio_robot.rl import load_agent, run_rl

    run = tmp_path / "rl"
    args = ["algo=ppo", "env=gym/Reacher-v5", "obs=state", "n_envs=1", "total_timesteps=6400",
            "max_episode_steps=16", "+algo_kwargs.n_steps=32", "+algo_kwargs.batch_size=32", "+algo_kwargs.n_epochs=1", "eval_every=0",
            "n_episodes=1", "ckpt_every=64", f"run_dir={run}", "progress=false", "device=cpu", "tensorboard=false"]
    delay = random.uniform(0.0, 1.0)  # a random moment after the first checkpoint (said in the messages)
    log = tmp_path / "rl.log"
    with open(log, "w") as fh:
        p = subprocess.Popen([sys.executable, "-m", "pixio_robot.rl", *args], env=ENV, cwd=ROOT, stdout=fh,
                             stderr=subprocess.STDOUT)
    try:
        assert wait_for(lambda: any((run / "checkpoints").glob("*.zip")), 120), log.read_text()[-3000:]
        time.sleep(delay)
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    assert not (run / "results.json").exists(), f"the run ended before the kill ({delay=:.2f} s): raise steps"
    res = run_rl(compose("rl", *args))
    assert res["resumed_at"] is not None and 64 <= res["resumed_at"] < 6400, (delay, res["resumed_at"])
    assert res["timesteps"] >= 6400 and load_agent(run).num_timesteps == res["timesteps"], delay
