"""Failures a user can fix end in one `error:` line: an unwritable run dir (every entry: a path
under a regular file, and a read-only parent), a mistyped key with or without `+`, an unknown env in
evaluate, an unreadable checkpoint."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from .conftest import ENV

# run_dir=<regular file>/sub: the run dir cannot be created (tests run as root, which ignores mode bits)
ENTRIES = {
    "pretrain": ["pixio_robot.pretrain", "experiment=test", "run_dir={bad}"],
    "train": ["pixio_robot.train", "run_dir={bad}", "dataset.root={bad}"],
    "rl": ["pixio_robot.rl", "run_dir={bad}"],
    "collect": ["pixio_robot.collect", "hydra.run.dir={bad}", "root={bad}/demos"],
    "benchmark": ["pixio_robot.benchmark", "run_dir={bad}"],
    "evaluate": ["pixio_robot.evaluate", "policy={bad}/policy", "run_dir={bad}"],
    "probe": ["pixio_robot.probe", "run_dir={bad}"],
    "quickstart": ["pixio_robot.quickstart", "run_dir={bad}"],
}
# root ignores mode bits unless it runs without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH (util-linux's setpriv)
NO_DAC = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps",
          "-dac_override,-dac_read_search"]


def _one_error_line(r: subprocess.CompletedProcess) -> str:
    err = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert len(err) <= 2 and err[0].startswith("error: "), r.stderr[-3000:]  # (+ the HYDRA_FULL_ERROR hint)
    return err[0]


def _run_all(cmds: dict[str, list[str]], cwd: Path, prefix: tuple[str, ...] = ()) -> dict[str, subprocess.CompletedProcess]:
    """Start them together (each is mostly import time), then collect."""
    procs = {k: subprocess.Popen([*prefix, sys.executable, "-m", *c], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=ENV, cwd=cwd) for k, c in cmds.items()}
    out = {}
    for k, p in procs.items():
        stdout, stderr = p.communicate(timeout=180)
        out[k] = subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr)
    return out


def test_unwritable_run_dir_and_mistyped_keys_are_one_line(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    bad = blocker / "sub"
    cmds = {k: [a.format(bad=bad) for a in c] for k, c in ENTRIES.items()}
    cmds["typo"] = ["pixio_robot.pretrain", "experiment=test", "stpes=10"]
    cmds["typo+"] = ["pixio_robot.pretrain", "experiment=test", "+stpes=10", f"run_dir={tmp_path / 'p'}"]
    res = _run_all(cmds, tmp_path)
    for k in ENTRIES:
        line = _one_error_line(res[k])
        assert str(bad) in line and "Not a directory" in line, (k, line)
    for k in ("typo", "typo+"):
        assert "stpes (did you mean steps?)" in _one_error_line(res[k]), k
    assert blocker.read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0 and not shutil.which("setpriv"),
                    reason="root ignores mode bits and util-linux's setpriv is missing")
def test_read_only_parent_is_one_error_for_every_entry(tmp_path):
    """run_dir=<read-only dir>/run: every entry stops with one line naming the path, writes nothing."""
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    bad = ro / "run"
    try:
        res = _run_all({k: [a.format(bad=bad) for a in c] for k, c in ENTRIES.items() if k != "collect"}
                       | {"collect": ["pixio_robot.collect", f"hydra.run.dir={bad}", f"root={tmp_path / 'demos'}"]},
                       tmp_path, tuple(NO_DAC) if os.geteuid() == 0 else ())
        for k, r in res.items():
            line = _one_error_line(r)
            assert str(bad) in line and "Permission denied" in line, (k, line)
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def test_unwritable_run_dir_from_python(tmp_path):
    """The hydra-free API says the same (the entries' `user_errors` prints it as one line)."""
    from pixio_robot.train import TrainConfig, run_train
    from pixio_robot.utils.rundir import RunDirError

    (tmp_path / "f").write_text("")
    with pytest.raises(RunDirError, match=r"cannot write the run directory .*/f/run: Not a directory"):
        run_train(TrainConfig(run_dir=str(tmp_path / "f" / "run")))


def test_evaluate_unknown_env_is_one_line_with_close_matches(tmp_path):
    from pixio_robot.evaluate import EvaluateConfig, run_evaluate

    (tmp_path / "policy").mkdir()
    with pytest.raises(ValueError) as err:
        run_evaluate(EvaluateConfig(policy=str(tmp_path / "policy"), env="metaworld/drawr-open-v3"),
                     run_dir=tmp_path / "out")
    msg = str(err.value)
    assert "did you mean metaworld/drawer-open-v3" in msg and "\n" not in msg
    assert "metaworld/hammer-v3" not in msg  # not the whole list of names
    assert not (tmp_path / "out").exists()


class _Custom:
    pass


def test_unreadable_checkpoints_never_advise_weights_only_false(tmp_path):
    from pixio_robot.models import load_encoder
    from pixio_robot.utils.io import clean_torch_error, load_tensors

    torch.save({"x": _Custom()}, tmp_path / "pickled.pth")
    (tmp_path / "trunc.pth").write_bytes((tmp_path / "pickled.pth").read_bytes()[:80])
    for name in ("pickled.pth", "trunc.pth"):
        for load in (load_tensors, load_encoder):
            with pytest.raises(ValueError) as err:
                load(tmp_path / name)
            assert "weights_only" not in str(err.value) and str(tmp_path / name) in str(err.value)
    try:
        torch.load(tmp_path / "pickled.pth", weights_only=True)
    except Exception as e:  # what torch says, relayed by libraries such as SB3
        assert "weights_only" in str(e)
        assert "weights_only" not in str(clean_torch_error(e, "agent.zip"))


def test_locks_are_not_inherited_by_forked_children_and_exclude_each_other(tmp_path):
    """A killed run's forked workers (DataLoader, env workers) live on for seconds: the run-dir
    lock must not pass to them, or the re-run is refused. file_lock and run_dir_lock on one file
    exclude each other; one process cannot take its own run-dir lock twice."""
    import multiprocessing as mp
    import subprocess
    import sys

    import pytest

    from pixio_robot.utils.io import file_lock
    from pixio_robot.utils.rundir import RunDirBusy, run_dir_lock

    run = tmp_path / "run"
    ctx = mp.get_context("fork")
    with run_dir_lock(run):
        child = ctx.Process(target=__import__("time").sleep, args=(30,))
        child.start()  # forked while the lock is held
        with pytest.raises(RunDirBusy, match="this process"):
            with run_dir_lock(run):
                pass
    try:  # the parent let go; the child is alive: another process must get the lock now
        code = (f"from pixio_robot.utils.rundir import run_dir_lock\nwith run_dir_lock({str(run)!r}): print('got it')")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert out.stdout.strip() == "got it", out.stderr[-1000:]
        lock = tmp_path / "shared.lock"
        with file_lock(lock):
            code = (f"from pixio_robot.utils.rundir import run_dir_lock\nfrom pathlib import Path\n"
                    f"with run_dir_lock(Path({str(tmp_path)!r}) / 'x', lock_path={str(lock)!r}): print('got it')")
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
            assert out.returncode != 0 and "in use by" in out.stderr
            with file_lock(lock):  # nested in one process: no deadlock, and the outer lock stays
                pass
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
            assert out.returncode != 0 and "in use by" in out.stderr
    finally:
        child.kill()
        child.join()
