"""Frozen-feature cache: encode every frame of a dataset once, memory-map it in training.

Key = sha256(encoder weights digest, preprocessing spec, dataset content fingerprint, camera
key). Any change to the weights, the resize / normalisation / embedding choice, or the dataset
files gives a new key, so the cache rebuilds itself; a stale entry is never read. Entries are
written to a temporary folder and renamed into place (a killed build leaves no half entry).

Layout: <cache_dir>/<key>/features.npy (float32, or float16 with `dtype="float16"` - half the disk
for patch-token caches; [N, *F], np.load(mmap_mode="r")) + meta.json.
Decoded frames can be cached the same way (`FeatureCache.frames`, uint8 [N,H,W,3], keyed by
the dataset only) so fine-tuning and repeated encoder sweeps skip video decoding.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from pixio_robot.utils.io import file_lock, save_json
from pixio_robot.utils.logging import get_logger

log = get_logger(__name__)
FEATURES = "features.npy"
FRAMES = "frames.npy"
META = "meta.json"
_FULL_HASH_LIMIT = 64 << 20  # files above this hash their size + first and last MiB


class FrameSource(Protocol):
    """Anything with N frames that can say what its content is."""

    def __len__(self) -> int: ...

    def fingerprint(self) -> str: ...

    def iter_batches(self, batch_size: int) -> Iterator[np.ndarray]:
        """uint8 [b,H,W,3] batches in index order."""
        ...


def _hash_file(h, path: Path) -> None:
    size = path.stat().st_size
    h.update(f"{size}|".encode())
    with open(path, "rb") as f:
        if size <= _FULL_HASH_LIMIT:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        else:
            h.update(f.read(1 << 20))
            f.seek(size - (1 << 20))
            h.update(f.read(1 << 20))


def directory_fingerprint(root: str | Path, exclude: tuple[str, ...] = (".cache",)) -> str:
    """Content hash (16 hex) of every file under `root` (relative path + bytes)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset directory {root} does not exist")
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if rel.parts[0] in exclude or any(part.startswith(".") for part in rel.parts):
            continue
        h.update(str(rel).encode() + b"\0")
        _hash_file(h, path)
    return h.hexdigest()[:16]


class ArrayFrames:
    """Frames already in memory (tests, benchmarks, replay buffers)."""

    def __init__(self, frames: np.ndarray, name: str = "array") -> None:
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"ArrayFrames needs uint8 [N,H,W,3], got {frames.dtype} {frames.shape}")
        self.frames, self.name = frames, name

    def __len__(self) -> int:
        return len(self.frames)

    def fingerprint(self) -> str:
        h = hashlib.sha256(f"{self.name}|{self.frames.shape}|".encode())
        h.update(np.ascontiguousarray(self.frames).tobytes())
        return h.hexdigest()[:16]

    def iter_batches(self, batch_size: int) -> Iterator[np.ndarray]:
        for i in range(0, len(self.frames), batch_size):
            yield np.asarray(self.frames[i:i + batch_size])


