"""The entry points' shared config check and error reporting (pixio_robot.utils.cli)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

from pixio_robot.pretrain.config import register_configs
from pixio_robot.utils.cli import ConfigKeyError, RunError, to_config, unknown_keys, user_errors

ROOT = Path(__file__).resolve().parents[1]
register_configs()


def compose_pretrain(*overrides: str):
    with initialize_config_module("pixio_robot.configs.pretrain", version_base="1.3"):
        return compose("config", overrides=list(overrides))


def test_appended_keys_are_refused_with_close_matches():
    cfg = compose_pretrain("+stpes=5", "+model.nmae=x", "+data.sources.sim.frams=3")
    bad = dict(unknown_keys(cfg))
    assert set(bad) == {"stpes", "model.nmae", "data.sources.sim.frams"}
    assert bad["stpes"] == " (did you mean steps?)" and "frames" in bad["data.sources.sim.frams"]
    with pytest.raises(ConfigKeyError, match=r"stpes \(did you mean steps\?\)"):
        to_config(cfg)
    ok = to_config(compose_pretrain("steps=5"))  # a clean config still converts
    assert ok.steps == 5 and not unknown_keys(compose_pretrain())


def test_a_renamed_key_names_its_new_name():
    """One key per concept: an old key (appended or not) is refused with the key that replaced it."""
    bad = dict(unknown_keys(compose_pretrain("+threads=1", "+model.img_size=64")))
    assert bad == {"threads": " (renamed: use num_threads)", "model.img_size": " (renamed: use model.image_size)"}
    for entry, old, new in [("pretrain", "threads=1", "num_threads"), ("benchmark", "tasks=[metaworld/reach-v3]", "envs"),
                            ("train", "eval.env_name=gym/Reacher-v5", "eval.env"),
                            ("collect", "episodes=2", "n_episodes"), ("probe", "force=true", "resume=false")]:
        proc = subprocess.run([sys.executable, "-m", f"pixio_robot.{entry}", old, "--cfg", "job"], capture_output=True,
                              text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert proc.returncode == 1, (entry, proc.stderr)
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and f"(renamed: use {new})" in lines[0], (entry, proc.stderr)


def test_an_encoder_name_is_not_a_pretraining_model():
    with pytest.raises(ValueError, match="model.name=pixio_vittiny is not a pretraining model.*pixio_mae_"):
        to_config(compose_pretrain("model.name=pixio_vittiny"))


def test_curation_scores_requires_the_scores_file():
    with pytest.raises(ValueError, match="curation=scores needs curation.scores="):
        to_config(compose_pretrain("curation=scores"))
    cfg = to_config(compose_pretrain("curation=scores", "curation.scores=s.parquet"))
    assert cfg.curation.scores == "s.parquet"


def _exit(fn, capsys):
    with pytest.raises(SystemExit) as info, user_errors("re-run to resume"):
        fn()
    return info.value.code, capsys.readouterr().err


def test_user_errors_are_one_line_with_the_status(capsys, monkeypatch):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)

    def bad_value():
        raise ValueError("batch_size must be >= 1")

    code, err = _exit(bad_value, capsys)
    assert code == 1 and err.startswith("error: batch_size must be >= 1 [ValueError at test_cli.py:")
    assert "Traceback" not in err

    def from_worker():  # how a DataLoader worker's exception reaches the main process
        raise ValueError("Caught SourceError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
                         "last):\n  File \"x.py\", line 1\npixio_robot.pretrain.sources.SourceError: no usable image")

    assert _exit(from_worker, capsys)[1].startswith("error: no usable image [")

    def diverged():
        raise RunError("training diverged; lower optim.lr")

    assert _exit(diverged, capsys)[0] == 1

    def interrupted():
        raise KeyboardInterrupt

    code, err = _exit(interrupted, capsys)
    assert code == 130 and "interrupted; re-run to resume" in err

    with pytest.raises(ZeroDivisionError), user_errors():  # a bug keeps its traceback
        _ = 1 / 0
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ValueError), user_errors():
        bad_value()


def test_entry_point_refuses_an_appended_key(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pixio_robot.pretrain", "+stpes=5", f"run_dir={tmp_path}/r"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "error: unknown config key(s): stpes (did you mean steps?)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_a_whole_dict_into_a_free_form_dict_field_says_how_to_add_entries(tmp_path):
    # hydra merges `algo_kwargs={n_steps: 32}` into the empty struct dict and fails; the line says what works
    proc = subprocess.run([sys.executable, "-m", "pixio_robot.rl", "algo_kwargs={n_steps: 32}", "--cfg", "job"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == ("error: algo_kwargs is a free-form dict: add its entries one by one "
                                                    "with +algo_kwargs.n_steps=<value>")
    ok = subprocess.run([sys.executable, "-m", "pixio_robot.rl", "+algo_kwargs.n_steps=32", "--cfg", "job"],
                        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "n_steps: 32" in ok.stdout


def test_cuda_device_without_a_gpu_is_a_clear_error(tmp_path):
    import torch

    from pixio_robot.pretrain import run_pretrain

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match="device=cuda, but torch sees no CUDA GPU here; use device=auto"):
        run_pretrain(to_config(compose_pretrain("device=cuda", f"run_dir={tmp_path / 'r'}")))


def test_hydra_logs_go_to_the_named_run_dir(tmp_path):
    """train / rl / evaluate with run_dir (run_dir) set: hydra's log lands there (appended: a
    refused re-run adds lines, rewrites nothing; no .hydra/ copy beside the entry's own
    config.yaml), no stray runs/<entry>/<time>/ in the working directory."""
    proc = subprocess.run([sys.executable, "-m", "pixio_robot.evaluate", f"run_dir={tmp_path}/ev",
                           f"policy={tmp_path}/missing"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 1 and "error:" in proc.stderr
    assert (tmp_path / "ev" / "evaluate.log").exists() and not (tmp_path / "runs").exists()
    assert not (tmp_path / "ev" / ".hydra").exists()


@pytest.mark.slow
def test_ctrl_c_in_pretraining_says_where_it_stopped(tmp_path):
    import os
    import signal
    import time

    run = tmp_path / "r"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PIXIO_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, "-m", "pixio_robot.pretrain", "experiment=test", "steps=100000",
                             "ckpt_every=2", f"run_dir={run}"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not (run / "checkpoints" / "step_00000002").exists():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-2000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted at step" in out + err and "the last checkpoint is step" in out + err
    assert "re-run the same command to resume" in err and "Traceback" not in err


@pytest.mark.parametrize("entry", ["pretrain", "evaluate"])
def test_help_says_what_the_command_does(entry):
    proc = subprocess.run([sys.executable, "-m", f"pixio_robot.{entry}", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith(f"python -m pixio_robot.{entry}: ")
    assert "`--cfg job` prints every key" in proc.stdout and "__main__ is powered by Hydra" not in proc.stdout
