"""The pretraining data stream: mixed sources -> curated, augmented batches with an exact position.

Positions g = 0, 1, 2, ... form one global stream. Each chunk of `mix_chunk` positions holds a
fixed quota of every source (its weight share), shuffled by (seed, chunk); the k-th draw of an
indexed source is item `perm(seed, source, pass)[k % N]` with pass = k // N. So the sample at any
position is a pure function of (seed, position), computable without reading earlier samples.

A *lane* is one loader worker of one rank (lane = rank * workers + worker, L lanes in all) and
reads positions lane, lane + L, lane + 2L, ...; so the union of one micro-batch from every lane
is the same set of samples whatever the split into ranks (this is what makes 2 processes match
1 process with the same global batch). Streaming sources fill their positions from the lane's
own shards. Augmentation (RandomResizedCrop) and the mask noise are drawn from a generator seeded
by (seed, position): identical across world sizes and after a resume.

Every batch carries its lane id and the lane's position after it, plus counters of what curation
dropped; checkpoints store those positions, and a resumed stream starts exactly there.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info

from pixio_robot.pretrain.config import CurationConfig, DataConfig
from pixio_robot.pretrain.curation import STAT_KEYS, Curator, entropy_draft, histogram_entropy
from pixio_robot.pretrain.sources import DECODE_COUNTS, CorruptSample, Source, SourceError, decode_image
from pixio_robot.utils.logging import get_logger

log = get_logger(__name__)

# distinct high-bit-depth sample ids kept per source (in checkpoints): a corpus of millions of
# 16-bit images is counted "at least" this many instead of growing every checkpoint without bound
MAX_TRACKED_IDS = 100_000


def crop_params(rng: np.random.Generator, h: int, w: int, scale: tuple[float, float],
                ratio: tuple[float, float]) -> tuple[int, int, int, int]:
    """RandomResizedCrop box (top, left, height, width): area share ~ U(scale), log-uniform aspect
    ratio, 10 tries, then the largest centred crop within the ratio range."""
    area = h * w
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_r))
        cw = int(round(math.sqrt(target * aspect)))
        ch = int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
    in_ratio = w / h
    if in_ratio < ratio[0]:
        cw, ch = w, int(round(w / ratio[0]))
    elif in_ratio > ratio[1]:
        ch, cw = h, int(round(h * ratio[1]))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


class RandomResizedCrop:
    """One sample's RandomResizedCrop, drawn from the image's *original* size.

    `draft(w, h)` (for `decode_image`) draws the box from the JPEG header's size and asks for the
    smallest decode that still gives the box at least `size` pixels a side; `__call__` maps the box
    onto whatever resolution was decoded and resizes it (bicubic, antialiased; no flip). Without a
    draft (arrays, PNG) the box is drawn from the image itself: the same box for the same rng."""

    def __init__(self, rng: np.random.Generator, size: int, scale: tuple[float, float],
                 ratio: tuple[float, float]) -> None:
        self.rng, self.size, self.scale, self.ratio = rng, size, scale, ratio
        self.orig_hw: tuple[int, int] | None = None
        self.box: tuple[int, int, int, int] | None = None

    def _draw(self, h: int, w: int) -> None:
        self.orig_hw = (h, w)
        self.box = crop_params(self.rng, h, w, self.scale, self.ratio)

    def draft(self, w: int, h: int) -> tuple[int, int] | None:
        self._draw(h, w)
        factor = min(self.box[2], self.box[3]) / self.size  # how much smaller the box may get
        return (math.ceil(w / factor), math.ceil(h / factor)) if factor >= 2 else None

    def __call__(self, img: np.ndarray) -> np.ndarray:
        """uint8 [H, W, 3] -> uint8 [3, size, size]."""
        if self.box is None:
            self._draw(img.shape[0], img.shape[1])
        top, left, ch, cw = self.box
        sy, sx = img.shape[0] / self.orig_hw[0], img.shape[1] / self.orig_hw[1]  # 1 unless drafted
        box = (left * sx, top * sy, (left + cw) * sx, (top + ch) * sy)
        out = Image.fromarray(img).resize((self.size, self.size), Image.Resampling.BICUBIC, box=box)
        return np.asarray(out).transpose(2, 0, 1)  # (3, S, S)


def decode_for_crop(load, crop: RandomResizedCrop, jpeg_draft: bool, want_entropy: bool
                    ) -> tuple[np.ndarray, float | None]:
    """Decode one sample for `crop` (`load(draft)` decodes it, see `decode_image`); with
    `want_entropy` also its colour-histogram entropy, read at a scale fixed by the image's size
    alone (`entropy_draft`), never at the crop's scale: a filter that saw the crop's reduced decode
    would keep an image on one pass and drop it on the next. A JPEG is then decoded at that scale
    first (dropped images cost only that), and again for the crop only when the crop needs more
    pixels; other images decode once."""
    if not want_entropy:
        return load(crop.draft if jpeg_draft else None), None
    header: dict = {}

    def canonical(w: int, h: int) -> tuple[int, int]:
        header["wh"] = (w, h)  # only JPEGs ask
        return entropy_draft(w, h)

    img = load(canonical)
    entropy = histogram_entropy(img)
    if jpeg_draft and "wh" in header:
        need = crop.draft(*header["wh"])  # draws the crop from the original size
        if need is None or need[0] > img.shape[1] or need[1] > img.shape[0]:
            img = load(lambda w, h: need)
    elif "wh" in header and img.shape[:2] != header["wh"][::-1]:  # no reduced decodes: the full image
        img = load(None)
    return img, entropy


def mix_quotas(weights: list[float], chunk: int) -> np.ndarray:
    """Positions per chunk for each source (largest remainder; every source gets >= 1)."""
    w = np.asarray(weights, dtype=np.float64)
    raw = w / w.sum() * chunk
    q = np.maximum(np.floor(raw).astype(np.int64), 1)
    while q.sum() < chunk:
        q[np.argmax(raw - q)] += 1
    while q.sum() > chunk:
        q[np.argmax(q)] -= 1
    return q


class PretrainStream(IterableDataset):
    """Infinite stream of batches for one rank (split further across loader workers)."""

    def __init__(self, sources: list[Source], data: DataConfig, curation: CurationConfig, *, seed: int,
                 img_size: int, batch_size: int, noise_dim: int, rank: int = 0, world_size: int = 1,
                 lane_states: dict[int, list[int]] | None = None, with_ids: bool = False,
                 worker_offset: int = 0) -> None:
        super().__init__()
        self.worker_offset = worker_offset
        self.sources, self.data, self.curation = sources, data, curation
        self.seed, self.img_size, self.batch_size, self.noise_dim = seed, img_size, batch_size, noise_dim
        self.rank, self.world_size = rank, world_size
        self.lane_states = lane_states or {}
        self.with_ids = with_ids
        self.chunk = int(data.mix_chunk)
        self.quotas = mix_quotas([s.weight for s in sources], self.chunk)
        self.base_labels = np.repeat(np.arange(len(sources)), self.quotas)
        self.streaming = [i for i, s in enumerate(sources) if not s.indexed]
        self.scale = tuple(data.crop_scale)
        self.ratio = tuple(data.crop_ratio)

    # -- positions -> samples ---------------------------------------------------------------
    def _chunk(self, c: int) -> tuple[np.ndarray, np.ndarray]:
        """Source label of every position of chunk c and its draw number within the chunk."""
        if getattr(self, "_chunk_id", None) != c:
            labels = self.base_labels[np.random.default_rng([self.seed, 7, c]).permutation(self.chunk)]
            within = np.zeros(self.chunk, dtype=np.int64)
            for s in range(len(self.sources)):
                hit = labels == s
                within[hit] = np.arange(hit.sum())
            self._chunk_id, self._labels, self._within = c, labels, within
        return self._labels, self._within

    def _perm(self, s: int, pass_: int) -> np.ndarray:
        cache = self.__dict__.setdefault("_perms", {})
        if (s, pass_) not in cache:
            if len(cache) > 2 * len(self.sources):
                cache.clear()
            cache[(s, pass_)] = np.random.default_rng([self.seed, 11, s, pass_]).permutation(len(self.sources[s]))
        return cache[(s, pass_)]

    def locate(self, g: int) -> tuple[int, int, int]:
        """Position -> (source, pass, item index); item index is -1 for a streaming source."""
        c, off = divmod(g, self.chunk)
        labels, within = self._chunk(c)
        s = int(labels[off])
        if not self.sources[s].indexed:
            return s, -1, -1
        k = c * int(self.quotas[s]) + int(within[off])
        pass_, j = divmod(k, len(self.sources[s]))
        return s, pass_, int(self._perm(s, pass_)[j])

    # -- iteration ----------------------------------------------------------------------------
    def lane(self) -> tuple[int, int]:
        """(lane, lanes). A DataLoader takes batches from its workers in turn, starting with worker
        0; a resumed run rotates workers onto lanes by `worker_offset` (batches consumed mod
        workers) so its first batch comes from the lane that was next, as without the restart."""
        info = get_worker_info()
        w, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        return self.rank * nw + (w + self.worker_offset) % nw, self.world_size * nw

    def _stream_iter(self, s: int, lane: int, num_lanes: int, skip: int, stats: dict) -> Iterator:
        """Endless (pass, id, bytes) of a streaming source for this lane, after `skip` samples."""
        src, pass_, n = self.sources[s], 0, 0
        while True:
            got = 0
            for sid, data in src.iter_raw(lane, num_lanes, pass_, self.seed, stats):
                got += 1
                n += 1
                if n > skip:
                    yield pass_, sid, data
            if got == 0:
                raise SourceError(f"{src.describe()}: no readable sample in the shards of lane {lane}/{num_lanes}"
                                  f" ({stats.get('corrupt_shards', 0)} corrupt shards)")
            pass_ += 1

    def __iter__(self) -> Iterator[dict]:
        lane, num_lanes = self.lane()
        state = list(self.lane_states.get(lane, [lane] + [0] * len(self.streaming)))
        pos = state[0]
        counts = dict(zip(self.streaming, state[1:]))
        curator = Curator(self.curation, self.seed)
        shard_stats: dict = {}
        streams = {s: self._stream_iter(s, lane, num_lanes, counts[s], shard_stats) for s in self.streaming}
        drops = [0] * len(self.sources)
        first_error = None
        last = dict.fromkeys(STAT_KEYS, 0)
        corrupt_seen: set[str] = set()  # distinct corrupt files this lane met (draws are counted apart)
        new_corrupt: list[str] = []
        converted_seen: set[str] = set()  # distinct high-bit-depth images this lane decoded
        converted: list[list[str]] = [[] for _ in self.sources]  # new ones per source, since the last batch
        while True:
            imgs = np.empty((self.batch_size, 3, self.img_size, self.img_size), dtype=np.uint8)
            noise = np.empty((self.batch_size, self.noise_dim), dtype=np.float32)
            ids: list[str] = []
            n = 0
            while n < self.batch_size:
                g, pos = pos, pos + num_lanes
                s, pass_, idx = self.locate(g)
                src = self.sources[s]
                if idx >= 0:
                    sid = src.sample_id(idx)
                else:
                    pass_, sid, raw = next(streams[s])
                    counts[s] += 1
                img = entropy = None
                crop = RandomResizedCrop(np.random.default_rng([self.seed, 13, g]), self.img_size, self.scale,
                                         self.ratio)
                if curator.keep_by_loss(sid, pass_):
                    load = (lambda d, i=idx, sc=src: sc.load(i, d)) if idx >= 0 else \
                        (lambda d, r=raw: decode_image(r, d))
                    high_bit = DECODE_COUNTS["high_bit_depth"]
                    try:
                        img, entropy = decode_for_crop(load, crop, self.data.jpeg_draft,
                                                       bool(self.curation.entropy_threshold))
                        if (DECODE_COUNTS["high_bit_depth"] > high_bit and sid not in converted_seen
                                and len(converted_seen) < MAX_TRACKED_IDS):
                            converted_seen.add(sid)
                            converted[s].append(sid)
                    except CorruptSample as e:
                        curator.stats["corrupt"] += 1
                        if sid not in corrupt_seen:
                            corrupt_seen.add(sid)
                            new_corrupt.append(sid)
                        if first_error is None:  # say why once per worker; later ones are counted
                            first_error = f"{src.describe()}: sample {sid}: {e}"
                            log.warning("skipping a sample that does not load (%s); further ones are counted as "
                                        "'corrupt' in the curation totals", first_error)
                if img is None or not curator.keep_image(img, crop.orig_hw, entropy):
                    drops[s] += 1
                    if drops[s] >= self.curation.max_consecutive_drops:
                        c, hints = self.curation, []
                        if curator.stats["corrupt"]:
                            hints.append(f"check the files: they do not decode as images (first error: {first_error})")
                        if c.entropy_threshold or c.min_resolution or c.scores:
                            hints.append("relax curation.entropy_threshold / min_resolution / tau (or curation=none)")
                        raise SourceError(f"{src.describe()}: {drops[s]} draws in a row gave no usable image "
                                          f"({curator.summary()}); {'; '.join(hints) or 'check the source'}")
                    continue
                drops[s] = 0
                imgs[n] = crop(img)
                noise[n] = crop.rng.random(self.noise_dim, dtype=np.float32)
                ids.append(sid)
                n += 1
                curator.stats["kept"] += 1
            curator.stats["corrupt_shards"] = shard_stats.get("corrupt_shards", 0)
            delta = [curator.stats[k] - last[k] for k in STAT_KEYS]
            last = dict(curator.stats)
            batch = {"images": torch.from_numpy(imgs), "noise": torch.from_numpy(noise),
                     "lane": torch.tensor(lane), "num_lanes": torch.tensor(num_lanes),
                     "state": torch.tensor([pos] + [counts[s] for s in self.streaming], dtype=torch.int64),
                     "stats": torch.tensor(delta, dtype=torch.int64),
                     "converted_ids": converted, "corrupt_ids": new_corrupt}
            new_corrupt, converted = [], [[] for _ in self.sources]
            if self.with_ids:
                batch["ids"] = ids
            yield batch


class LaneTracker:
    """Keeps the latest position of every lane (from the batches consumed) for checkpoints."""

    def __init__(self, num_lanes: int, num_streaming: int, saved: dict | None = None,
                 sources: list[Source] | None = None) -> None:
        self.num_lanes = num_lanes
        self.sources = list(sources or [])
        self.converted: list[dict[str, None]] = [{} for _ in self.sources]  # distinct high-bit-depth images
        self.corrupt_files: dict[str, None] = {}  # distinct corrupt sample ids, in the order met
        self.states: dict[int, list[int]] = {}
        self.restarted = False
        if saved and saved.get("states"):
            states = {int(k): list(v) for k, v in saved["states"].items()}
            if int(saved["num_lanes"]) == num_lanes:
                self.states = states
            else:  # another world size / worker count: continue after the furthest position
                start = max(v[0] for v in states.values())
                self.states = {ln: [start + ln] + [0] * num_streaming for ln in range(num_lanes)}
                self.restarted = True
        self.totals = dict.fromkeys(STAT_KEYS, 0)

    def update(self, batch: dict) -> None:
        self.states[int(batch["lane"])] = batch["state"].tolist()
        for k, v in zip(STAT_KEYS, batch["stats"].tolist()):
            self.totals[k] += v
        self.corrupt_files.update(dict.fromkeys(batch.get("corrupt_ids", ())))
        if "converted_ids" in batch and self.sources:
            for i, new in enumerate(batch["converted_ids"]):
                if new and not self.converted[i]:
                    log.info("%s: decoding 16-bit / 32-bit / float images to 8 bits by the range of their type "
                             "(16-bit: value >> 8); the count is in results.json", self.sources[i].describe())
                self.converted[i].update(dict.fromkeys(new[:MAX_TRACKED_IDS - len(self.converted[i])]))

    def state_dict(self, rank: int = 0, world_size: int = 1) -> dict:
        """Positions of this rank's lanes (lane // lanes-per-rank == rank): the other ranks' entries
        may be stale copies from the checkpoint this run resumed from."""
        per_rank = max(self.num_lanes // world_size, 1)
        own = {str(k): v for k, v in sorted(self.states.items()) if k // per_rank == rank}
        return {"num_lanes": self.num_lanes, "states": own}