class LeRobotFrames:
    """One camera key of a LeRobotDataset on disk, decoded episode by episode (video) or in
    chunks (image features), as uint8 [b,H,W,3] in dataset-index order."""

    def __init__(self, dataset, image_key: str) -> None:
        keys = list(dataset.meta.camera_keys)
        if image_key not in keys:
            raise KeyError(f"camera key {image_key!r} not in dataset {dataset.root}; it has {keys}")
        self.ds, self.key = dataset, image_key
        self._fp: str | None = None

    def __len__(self) -> int:
        return self.ds.num_frames

    def fingerprint(self) -> str:
        if self._fp is None:
            self._fp = directory_fingerprint(self.ds.root) + ":" + self.key
        return self._fp

    @staticmethod
    def _to_uint8(x: torch.Tensor) -> np.ndarray:
        # float [b,3,H,W] in [0,1] -> uint8 [b,H,W,3]
        return (x.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()

    def iter_batches(self, batch_size: int) -> Iterator[np.ndarray]:
        hf = self.ds.hf_dataset
        if self.key not in self.ds.meta.video_keys:
            for i in range(0, len(hf), batch_size):
                imgs = hf[i:i + batch_size][self.key]  # list of float [3,H,W]
                yield self._to_uint8(torch.stack(list(imgs)))
            return
        from lerobot.datasets.video_utils import decode_video_frames

        from pixio_robot.data.lerobot_io import dataset_video_backend

        cols = hf.with_format("numpy", columns=["episode_index", "timestamp"])[:]
        ep_idx, ts = cols["episode_index"], cols["timestamp"]
        starts = np.flatnonzero(np.r_[True, ep_idx[1:] != ep_idx[:-1]])
        ends = np.r_[starts[1:], len(ep_idx)]
        for s, e in zip(starts, ends):
            ep = int(ep_idx[s])
            meta = self.ds.meta.episodes[ep]
            shift = float(meta[f"videos/{self.key}/from_timestamp"])
            path = self.ds.root / self.ds.meta.get_video_file_path(ep, self.key)
            for i in range(s, e, batch_size):
                q = [shift + float(t) for t in ts[i:min(i + batch_size, e)]]
                frames = decode_video_frames(path, q, self.ds.tolerance_s, dataset_video_backend(self.ds))
                yield self._to_uint8(frames.reshape(-1, *frames.shape[-3:]))


class FeatureCache:
    """Disk cache of frozen-encoder features (and decoded frames), memory-mapped on read."""

    def __init__(self, cache_dir: str | Path, dtype: str = "float32") -> None:
        if dtype not in ("float32", "float16"):
            raise ValueError(f"feature cache dtype must be float32 or float16, got {dtype!r}")
        self.root = Path(cache_dir).expanduser()
        self.dtype = dtype

    # -- keys -----------------------------------------------------------------------------------
    def key_parts(self, adapter, source: FrameSource) -> dict:
        return {"dtype": self.dtype, "encoder_digest": adapter.encoder_digest(), "preprocessing": adapter.preprocessing_spec(),
                "dataset": source.fingerprint(), "n_frames": len(source)}

    def key(self, adapter, source: FrameSource, parts: dict | None = None) -> str:
        """`parts`: `key_parts(adapter, source)` when the caller has them (hashing the weights costs)."""
        blob = json.dumps(parts or self.key_parts(adapter, source), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def _entry(self, key: str) -> Path:
        return self.root / key

    # -- features -------------------------------------------------------------------------------
    def lookup(self, adapter, source: FrameSource) -> np.ndarray | None:
        """Memory-mapped features if a valid entry exists, else None."""
        return self._features(self.key(adapter, source), adapter, source)

    def _features(self, key: str, adapter, source: FrameSource) -> np.ndarray | None:
        return self._open(self._entry(key), FEATURES, (len(source), *adapter.feature_shape))

    def get(self, adapter, source: FrameSource, *, batch_size: int = 64, progress: bool = True
            ) -> tuple[np.ndarray, bool]:
        """(features [N,*F] memmap, hit). Builds the entry on a miss."""
        parts = self.key_parts(adapter, source)  # the weights are hashed once per call
        key = self.key(adapter, source, parts)
        found = self._features(key, adapter, source)
        if found is None:
            with file_lock(self.root / f".{key}.lock"):  # one builder per entry (parallel benchmark cells)
                found = self._features(key, adapter, source)  # built by another process while this one waited?
                if found is None:
                    return self.build(adapter, source, batch_size=batch_size, progress=progress, parts=parts), False
        log.info("feature cache hit: %s (%s)", self._entry(key), found.shape)
        return found, True

    @torch.no_grad()
    def build(self, adapter, source: FrameSource, *, batch_size: int = 64, progress: bool = True,
              parts: dict | None = None) -> np.ndarray:
        """Encode every frame in batches (on the adapter's device) and store the features."""
        parts = parts or self.key_parts(adapter, source)
        key = self.key(adapter, source, parts)
        n, shape = len(source), (len(source), *adapter.feature_shape)
        was_training = adapter.training
        adapter.eval()
        t0 = time.perf_counter()

        def write(tmp: Path) -> None:
            out = np.lib.format.open_memmap(tmp / FEATURES, mode="w+", dtype=self.dtype, shape=shape)
            i = 0
            bar = _progress(n, "encoding frames", progress)
            for batch in source.iter_batches(batch_size):
                feats = adapter.encode(torch.from_numpy(batch)).float().cpu().numpy()
                out[i:i + len(feats)] = feats
                i += len(feats)
                bar.update(len(feats))
            bar.close()
            if i != n:
                raise RuntimeError(f"frame source yielded {i} frames, expected {n}")
            out.flush()
            del out

        try:
            self._write_entry(key, write, {**parts, "shape": list(shape)})
        finally:
            adapter.train(was_training)
        log.info("feature cache built: %d frames in %.1fs -> %s", n, time.perf_counter() - t0, self._entry(key))
        return self._open(self._entry(key), FEATURES, shape)

    # -- decoded frames -------------------------------------------------------------------------
    def frames(self, source: FrameSource, *, batch_size: int = 256, progress: bool = True) -> np.ndarray:
        """All frames of `source` as a uint8 [N,H,W,3] memmap (decoded once, keyed by content)."""
        key = "frames-" + hashlib.sha256(source.fingerprint().encode()).hexdigest()[:14]
        entry = self._entry(key)
        found = self._open_frames(entry, source)
        if found is not None:
            return found
        with file_lock(self.root / f".{key}.lock"):  # one builder per entry; the others then read it
            found = self._open_frames(entry, source)
            return found if found is not None else self._build_frames(key, source, batch_size, progress)

    def _open_frames(self, entry: Path, source: FrameSource) -> np.ndarray | None:
        meta = self._read_meta(entry)
        if meta is None:
            return None
        found = self._open(entry, FRAMES, tuple(meta["shape"]))
        return found if found is not None and len(found) == len(source) else None

    def _build_frames(self, key: str, source: FrameSource, batch_size: int, progress: bool) -> np.ndarray:
        entry = self._entry(key)
        batches = iter(source.iter_batches(batch_size))
        first = next(batches, None)
        if first is None:
            raise ValueError("the frame source is empty")
        shape = (len(source), *first.shape[1:])

        def write(tmp: Path) -> None:
            out = np.lib.format.open_memmap(tmp / FRAMES, mode="w+", dtype=np.uint8, shape=shape)
            i = 0
            bar = _progress(len(source), "decoding frames", progress)
            for batch in _chain(first, batches):
                out[i:i + len(batch)] = batch
                i += len(batch)
                bar.update(len(batch))
            bar.close()
            out.flush()
            del out

        self._write_entry(key, write, {"dataset": source.fingerprint(), "shape": list(shape), "dtype": "uint8"})
        return self._open(entry, FRAMES, shape)

    # -- storage --------------------------------------------------------------------------------
    def _write_entry(self, key: str, write, meta: dict) -> None:
        entry = self._entry(key)
        tmp = self.root / f".{key}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            write(tmp)
            save_json(tmp / META, {**meta, "key": key, "created": time.time()})
            if entry.exists():  # stale or corrupt (a valid one would have been a hit)
                shutil.rmtree(entry)
            os.replace(tmp, entry)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @staticmethod
    def _read_meta(entry: Path) -> dict | None:
        try:
            return json.loads((entry / META).read_text())
        except (OSError, ValueError):
            return None

    def _open(self, entry: Path, name: str, shape: tuple[int, ...]) -> np.ndarray | None:
        meta = self._read_meta(entry)
        if meta is None or tuple(meta.get("shape", ())) != tuple(shape):
            return None
        try:
            arr = np.load(entry / name, mmap_mode="r")
        except (OSError, ValueError):
            return None
        return arr if arr.shape == tuple(shape) else None

    def entries(self) -> list[Path]:
        return sorted(p for p in self.root.glob("*") if (p / META).exists()) if self.root.exists() else []

    def prune(self, keep: set[str]) -> list[Path]:
        """Delete every entry whose key is not in `keep`; returns the removed folders."""
        removed = [p for p in self.entries() if p.name not in keep]
        for p in removed:
            shutil.rmtree(p, ignore_errors=True)
        return removed


def _chain(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="frame", disable=not enabled, leave=False)


__all__ = ["ArrayFrames", "FeatureCache", "FrameSource", "LeRobotFrames", "directory_fingerprint"]
