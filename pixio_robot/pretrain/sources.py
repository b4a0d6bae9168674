"""Image sources for pretraining: image folder, WebDataset shards, LeRobotDataset frames, sim frames.

Two kinds:
- *indexed* sources (folder, lerobot, sim) know their length and load any item by index, so the
  sample order is a pure function of (seed, position) and identical for any number of ranks;
- *streaming* sources (webdataset) are read shard by shard; shards are split across ranks and
  loader workers ("lanes"), so a corpus far bigger than a disk streams through.

`load` returns an RGB uint8 array [H, W, 3] or raises `CorruptSample` (counted, never fatal).
A missing or empty source fails at construction with the path and what to do.
"""

from __future__ import annotations

import glob
import io
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pixio_robot.pretrain.config import SourceConfig

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff")


class CorruptSample(Exception):
    """An image or shard member that cannot be decoded."""


class SourceError(ValueError):
    """A source that cannot be used at all (missing, empty, or filtered to nothing)."""


# images decoded from a high-bit-depth mode in this process (the stream attributes them to sources)
DECODE_COUNTS = {"high_bit_depth": 0}
HIGH_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def high_bit_to_uint8(im: Image.Image) -> np.ndarray:
    """A PIL image of a mode above 8 bits per channel -> uint8 [H, W, 3] by the range of its type
    (`convert("RGB")` would saturate: a 16-bit grey of 30000 becomes 255):
    - I;16* (16-bit unsigned): value >> 8 (value * 255 / 65535 rounded down to the top byte);
    - I (32-bit signed): when every value lies in 0..65535 (how PIL opens 16-bit PNG / TIFF data) the
      16-bit rule; else negatives -> 0 and value >> 23 (the int32 maximum maps to 255);
    - F (float): values in [0, 1] -> round(value * 255); an image with values above 1 is divided by
      its own maximum first; NaN and negatives -> 0.
    Grey images are repeated to 3 channels."""
    a = np.asarray(im)
    if im.mode == "F":
        f = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0).clip(min=0.0)
        top = float(f.max()) if f.size else 0.0
        if top > 1.0:
            f = f / top
        out = np.rint(f * 255.0).astype(np.uint8)
    else:
        a = a.astype(np.int64)
        if im.mode.startswith("I;16") or (a.size and a.min() >= 0 and a.max() <= 0xFFFF):
            out = (a.clip(0, 0xFFFF) >> 8).astype(np.uint8)
        else:
            out = (a.clip(0, 2**31 - 1) >> 23).astype(np.uint8)
    if out.ndim == 2:
        out = np.repeat(out[:, :, None], 3, axis=2)  # (H, W, 3)
    return np.ascontiguousarray(out[:, :, :3])


def decode_image(data: bytes | str | Path, draft: Callable[[int, int], tuple[int, int] | None] | None = None
                 ) -> np.ndarray:
    """Bytes or a path -> RGB uint8 [H, W, 3]; truncated / corrupt files raise CorruptSample.
    Every PIL mode decodes: 8-bit ones (1, L, LA, P, PA, RGBA, CMYK, YCbCr, ...) by `convert("RGB")`
    (alpha dropped), 16-bit / 32-bit / float ones by `high_bit_to_uint8` (counted in DECODE_COUNTS).

    `draft(width, height)` may return a size the caller needs no more pixels than: a JPEG then
    decodes at 1/2, 1/4 or 1/8 scale in libjpeg's DCT (PIL's `draft`, the largest reduction that
    stays at least that size), much cheaper than decoding everything and resizing it away."""
    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as im:
            if draft is not None and im.format == "JPEG":
                want = draft(*im.size)
                if want is not None:
                    im.draft("RGB", want)
            im.load()
            return image_to_uint8(im)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise CorruptSample(str(e)) from e


