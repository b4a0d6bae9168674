"""`python -m pixio_robot.benchmark`: a suite x encoders x seeds grid, to a table, CSV and plots.

Each cell (task, encoder, seed): reuse or collect the suite's demos (LeRobotDataset under
`data_root`), train the suite's policy on the frozen encoder through `pixio_robot.train.run_train`
(which builds the frozen-feature cache and evaluates periodically), and record the best success
during training and the final success in `<run_dir>/cells/<key>.json`. Re-running skips
finished cells; `cell=<i>` runs one cell, so a launcher can spread the grid:

    python -m pixio_robot.benchmark                                   # the quick CPU suite
    python -m pixio_robot.benchmark suite=cortexbench_metaworld encoders=pixio_random_vs_ckpt \\
        encoders.1.path=runs/pretrain/tiny_cpu/encoder
    python -m pixio_robot.benchmark -m suite=cortexbench_metaworld cell='range(0,15)'  # one job per cell
    python -m pixio_robot.benchmark suite=cortexbench_metaworld report_only=true      # table + plots
    python -m pixio_robot.benchmark suite=pusht_diffusion encoders=resnet18_vs_pixio  # LeRobot's Diffusion
    python -m pixio_robot.benchmark suite=aloha_act encoders=resnet18_vs_pixio        # LeRobot's ACT

`suite.policy: act | diffusion` suites train LeRobot's own policy instead of the MLP (see
`pixio_robot.benchmark.lerobot`); a `source: resnet18` column is LeRobot's built-in trunk.
"""

from __future__ import annotations

import json
from pathlib import Path

from pixio_robot.benchmark.config import BenchmarkConfig
from pixio_robot.evaluation.grid import Cell, collect_records, make_cells, run_grid, slug
from pixio_robot.evaluation.report import write_report
from pixio_robot.evaluation.suites import EncoderSpec
from pixio_robot.utils.io import file_lock
from pixio_robot.utils.logging import get_logger

log = get_logger(__name__)


def grid_cells(cfg: BenchmarkConfig) -> list[Cell]:
    return make_cells(list(cfg.envs or cfg.suite.envs), [e.label for e in cfg.encoders],
                      list(cfg.seeds or cfg.suite.seeds))


def demo_root(cfg: BenchmarkConfig, task: str) -> Path:
    """Where a task's demos live: keyed by everything that changes them, so reuse is always exact."""
    s = cfg.suite
    name = f"{slug(task)}_{s.image_size}px_{slug(s.camera or 'default')}_n{s.n_demos}_s{s.demo_seed}"
    name += "_succ" if s.only_success else "_all"
    if s.max_episode_steps is not None:
        name += f"_T{s.max_episode_steps}"
    expert = _expert_path(cfg, task)
    if expert is not None and expert.is_file():  # another expert (or one retrained in place): other demos
        import hashlib

        name += "_x" + hashlib.sha256(expert.read_bytes()).hexdigest()[:10]
    return Path(cfg.data_root).expanduser() / name


def _expert_path(cfg: BenchmarkConfig, task: str) -> Path | None:
    return Path(cfg.suite.expert_dir).expanduser() / f"{slug(task)}.zip" if cfg.suite.expert_dir else None


def ensure_demos(cfg: BenchmarkConfig, task: str) -> Path:
    """Collect the suite's demos for `task` unless a complete dataset is already there
    (`suite.dataset_root`: a LeRobotDataset the user has, used as it is)."""
    from pixio_robot.data import collect_demos

    s = cfg.suite
    if s.dataset_root:
        root = Path(s.dataset_root.replace("{task}", slug(task))).expanduser()
        if not (root / "meta" / "info.json").is_file():
            raise FileNotFoundError(f"suite.dataset_root: {root} is not a LeRobotDataset (no meta/info.json); "
                                    "point it at one, or unset it to collect the suite's demos")
        return root
    expert = _expert_path(cfg, task)
    if expert is not None:
        if not expert.is_file():
            raise FileNotFoundError(f"no expert for {task} at {expert}: train one with `python -m pixio_robot.rl` "
                                    f"(state observations) and save it there, or set suite.expert_dir")
    root = demo_root(cfg, task)
    with file_lock(root.parent / f".{root.name}.lock"):  # cells of one task may run at once
        collect_demos(task, s.n_demos, root, image_size=s.image_size, camera=s.camera, seed=s.demo_seed,
                      only_success=s.only_success, expert=expert, max_episode_steps=s.max_episode_steps,
                      progress=cfg.progress)
    info = root / "meta" / "info.json"
    have = json.loads(info.read_text()).get("total_episodes", 0) if info.is_file() else 0
    if have < s.n_demos:
        raise RuntimeError(f"only {have}/{s.n_demos} demos of {task} in {root}: the expert failed too often "
                           f"(raise suite.max_episode_steps, now {s.max_episode_steps}, or set suite.only_success=false)")
    return root


