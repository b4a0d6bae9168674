"""`python -m pixio_robot.train policy=pixio_act|pixio_diffusion`: LeRobot's own ACT / Diffusion trained
from the project's train entry, the frozen-trunk map cache, LeRobot's save format, the retired heads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_lerobot_plugin import CAMS, IMG, TINY_ACT, TINY_DIFFUSION, _write_dataset
from test_train import compose

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_git_lookup(monkeypatch):
    monkeypatch.setattr("pixio_robot.utils.run.git_revision", lambda *a, **k: "test")


@pytest.fixture(scope="module")
def pusht(tmp_path_factory) -> Path:
    return _write_dataset(tmp_path_factory.mktemp("lerobot_train") / "pusht", (IMG,), side=64, episodes=3, frames=12)


def _options(tiny: dict, **extra) -> list[str]:
    def fmt(v):
        return "[" + ",".join(map(str, v)) + "]" if isinstance(v, tuple | list) else str(v)

    return [f"+policy.options.{k}={fmt(v)}" for k, v in {**tiny, **extra}.items() if k != "device"]


def _common(pusht, tmp_path, run="run"):
    return [f"dataset.root={pusht}", "dataset.val_fraction=0.34", "optim.batch_size=8", "device=cpu",
            f"cache_dir={tmp_path / 'cache'}", f"run_dir={tmp_path / run}", "progress=false", "tensorboard=false"]


def _count_trunk_calls(monkeypatch):
    from pixio_robot.policies.lerobot.trunk import PixioTrunk

    calls = []
    real = PixioTrunk.forward

    def counting(self, x):
        calls.append(x.shape[0])
        return real(self, x)

    monkeypatch.setattr(PixioTrunk, "forward", counting)
    return calls


def test_pixio_act_trains_from_cached_maps_and_saves_the_lerobot_way(pusht, tmp_path, monkeypatch):
    from lerobot.policies.factory import get_policy_class

    from pixio_robot.train import run_train

    calls = _count_trunk_calls(monkeypatch)
    args = [*_common(pusht, tmp_path), "policy=pixio_act", "optim.epochs=8",
            *_options(TINY_ACT, optimizer_lr=1e-3, dropout=0.0)]
    res = run_train(compose(*args))
    hist = [h["train_loss"] for h in res["history"]]
    assert res["cache"] == "miss" and res["features_cached"] and res["format"] == "lerobot"
    assert hist[-1] < hist[0] * 0.7, hist
    assert res["n_val"] == 12 and res["final_val_loss"] is not None
    # the trunk ran once per dataset frame (36), never in the 8 epochs
    assert sum(calls) == 36, calls
    pdir = Path(res["policy_dir"])
    for f in ("config.json", "model.safetensors", "policy_preprocessor.json", "policy_postprocessor.json"):
        assert (pdir / f).is_file(), f
    policy = get_policy_class("pixio_act").from_pretrained(pdir)
    assert policy.config.chunk_size == 4 and policy.config.pixio_mode == "frozen"
    policy.eval()
    obs = {IMG: torch.rand(1, 3, 64, 64), "observation.state": torch.zeros(1, 2)}
    assert policy.select_action(obs).shape == (1, 2)
    # a second run over the same dataset and trunk: the disk cache hits and the trunk does not run
    calls.clear()
    again = run_train(compose(*args[:-len(_options(TINY_ACT, optimizer_lr=1e-3, dropout=0.0))],
                              *_options(TINY_ACT, optimizer_lr=1e-3, dropout=0.0), "optim.epochs=1",
                              f"run_dir={tmp_path / 'run2'}"))
    assert again["cache"] == "hit" and sum(calls) == 0
    # the run-dir guard of the train entry holds: the same finished run is not trained again
    assert run_train(compose(*args))["final_train_loss"] == res["final_train_loss"]


def test_pixio_act_trains_on_two_cameras_with_one_shared_cached_trunk(tmp_path, monkeypatch):
    from lerobot.policies.factory import get_policy_class

    from pixio_robot.train import run_train

    two = _write_dataset(tmp_path / "two_cam", CAMS, side=64, episodes=2, frames=10)
    calls = _count_trunk_calls(monkeypatch)
    res = run_train(compose(*_common(two, tmp_path), "dataset.val_fraction=0", "policy=pixio_act", "optim.epochs=2",
                            *_options(TINY_ACT, optimizer_lr=1e-3, dropout=0.0)))
    assert res["features_cached"] and sum(calls) == 20 * 2, calls  # every frame of both cameras, once
    policy = get_policy_class("pixio_act").from_pretrained(res["policy_dir"])
    assert list(policy.config.image_features) == list(CAMS)
    assert len([m for m in policy.modules() if type(m).__name__ == "PixioTrunk"]) == 1
    policy.eval()
    obs = {CAMS[0]: torch.rand(1, 3, 64, 64), CAMS[1]: torch.rand(1, 3, 64, 64), "observation.state": torch.zeros(1, 2)}
    assert policy.select_action(obs).shape == (1, 2)


def test_pixio_diffusion_trains_and_loads_with_lerobot(pusht, tmp_path):
    from lerobot.policies.factory import get_policy_class

    from pixio_robot.train import run_train

    res = run_train(compose(*_common(pusht, tmp_path), "policy=pixio_diffusion", "optim.epochs=6",
                            "encoder.mode=finetune",
                            *_options(TINY_DIFFUSION, optimizer_lr=1e-3, scheduler_warmup_steps=0,
                                      crop_shape=(48, 48))))
    hist = [h["train_loss"] for h in res["history"]]
    assert res["cache"] == "off" and hist[-1] < hist[0], hist
    policy = get_policy_class("pixio_diffusion").from_pretrained(res["policy_dir"])
    assert policy.config.horizon == 8 and list(policy.config.crop_shape) == [48, 48]


@pytest.mark.parametrize("name, new", [("act", "pixio_act"), ("diffusion", "pixio_diffusion")])
def test_retired_heads_say_what_to_use_in_one_line(name, new, tmp_path):
    out = subprocess.run([sys.executable, "-m", "pixio_robot.train", f"policy={name}"], capture_output=True,
                         text=True, cwd=tmp_path, timeout=120, env={"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
                                                                     "PATH": ""})
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and f"use policy={new}" in lines[0] and "retired" in lines[0], out.stderr