def image_to_uint8(im: Image.Image) -> np.ndarray:
    """A loaded PIL image of any mode -> RGB uint8 [H, W, 3] (the rules of `decode_image`)."""
    if im.mode in HIGH_BIT_MODES:
        DECODE_COUNTS["high_bit_depth"] += 1
        return high_bit_to_uint8(im)
    # convert() copies even an RGB image (a 1024x768 JPEG: 12.5 ms -> 8.9 ms without the copy, 2 cores)
    return np.asarray(im if im.mode == "RGB" else im.convert("RGB"))


class Source:
    """Base class: `name`, `weight`, `path` (for messages), `indexed`."""

    indexed = True

    def __init__(self, name: str, cfg: SourceConfig) -> None:
        self.name, self.cfg, self.weight = name, cfg, float(cfg.weight)
        self.path = cfg.path

    def describe(self) -> str:
        return f"source {self.name!r} ({self.cfg.type}: {self.path})"

    def __len__(self) -> int:
        raise NotImplementedError

    def sample_id(self, index: int) -> str:
        raise NotImplementedError

    def load(self, index: int, draft=None) -> np.ndarray:
        """The decoded image [H, W, 3]; `draft` as in `decode_image` (sources of arrays ignore it)."""
        raise NotImplementedError


class FolderSource(Source):
    """Every jpg / jpeg / png / webp below a directory (recursive), in sorted order."""

    def __init__(self, name: str, cfg: SourceConfig) -> None:
        super().__init__(name, cfg)
        root = Path(cfg.path).expanduser()
        if not root.is_dir():
            raise SourceError(f"{self.describe()}: directory {root} does not exist; fix data.sources."
                              f"{name}.path")
        self.root = root
        self.files = sorted(str(p.relative_to(root)) for p in root.rglob("*")
                            if p.suffix.lower() in IMAGE_EXTS and p.is_file())
        if not self.files:
            raise SourceError(f"{self.describe()}: no {'/'.join(IMAGE_EXTS)} files below {root}")

    def __len__(self) -> int:
        return len(self.files)

    def sample_id(self, index: int) -> str:
        return f"{self.name}/{self.files[index]}"

    def load(self, index: int, draft=None) -> np.ndarray:
        return decode_image(self.root / self.files[index], draft)


class SimSource(Source):
    """The built-in simulator corpus (rendered on first use, memory-mapped after)."""

    def __init__(self, name: str, cfg: SourceConfig, seed: int = 0, progress: bool = True) -> None:
        super().__init__(name, cfg)
        from pixio_robot.pretrain.simframes import ensure_corpus, load_corpus

        self.directory = ensure_corpus(cfg.envs, cfg.frames, cfg.render_size, cfg.frame_every, seed,
                                       cfg.cache_dir, progress)
        self.path = str(self.directory)
        _, self.ids = load_corpus(self.directory)
        self._frames: np.ndarray | None = None  # opened lazily in each loader worker

    def __len__(self) -> int:
        return len(self.ids)

    def sample_id(self, index: int) -> str:
        return f"{self.name}/{self.ids[index]}"

    def load(self, index: int, draft=None) -> np.ndarray:
        if self._frames is None:
            from pixio_robot.pretrain.simframes import load_corpus

            self._frames, _ = load_corpus(self.directory)
        return np.asarray(self._frames[index])

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_frames": None}