def _train_config(cfg: BenchmarkConfig, cell: Cell, enc: EncoderSpec, root: Path, run_dir: Path):
    from pixio_robot.policies import MLPConfig
    from pixio_robot.train import DatasetConfig, EvalConfig, OptimConfig, TrainConfig

    s = cfg.suite
    return TrainConfig(
        dataset=DatasetConfig(root=str(root), val_fraction=s.val_fraction),
        encoder=enc.adapter_config(),
        policy=MLPConfig(history=s.history, hidden_sizes=list(s.hidden_sizes), use_state=s.use_state),
        optim=OptimConfig(lr=s.lr, batch_size=s.batch_size, epochs=s.epochs),
        eval=EvalConfig(env=cell.task, every_epochs=s.eval_every_epochs, n_episodes=s.n_episodes,
                        n_envs=cfg.n_envs, seed=cell.seed, image_size=s.image_size, camera=s.camera,
                        max_episode_steps=s.max_episode_steps, vector_mode=cfg.vector_mode,
                        # success-scored suites lose nothing by ending episodes at success
                        stop_on_success=s.metric == "success"),
        cache_dir=cfg.cache_dir, device=cfg.device, seed=cell.seed, num_threads=cfg.num_threads,
        # run_grid re-runs a cell only when it is not finished under these settings: move the old one aside
        run_dir=str(run_dir), resume=False, tensorboard=cfg.tensorboard, progress=cfg.progress)


