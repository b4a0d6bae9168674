"""Pretraining data pipeline throughput: images/s per loader worker (decode + curation + crop/resize).

Makes its own corpus in a temporary directory (random-texture JPEGs as an image folder and as
WebDataset shards) and also reads the built-in simulator corpus when it is cached. Prints
images/s of one lane (= one loader worker) per source, then a DataLoader with 1 vs N workers.

  python benchmarks/bench_pretrain_data.py [--images 400] [--side 480] [--size 128] [--workers 2]
  python benchmarks/bench_pretrain_data.py --side 1024 --size 256     # web-photo sizes, the paper's crop

JPEGs decode at reduced scale when the crop allows (`data.jpeg_draft`, on by default); the
"full-size jpeg decode" row turns that off.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from pixio_robot.pretrain.config import CurationConfig, DataConfig, SourceConfig
from pixio_robot.pretrain.sources import build_sources
from pixio_robot.pretrain.stream import PretrainStream


def make_corpus(root: Path, n: int, side: int) -> tuple[Path, str]:
    """n JPEGs (smooth noise + shapes, side x 3/4 side) in a folder and in 4 WebDataset shards."""
    rng = np.random.default_rng(0)
    folder = root / "images"
    folder.mkdir()
    blobs = []
    for i in range(n):
        small = rng.integers(0, 256, (side // 16, side // 12, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((side, side * 3 // 4), Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        blobs.append(buf.getvalue())
        (folder / f"{i:05d}.jpg").write_bytes(blobs[-1])
    for s in range(4):
        with tarfile.open(root / f"shard-{s}.tar", "w") as tar:
            for i in range(s, n, 4):
                info = tarfile.TarInfo(f"{i:05d}.jpg")
                info.size = len(blobs[i])
                tar.addfile(info, io.BytesIO(blobs[i]))
    return folder, str(root / "shard-{0..3}.tar")


def lane_rate(cfg: dict, size: int, batches: int, batch: int, curation: CurationConfig, draft: bool = True) -> float:
    """Images/s of one lane (what one loader worker delivers), median of 3 repeats."""
    data = DataConfig(sources=cfg, num_workers=0, jpeg_draft=draft)
    stream = PretrainStream(build_sources(cfg, progress=False), data, curation, seed=0, img_size=size,
                            batch_size=batch, noise_dim=16)
    rates = []
    it = iter(stream)
    next(it)  # warm-up
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(batches):
            next(it)
        rates.append(batches * batch / (time.perf_counter() - t))
    return statistics.median(rates)


def loader_rate(cfg: dict, size: int, batches: int, batch: int, workers: int) -> float:
    data = DataConfig(sources=cfg, num_workers=workers)
    stream = PretrainStream(build_sources(cfg, progress=False), data, CurationConfig(), seed=0, img_size=size,
                            batch_size=batch, noise_dim=16)
    loader = DataLoader(stream, batch_size=None, num_workers=workers, prefetch_factor=4 if workers else None)
    it = iter(loader)
    for _ in range(max(workers, 1) * 2):  # workers started and warm
        next(it)
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch / (time.perf_counter() - t)


def main() -> None:
    from pixio_robot.utils.logging import setup_logging

    setup_logging()  # the library's INFO records (it installs no handler itself)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--side", type=int, default=480)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--batches", type=int, default=6)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        folder, shards = make_corpus(Path(tmp), args.images, args.side)
        print(f"corpus: {args.images} JPEGs {args.side}x{args.side * 3 // 4} -> crops {args.size}px, batch {args.batch}")
        rows = {
            "folder (jpeg decode + crop)": ({"f": SourceConfig(type="folder", path=str(folder))}, CurationConfig()),
            "folder, full-size jpeg decode": ({"f": SourceConfig(type="folder", path=str(folder))}, CurationConfig(),
                                              False),
            "folder + entropy/res filters": ({"f": SourceConfig(type="folder", path=str(folder))},
                                             CurationConfig(entropy_threshold=4.5, min_resolution=64)),
            "webdataset shards": ({"w": SourceConfig(type="webdataset", path=shards)}, CurationConfig()),
        }
        from pixio_robot.pretrain.simframes import corpus_key, default_cache_root

        sim = SourceConfig(type="sim")
        if (default_cache_root() / corpus_key(sim.envs, sim.frames, sim.render_size, sim.frame_every, 0)
                / "meta.json").exists():
            rows["sim corpus (memmap, no decode)"] = ({"s": sim}, CurationConfig())
        base = None
        for name, (cfg, cur, *draft) in rows.items():
            r = lane_rate(cfg, args.size, args.batches, args.batch, cur, *draft)
            base = base or r
            print(f"  per worker  {name:34s} {r:8.0f} images/s  ({r / base:.2f}x folder)")
        cfg = {"f": SourceConfig(type="folder", path=str(folder))}
        one = loader_rate(cfg, args.size, args.batches * 2, args.batch, 1)
        many = loader_rate(cfg, args.size, args.batches * 2, args.batch, args.workers)
        print(f"  DataLoader folder: 1 worker {one:.0f} images/s, {args.workers} workers {many:.0f} images/s "
              f"(ratio {many / one:.2f}x on {torch.get_num_threads()} torch thread(s), "
              f"{len(__import__('os').sched_getaffinity(0))} cores)")


if __name__ == "__main__":
    main()
