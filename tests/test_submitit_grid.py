"""Benchmark cells as cluster jobs: hydra's submitit launcher, tested for real with its local
executor (each cell a real process), sharing the demo and feature caches under their locks."""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
pytest.importorskip("metaworld")


@pytest.mark.slow
def test_two_cell_submitit_local_multirun_writes_both_cells(tmp_path):
    out = tmp_path / "bench"
    # one flat submitit folder: with submitit's default `.submitit/%j` the local controller opens
    # `<pid>/<pid>_0_log.out` before the executor has made `<pid>/` (it does so after starting the
    # controller), a race a loaded machine loses (FileNotFoundError in the controller)
    cmd = [sys.executable, "-m", "pixio_robot.benchmark", "-m", "hydra/launcher=submitit_local",
           "hydra.launcher.timeout_min=15", "hydra.launcher.cpus_per_task=1",
           "hydra.launcher.submitit_folder=${hydra.sweep.dir}/.submitit",
           "suite=quick", "envs=[metaworld/drawer-open-v3]", "suite.seeds=[100,200]", "suite.n_demos=2",
           "suite.epochs=1", "suite.eval_every_epochs=1", "suite.n_episodes=1", "n_envs=1", "cell=0,1",
           f"run_dir={out}", f"data_root={tmp_path / 'demos'}", f"cache_dir={tmp_path / 'cache'}",
           "progress=false", "num_threads=1"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    retried = False
    if proc.returncode != 0 and "has not produced any output (state: FINISHED)" in proc.stderr:
        # What the per-job-folder race above looked like before it was understood (the controller
        # died before its log existed). Kept as one re-run, which is also a resume check (finished
        # cells are kept); a second failure fails the test with everything submitit left.
        print("submitit_local job ended without output; re-running the multirun once:\n" + proc.stderr[-1500:])
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
        retried = True
    left = sorted(str(p.relative_to(out)) for p in (out / "multirun").rglob("*")) if (out / "multirun").exists() else []
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[:3000] + "\n...\n" + proc.stderr[-3000:] + str(left)
    cells = sorted((out / "cells").glob("*.json"))
    recs = [json.loads(p.read_text()) for p in cells]
    assert len(recs) == 2 and {r["seed"] for r in recs} == {100, 200}
    assert all(r["status"] == "done" and r["n_eval_episodes"] == 1 for r in recs)
    # two jobs, two processes: submitit wrote one log per job, named by the job's own pid
    logs = [p for p in (out / "multirun").rglob("*_log.out") if p.stat().st_size]
    assert len({p.name.split("_")[0] for p in logs}) >= 2 and (retried or len(logs) == 2), logs
    # one demo set for both (shared under its lock): collected once, 2 episodes
    info = json.loads(next((tmp_path / "demos").rglob("meta/info.json")).read_text())
    assert info["total_episodes"] == 2