def cell_fingerprint(cfg: BenchmarkConfig, cell: Cell) -> str:
    """Digest of what decides a cell's result: the suite protocol and the encoder spec (not the
    run-time knobs such as n_envs or vector_mode)."""
    import dataclasses
    import hashlib

    enc = {e.label: e for e in cfg.encoders}[cell.encoder]
    weights = []  # a checkpoint re-written at the same path (e.g. longer pretraining) is another encoder
    if enc.path:
        p = Path(enc.path).expanduser()
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p] if p.exists() else []
        weights = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    suite = dataclasses.asdict(cfg.suite)
    for grid_axis in ("envs", "seeds"):  # the cell names its own task and seed: adding others changes nothing
        suite.pop(grid_axis, None)
    expert = _expert_path(cfg, cell.task)
    if expert is not None and expert.is_file():  # demos (and so results) follow the expert's weights
        weights.append((str(expert), expert.stat().st_size, expert.stat().st_mtime_ns))
    if cfg.suite.dataset_root:  # a user's dataset re-written in place is other demos
        info = Path(cfg.suite.dataset_root.replace("{task}", slug(cell.task))).expanduser() / "meta" / "info.json"
        if info.is_file():
            weights.append((str(info), info.stat().st_size, info.stat().st_mtime_ns))
    blob = json.dumps({"suite": suite, "encoder": dataclasses.asdict(enc),
                       "weights": weights, "cell": dataclasses.asdict(cell)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_cell(cfg: BenchmarkConfig, cell: Cell) -> dict:
    """Demos -> feature cache + training with periodic rollouts -> best and final scores."""
    from pixio_robot.train import run_train

    enc = {e.label: e for e in cfg.encoders}[cell.encoder]
    root = ensure_demos(cfg, cell.task)
    if cfg.suite.lerobot:  # LeRobot's own ACT / Diffusion: the column picks the trunk
        from pixio_robot.benchmark.lerobot import run_lerobot_cell

        return run_lerobot_cell(cfg, cell, enc, root, Path(cfg.run_dir) / "runs" / cell.key)
    res = run_train(_train_config(cfg, cell, enc, root, Path(cfg.run_dir) / "runs" / cell.key))
    evals = [row for row in res["history"] if "success" in row]
    if not evals:
        raise RuntimeError(f"{cell.key}: training ran no rollouts (check suite.eval_every_epochs / suite.n_episodes)")
    return {  # best: the first rollout with the top success, the one train saved as policy_best/
        "best_success": res["best_success"], "best_epoch": res["best_epoch"], "final_success": evals[-1]["success"],
        "best_return": max(r["mean_return"] for r in evals), "final_return": evals[-1]["mean_return"],
        "n_eval_episodes": cfg.suite.n_episodes, "curve": [[r["epoch"], r["success"], r["mean_return"]]
                                                             for r in evals],
        "final_train_loss": res["final_train_loss"], "policy_dir": res["policy_dir"], "demos": str(root),
        "cache": res["cache"], "train_wall_s": res["wall_s"], "encoder_digest": res["encoder_digest"],
    }


def run_benchmark(cfg: BenchmarkConfig) -> dict:
    """Run (or resume) the grid, or one cell of it, then write the report from every finished cell.
    The whole grid locks `run_dir`; a single `cell=` job locks only that cell's run dir."""

    out = Path(cfg.run_dir)
    if cfg.cell is not None:  # one job of a multirun: its cell's run dir is locked by train; jobs share `out`
        return _run_benchmark(cfg, out)
    from pixio_robot.utils.rundir import run_dir_lock

    with run_dir_lock(out):
        return _run_benchmark(cfg, out)


# keys a re-run may change without making it another benchmark (the cells' fingerprints decide what re-runs)
BENCHMARK_FREE_KEYS = ("cell", "report_only", "resume", "run_dir", "n_envs", "vector_mode", "device", "num_threads",
                       "tensorboard", "progress", "probe_dir", "data_root", "cache_dir")


def _run_benchmark(cfg: BenchmarkConfig, out: Path) -> dict:
    from pixio_robot.utils.run import prepare_run_dir, to_plain
    from pixio_robot.utils.rundir import keep_previous_records

    aside = None
    if cfg.cell is None:  # a cell= job shares out with its siblings: the grid's records are the launcher's
        aside = keep_previous_records(out, to_plain(cfg), BENCHMARK_FREE_KEYS, "benchmark")
        prepare_run_dir(out, cfg)
    cells = grid_cells(cfg)
    todo = cells
    if cfg.cell is not None:
        if not 0 <= cfg.cell < len(cells):
            raise ValueError(f"cell={cfg.cell} is out of range: this grid has {len(cells)} cells (0..{len(cells) - 1})")
        todo = [cells[cfg.cell]]
    if not cfg.report_only:
        log.info("benchmark %s: %d cells (%d tasks x %d encoders x %d seeds) -> %s", cfg.suite.name, len(cells),
                 len(cfg.envs or cfg.suite.envs), len(cfg.encoders), len(cfg.seeds or cfg.suite.seeds), out)
        run_grid(todo, lambda c: run_cell(cfg, c), out, resume=cfg.resume, aside=aside,
                 fingerprint=lambda c: cell_fingerprint(cfg, c))
    records = collect_records(out, cells)
    # a finished cell recorded under other settings (report_only, or a run of one cell=...) is not
    # this benchmark's result: leave it out of the report and say so
    now = {c.key: cell_fingerprint(cfg, c) for c in cells}
    stale = [r["key"] for r in records if r.get("status") == "done" and r.get("fingerprint") not in (None, now[r["key"]])]
    if stale:
        log.warning("%d finished cell(s) were run with other settings and are left out of the report: %s. Run "
                    "the benchmark (without report_only) to redo them", len(stale), ", ".join(stale))
        records = [r for r in records if r["key"] not in stale]
    n_done = sum(r.get("status") == "done" for r in records)
    summary = {"run_dir": str(out), "cells": len(cells), "done": n_done, "stale": stale,
               "failed": [r["key"] for r in records if r.get("status") == "failed"]}
    if n_done:
        paths = write_report(records, out / "report", title=f"{cfg.suite.name} ({n_done}/{len(cells)} cells)",
                             metric=cfg.suite.metric, return_scale=cfg.suite.return_scale,
                             probe_scores=_probe_scores(cfg.probe_dir))
        summary["report"] = {k: str(v) for k, v in paths.items()}
        log.info("report: %s", paths["markdown"])
        print(paths["markdown"].read_text())
    else:
        log.warning("no finished cells in %s yet", out)
    return summary


def _probe_scores(probe_dir: str | None) -> dict[str, float] | None:
    if not probe_dir:
        return None
    path = Path(probe_dir).expanduser() / "report" / "probes.json"
    if not path.is_file():
        raise FileNotFoundError(f"probe_dir={probe_dir}: {path} is missing; run `python -m pixio_robot.probe "
                                f"run_dir={probe_dir}` with the same encoders first")
    return json.loads(path.read_text())["probe_scores"]


