"""`python -m pixio_robot.quickstart` (`make quickstart`): the whole path on a laptop CPU.

1. pretrain a tiny Pixio on frames rendered from the simulators (`run_pretrain`, short budget);
2. collect scripted-expert demos on one or two MetaWorld tasks (LeRobotDataset on disk);
3. train the CortexBench BC policy on the frozen pretrained encoder AND on a frozen random-init
   encoder of exactly the same shape (through the benchmark grid: feature cache, training,
   rollouts);
4. write a report: `report.md` (what ran, scores with Wilson intervals, timings), the
   pretraining loss curve, a reconstruction grid, success bar charts and one rollout video.

Every step resumes: re-running the command reuses the finished pretraining, demos and cells.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from pixio_robot.quickstart.config import QuickstartConfig
from pixio_robot.utils.logging import get_logger

log = get_logger(__name__)


def pretrain_config(cfg: QuickstartConfig, run_dir: Path):
    """The pretrain entry's tiny CPU preset with the quickstart's budget."""
    from pixio_robot.pretrain import (
        DataConfig,
        LoggerConfig,
        ModelConfig,
        OptimConfig,
        PretrainConfig,
        SourceConfig,
    )

    sim = SourceConfig(type="sim", frames=cfg.sim_frames, render_size=cfg.sim_render_size,
                       cache_dir=cfg.sim_cache_dir)
    if cfg.sim_envs:
        sim.envs = list(cfg.sim_envs)
    return PretrainConfig(
        model=ModelConfig(name=cfg.pretrain_model, image_size=cfg.pretrain_image_size),
        data=DataConfig(sources={"sim": sim}, num_workers=1),
        optim=OptimConfig(warmup_steps=max(1, min(20, cfg.pretrain_steps // 10))),
        logger=LoggerConfig(log_every=10, recon_every=0, progress=cfg.progress),
        name="quickstart", run_dir=str(run_dir), steps=cfg.pretrain_steps, batch_size=cfg.pretrain_batch_size,
        ckpt_every=max(1, cfg.pretrain_steps // 4), num_threads=cfg.num_threads, seed=0)


def random_twin(encoder_dir: Path, out: Path, seed: int = 0) -> Path:
    """Save a randomly initialised encoder with exactly the config of `encoder_dir`'s encoder."""
    import torch

    from pixio_robot.models import PixioEncoder, load_encoder, save_encoder

    trained = load_encoder(encoder_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        twin = PixioEncoder(trained.config)
    if [p.shape for p in twin.parameters()] != [p.shape for p in trained.parameters()]:
        raise RuntimeError("the random twin does not have the pretrained encoder's shape")
    return save_encoder(twin, out)


def benchmark_config(cfg: QuickstartConfig, out: Path, pretrained: Path, random: Path):
    from pixio_robot.benchmark import BenchmarkConfig
    from pixio_robot.evaluation.suites import EncoderSpec, SuiteConfig

    suite = SuiteConfig(name="quickstart", envs=list(cfg.envs), n_demos=cfg.n_demos, image_size=cfg.image_size,
                        max_episode_steps=cfg.max_episode_steps, epochs=cfg.epochs, eval_every_epochs=0,
                        n_episodes=cfg.n_episodes, seeds=[cfg.seed])
    encoders = [EncoderSpec(label="pixio_pretrained", source="checkpoint", path=str(pretrained),
                            image_size=cfg.image_size, embedding=cfg.embedding),
                EncoderSpec(label="random_init", source="checkpoint", path=str(random), image_size=cfg.image_size,
                            embedding=cfg.embedding)]
    return BenchmarkConfig(suite=suite, encoders=encoders, run_dir=str(out), data_root=cfg.data_root,
                           cache_dir=cfg.cache_dir, n_envs=cfg.n_envs, vector_mode=cfg.vector_mode,
                           num_threads=cfg.num_threads or None, progress=cfg.progress)


def loss_plot(history: list, path: Path) -> Path | None:
    """Pretraining loss against step (PNG)."""
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, losses = zip(*history)
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(steps, losses)
    ax.set_xlabel("step")
    ax.set_ylabel("masked-patch MSE")
    ax.set_title("Pixio pretraining loss")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def rollout_video(policy_dir: str, task: str, cfg: QuickstartConfig, out: Path) -> Path | None:
    """One rollout of a trained policy as mp4."""
    from pixio_robot.evaluation import evaluate_policy
    from pixio_robot.policies import load_policy

    res = evaluate_policy(load_policy(policy_dir), task, n_episodes=1, n_envs=1, seed=cfg.seed,
                          image_size=cfg.image_size, max_episode_steps=cfg.max_episode_steps, video_dir=out,
                          n_videos=1, progress=False, stop_on_success=False)
    video = res.episodes[0].video
    return Path(video) if video else None


def _rel(path: Path | str | None, root: Path) -> str:
    return os.path.relpath(path, root) if path else "-"


def write_summary(out: Path, cfg: QuickstartConfig, pre: dict, bench: dict, media: dict, times: dict) -> Path:
    """report.md: what ran, the scores with intervals, the media, the timings."""
    from pixio_robot.utils.io import atomic_write_text

    table = "(no finished cells: see the grid's cells/*.json for the errors)"
    if "report" in bench:  # rollouts ran only after the last epoch: best == final, keep one table
        table = "## Success of the final policy (%)" + \
            Path(bench["report"]["markdown"]).read_text().split("## Final checkpoint", 1)[1]
    lines = [
        "# pixio_robot quickstart", "",
        f"Pretrained `{cfg.pretrain_model}` on {cfg.sim_frames} simulator frames for {pre['steps']} steps "
        f"(batch {cfg.pretrain_batch_size}, {cfg.pretrain_image_size} px): loss {pre.get('loss_start') or float('nan'):.4f}"
        f" -> {pre.get('loss_end') or float('nan'):.4f}.",
        f"Behaviour cloning (CortexBench MLP, frozen encoders read as `{cfg.embedding}` embeddings, "
        f"{cfg.n_demos} demos, {cfg.epochs} epochs) on "
        f"{', '.join(cfg.envs)}; {cfg.n_episodes} rollouts of the final policy per task "
        f"(seed {cfg.seed}, {cfg.max_episode_steps} steps max). `random_init` is the same architecture with "
        "random weights: the gap between the columns is what pretraining bought.", "",
        table, "",
        "## Media", "",
        f"- pretraining loss: ![loss]({_rel(media.get('loss'), out)})",
        f"- reconstruction grid (original | masked | reconstruction): ![recon]({_rel(media.get('recon'), out)})",
        f"- success, final checkpoint: ![final]({_rel(media.get('final'), out)})",
        f"- rollout video (pixio_pretrained, {cfg.envs[0]}): [{_rel(media.get('video'), out)}]"
        f"({_rel(media.get('video'), out)})", "",
        "## Wall time", "", "| step | seconds |", "|---|---|",
        *[f"| {k} | {v:.0f} |" for k, v in times.items()], "",
        f"Files: pretraining run `{_rel(pre['run_dir'], out)}`, encoders `pixio_pretrained` = "
        f"`{_rel(pre.get('encoder_dir'), out)}`, grid `{_rel(bench['run_dir'], out)}` "
        "(cells/*.json, report/results.csv).",
    ]
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def run_quickstart(cfg: QuickstartConfig) -> dict:
    """Run the four steps (each resumes); return the report paths and timings. The run dir is
    locked for the whole run (a second quickstart there stops at once naming this one); each step
    guards its own subdirectory (pretrain/, bc/) as its entry does."""
    from pixio_robot.utils.rundir import run_dir_lock

    with run_dir_lock(Path(cfg.run_dir)):
        return _run_quickstart(cfg)


def _run_quickstart(cfg: QuickstartConfig) -> dict:
    import torch

    from pixio_robot.benchmark import run_benchmark
    from pixio_robot.pretrain import run_pretrain
    from pixio_robot.utils.io import save_json
    from pixio_robot.utils.run import prepare_run_dir

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    out = Path(cfg.run_dir)
    prepare_run_dir(out, cfg)
    times: dict[str, float] = {}
    t0 = t = time.perf_counter()

    log.info("quickstart 1/4: pretraining a tiny Pixio on simulator frames (%d steps)", cfg.pretrain_steps)
    pre = run_pretrain(pretrain_config(cfg, out / "pretrain"))
    if not pre.get("encoder_dir"):
        raise RuntimeError(f"pretraining wrote no encoder export in {out / 'pretrain'}")
    times["pretrain (incl. rendering the corpus once)"] = time.perf_counter() - t
    twin = random_twin(Path(pre["encoder_dir"]), out / "random_encoder")

    log.info("quickstart 2-3/4: demos, BC on the frozen pretrained and random encoders, rollouts")
    t = time.perf_counter()
    bench = run_benchmark(benchmark_config(cfg, out / "bc", Path(pre["encoder_dir"]), twin))
    times["demos + feature cache + BC + rollouts"] = time.perf_counter() - t
    if bench["failed"]:
        log.error("failed cells: %s (see %s/cells/*.json)", bench["failed"], bench["run_dir"])

    log.info("quickstart 4/4: report")
    t = time.perf_counter()
    media: dict[str, Path | None] = {"loss": loss_plot(pre.get("loss_history") or [], out / "pretrain_loss.png")}
    recons = sorted((out / "pretrain" / "recon").glob("*.png"))
    if recons:
        media["recon"] = Path(shutil.copyfile(recons[-1], out / "reconstruction.png"))
    if "report" in bench:
        media["final"] = Path(shutil.copyfile(bench["report"]["final"], out / "success_final.png"))
    cell = Path(bench["run_dir"]) / "cells"
    first = sorted(cell.glob(f"*{cfg.envs[0].replace('/', '_')}__pixio_pretrained__*.json"))
    if first:
        import json

        rec = json.loads(first[0].read_text())
        if rec.get("status") == "done":
            media["video"] = rollout_video(rec["policy_dir"], cfg.envs[0], cfg, out / "video")
    times["report + rollout video"] = time.perf_counter() - t
    times["total"] = time.perf_counter() - t0
    report = write_summary(out, cfg, pre, bench, media, times)
    result = {"report": str(report), "times": times, "benchmark": bench,
              "media": {k: str(v) for k, v in media.items() if v}}
    save_json(out / "quickstart.json", result)
    print(report.read_text())
    print(f"\nQuickstart report: {report.resolve()}  (total {times['total'] / 60:.1f} min)")
    return result