class LeRobotSource(Source):
    """Camera frames of a LeRobotDataset (v3, local root; a hub id downloads only when named)."""

    def __init__(self, name: str, cfg: SourceConfig) -> None:
        super().__init__(name, cfg)
        root = Path(cfg.path).expanduser() if cfg.path else None
        if root is not None and not root.exists() and not cfg.repo_id:
            raise SourceError(f"{self.describe()}: {root} does not exist; fix data.sources.{name}.path")
        if root is not None and not (root / "meta" / "info.json").exists() and not cfg.repo_id:
            raise SourceError(f"{self.describe()}: {root} is not a LeRobotDataset root (no meta/info.json); "
                              "point data.sources.<name>.path at one or give repo_id=<hub id>")
        self.repo_id = cfg.repo_id or (root.name if root else "dataset")
        self._dataset = None
        self._columns: dict = {}  # camera key -> the hf dataset's column (image features)
        self._index = None  # (episode_index, timestamp) of every frame (video features)
        meta = self._open().meta
        cams = list(meta.camera_keys)
        if not cams:
            raise SourceError(f"{self.describe()}: the dataset has no camera features")
        depth = [k for k in meta.depth_keys if k in cams]
        # Pixio learns from colour frames: depth maps join only when named (then by the 16-bit / float rules)
        wanted = list(cfg.camera_keys) or [k for k in cams if k not in depth] or cams
        unknown = [k for k in wanted if k not in cams]
        if unknown:
            raise SourceError(f"{self.describe()}: camera keys {unknown} not in the dataset; it has {cams}")
        self.cameras = wanted
        self.num_frames = int(meta.total_frames)
        if self.num_frames == 0:
            raise SourceError(f"{self.describe()}: the dataset has no frames")
        self.path = str(root or self.repo_id)

    def _open(self):
        if self._dataset is None:
            from lerobot.datasets.lerobot_dataset import LeRobotDataset

            root = Path(self.cfg.path).expanduser() if self.cfg.path else None
            self._dataset = LeRobotDataset(self.repo_id, root=root, video_backend=self.cfg.video_backend)
        return self._dataset

    def __len__(self) -> int:
        return self.num_frames * len(self.cameras)

    def sample_id(self, index: int) -> str:
        frame, cam = divmod(index, len(self.cameras))
        return f"{self.name}/{frame}/{self.cameras[cam]}"

    def load(self, index: int, draft=None) -> np.ndarray:
        frame, cam = divmod(index, len(self.cameras))
        key = self.cameras[cam]
        try:
            img = self._frame(frame, key)  # an image feature's PIL image, or a video frame: float [C, H, W] in [0, 1]
        except Exception as e:  # a broken video or parquet row: skip it like a corrupt image
            raise CorruptSample(f"frame {frame} {key}: {type(e).__name__}: {e}") from e
        if isinstance(img, Image.Image):  # any mode: grey, 16-bit depth (I;16), float depth (F), RGBA, ...
            return image_to_uint8(img)
        return (img.permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()  # (H, W, 3)

    def _frame(self, frame: int, key: str) -> torch.Tensor | Image.Image:
        """One camera of one frame, decoding only that camera (`LeRobotDataset[i]` decodes all of
        them: N cameras cost N decodes). An image feature comes as the stored PIL image (LeRobot's
        torch transform keeps a 16-bit depth map in its native units, 1 channel, which no [0, 1]
        rule fits); a video frame as `LeRobotDataset[i][key]` gives it."""
        ds = self._open()
        if key not in ds.meta.video_keys:
            if key not in self._columns:
                self._columns[key] = ds.hf_dataset.select_columns([key]).with_format(None)
            return self._columns[key][frame][key]
        from lerobot.datasets.video_utils import decode_video_frames

        from pixio_robot.data.lerobot_io import dataset_video_backend

        if self._index is None:
            cols = ds.hf_dataset.with_format("numpy", columns=["episode_index", "timestamp"])[:]
            self._index = (cols["episode_index"], cols["timestamp"])
        ep, ts = int(self._index[0][frame]), float(self._index[1][frame])
        shift = float(ds.meta.episodes[ep][f"videos/{key}/from_timestamp"])
        path = ds.root / ds.meta.get_video_file_path(ep, key)
        frames = decode_video_frames(path, [shift + ts], ds.tolerance_s, dataset_video_backend(ds))
        return frames.reshape(-1, *frames.shape[-3:])[0]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_dataset": None, "_columns": {}, "_index": None}


def expand_shards(pattern: str) -> list[str]:
    """Brace-expand (`shard-{000..099}.tar`) then glob local paths; URLs are kept as they are."""
    import braceexpand

    urls: list[str] = []
    for p in braceexpand.braceexpand(pattern):
        if "://" in p or p.startswith("pipe:"):
            urls.append(p)
        else:
            hits = sorted(glob.glob(str(Path(p).expanduser())))
            urls.extend(hits)
    return urls


class WebDatasetSource(Source):
    """WebDataset tar shards: samples are groups of members sharing a key; the first image member
    (jpg / jpeg / png / webp) is used. Truncated shards end early and are counted."""

    indexed = False

    def __init__(self, name: str, cfg: SourceConfig) -> None:
        super().__init__(name, cfg)
        self.shards = expand_shards(cfg.path)
        if not self.shards:
            raise SourceError(f"{self.describe()}: the pattern matches no shard; check data.sources.{name}.path "
                              "(a local glob like /data/shards/*.tar or a brace pattern shard-{000..009}.tar)")

    def lane_plan(self, lane: int, num_lanes: int, pass_: int, seed: int) -> list[tuple[str, int, int]]:
        """(shard, sub, nsub) read by this lane in this pass: whole shards when there are at least as many
        shards as lanes, else every nsub-th sample of a shared shard."""
        order = np.random.default_rng([seed, 17, pass_]).permutation(len(self.shards))
        shards = [self.shards[i] for i in order]
        n = len(shards)
        if n >= num_lanes:
            return [(s, 0, 1) for s in shards[lane::num_lanes]]
        sharing = [ln for ln in range(num_lanes) if ln % n == lane % n]
        return [(shards[lane % n], sharing.index(lane), len(sharing))]

    def iter_raw(self, lane: int, num_lanes: int, pass_: int, seed: int, stats: dict) -> Iterator[tuple[str, bytes]]:
        """Yield (sample id, image bytes) of one pass for one lane."""
        for shard, sub, nsub in self.lane_plan(lane, num_lanes, pass_, seed):
            k = 0
            for key, data in _iter_tar(shard, stats):
                if k % nsub == sub:
                    yield f"{self.name}/{Path(shard).name}/{key}", data
                k += 1


def _iter_tar(shard: str, stats: dict) -> Iterator[tuple[str, bytes]]:
    """Stream (key, image bytes) from one tar shard; a corrupt shard stops early and is counted."""
    try:
        if "://" in shard or shard.startswith("pipe:"):
            from webdataset.gopen import gopen

            stream = gopen(shard, "rb")
        else:
            stream = open(shard, "rb")  # noqa: SIM115 (closed below)
    except OSError:
        stats["corrupt_shards"] = stats.get("corrupt_shards", 0) + 1
        return
    current, image = None, None
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                base = member.name.rsplit("/", 1)[-1]
                key = member.name[: len(member.name) - len(base)] + base.split(".", 1)[0]
                ext = "." + base.split(".", 1)[1].lower() if "." in base else ""
                if key != current:
                    if image is not None:
                        yield current, image
                    current, image = key, None
                if image is None and ext in IMAGE_EXTS:
                    f = tar.extractfile(member)
                    image = f.read() if f is not None else None
        if image is not None:
            yield current, image
    except (tarfile.TarError, OSError, EOFError):
        stats["corrupt_shards"] = stats.get("corrupt_shards", 0) + 1
    finally:
        stream.close()


def build_sources(sources: dict[str, SourceConfig], seed: int = 0, progress: bool = True) -> list[Source]:
    """Instantiate every configured source (fails early on missing / empty ones)."""
    if not sources:
        raise SourceError("no data source configured: choose one with data=sim | folder | webdataset | lerobot")
    built: list[Source] = []
    for name, cfg in sources.items():
        if cfg.type == "folder":
            built.append(FolderSource(name, cfg))
        elif cfg.type == "webdataset":
            built.append(WebDatasetSource(name, cfg))
        elif cfg.type == "lerobot":
            built.append(LeRobotSource(name, cfg))
        else:
            built.append(SimSource(name, cfg, seed=seed, progress=progress))
    return built
