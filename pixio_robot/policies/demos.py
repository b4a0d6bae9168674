"""Demonstrations for imitation: a LeRobotDataset read into flat arrays + vectorised batches.

`load_demos(root=..., repo_id=...)` reads states, actions and episode boundaries once (parquet,
no video decoding); frames come from the feature cache (frozen encoder) or a decoded-frame
memmap (fine-tuning). `DemoBatcher` gathers whole batches with numpy fancy indexing: frame
history (padded with the episode's first frame, as CortexBench) and action chunks (padded with
the last action and flagged in `action_is_pad`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lerobot.utils.constants import ACTION, OBS_IMAGE, OBS_IMAGES, OBS_STATE

from pixio_robot.policies.constants import ACTION_PAD, OBS_FEATURES
from pixio_robot.utils.logging import get_logger

log = get_logger(__name__)

DEFAULT_VIDEO_BACKEND = "pyav"  # as pretraining (`video_backend` of its data config)


@dataclass
class DemoData:
    dataset: Any  # the LeRobotDataset
    image_key: str
    states: np.ndarray  # float32 [N, S] (S may be 0)
    actions: np.ndarray  # float32 [N, A]
    episode_index: np.ndarray  # int64 [N]
    ep_start: np.ndarray  # int64 [N] first dataset row of each row's episode
    ep_end: np.ndarray  # int64 [N] one past the last row of each row's episode
    image_shape: tuple[int, int, int]
    fps: int
    state_key: str | None = OBS_STATE  # dataset feature the states came from (None: no state)
    action_key: str = ACTION  # dataset feature the actions came from
    image_keys: list[str] | None = None  # every camera read, in order (None: [image_key])

    def __post_init__(self) -> None:
        if self.image_keys is None:
            self.image_keys = [self.image_key]
        if self.image_key != self.image_keys[0]:
            raise ValueError(f"image_key {self.image_key!r} must be the first of image_keys {self.image_keys}")

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def episodes(self) -> np.ndarray:
        return np.unique(self.episode_index)

    def stats(self) -> dict[str, dict[str, list[float]]]:
        """Normalisation statistics computed from the data (mean, std, min, max)."""
        out = {}
        for key, arr in ((OBS_STATE, self.states), (ACTION, self.actions)):
            if arr.shape[1] == 0:
                continue
            out[key] = {"mean": arr.mean(0).tolist(), "std": arr.std(0).tolist(),
                        "min": arr.min(0).tolist(), "max": arr.max(0).tolist()}
        return out

    def split(self, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Row indices (train, val), split by whole episodes; val empty when fraction is 0 or
        there is a single episode."""
        eps = self.episodes
        n_val = int(round(len(eps) * val_fraction)) if len(eps) > 1 else 0
        n_val = min(n_val, len(eps) - 1)
        val_eps = np.random.default_rng(seed).permutation(eps)[:n_val]
        is_val = np.isin(self.episode_index, val_eps)
        return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def _open_dataset(root: str | None, repo_id: str | None, video_backend: str | None = DEFAULT_VIDEO_BACKEND):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    if root is None and repo_id is None:
        raise ValueError("dataset.root (a LeRobotDataset folder on disk) or dataset.repo_id (a hub id, "
                         "needs network) is required")
    if root is not None:
        path = Path(root).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"dataset root {path} does not exist; fix dataset.root (collect demos with "
                                    "python -m pixio_robot.collect root=...)")
        if not (path / "meta" / "info.json").exists():
            raise FileNotFoundError(f"{path} is not a LeRobotDataset (no meta/info.json). Collect demos with "
                                    "python -m pixio_robot.collect, or pass dataset.repo_id for a hub dataset")
        return LeRobotDataset(repo_id or f"local/{path.name}", root=path, video_backend=video_backend)
    return LeRobotDataset(repo_id, video_backend=video_backend)


def _vector_features(feats: dict, cams: list[str]) -> list[str]:
    """`observation.*` float vector features (state candidates) of a dataset."""
    return [k for k, v in feats.items() if k.startswith("observation.") and k not in cams
            and str(v.get("dtype", "")).startswith("float") and len(v.get("shape") or ()) == 1]


def _resolve_state_key(ds, feats: dict, cams: list[str], state_key: str | None) -> str | None:
    """The state feature to read: the named one (must exist), else `observation.state` when the
    dataset has it, else None (no state; a warning names float vectors that could be the state)."""
    if state_key is not None:
        if state_key not in feats:
            raise ValueError(f"dataset.state_key={state_key!r} is not a feature of dataset {ds.root}; its features "
                             f"are {sorted(feats)}")
        if state_key in cams or not str(feats[state_key].get("dtype", "")).startswith(("float", "int")):
            raise ValueError(f"dataset.state_key={state_key!r} of dataset {ds.root} is a "
                             f"{feats[state_key].get('dtype')} feature, not a numeric vector; numeric vectors: "
                             f"{_vector_features(feats, cams)}")
        return state_key
    if OBS_STATE in feats:
        return OBS_STATE
    others = _vector_features(feats, cams)
    if others:
        log.warning("dataset %s has no %r feature: training WITHOUT proprioceptive state. It has float vector "
                    "feature(s) %s; if one is the robot state, pass dataset.state_key=<key> (e.g. "
                    "dataset.state_key=%s)", ds.root, OBS_STATE, others, others[0])
    return None


def resolve_cameras(ds, image_key: str | None = None, cameras: list[str] | None = None) -> list[str]:
    """The camera keys to read, in order: `[image_key]` (one camera), `cameras` (a subset, full
    keys or short names: `top` -> `observation.images.top`), else every camera of the dataset
    (its `meta.camera_keys` order). An unknown camera is a KeyError listing the dataset's."""
    cams = list(ds.meta.camera_keys)
    if not cams:
        raise ValueError(f"dataset {ds.root} has no camera key; image policies need one")
    if image_key is not None and cameras:
        raise ValueError(f"dataset.image_key={image_key!r} and dataset.cameras={list(cameras)} both name cameras: "
                         "set one (image_key: one camera; cameras: a list)")
    if image_key is not None:
        wanted = [image_key]
    elif cameras:
        wanted = [c if c in cams or c.startswith("observation.") else f"{OBS_IMAGES}.{c}" for c in cameras]
    else:
        return cams
    for key in wanted:
        if key not in cams:
            raise KeyError(f"camera key {key!r} not in dataset {ds.root}; it has {cams}")
    if len(set(wanted)) != len(wanted):
        raise ValueError(f"dataset.cameras={list(cameras or [])} names a camera twice")
    return wanted


def load_demos(root: str | None = None, repo_id: str | None = None, image_key: str | None = None,
               state_key: str | None = None, action_key: str = ACTION,
               video_backend: str | None = DEFAULT_VIDEO_BACKEND, cameras: list[str] | None = None) -> DemoData:
    """Read a LeRobotDataset's states, actions and episode layout (frames stay on disk).

    Cameras (`resolve_cameras`): `image_key` (one), `cameras` (a subset), else all of them.
    `state_key` None: `observation.state` when the dataset has it, else no state (a warning names
    other float vector features); a named `state_key` / `action_key` the dataset lacks is a
    ValueError listing its features. `video_backend` is lerobot's (pyav, as pretraining)."""
    ds = _open_dataset(root, repo_id, video_backend)
    cams = list(ds.meta.camera_keys)
    image_keys = resolve_cameras(ds, image_key, cameras)
    image_key = image_keys[0]
    shapes = {tuple(ds.meta.features[k]["shape"]) for k in image_keys}
    if len(shapes) > 1:
        raise ValueError(f"cameras {image_keys} of dataset {ds.root} have different frame shapes {sorted(shapes)}; "
                         "one shared encoder needs one size: choose cameras of one size with dataset.cameras=[...]")
    feats = ds.meta.features
    if action_key not in feats:
        raise ValueError(f"dataset.action_key={action_key!r} is not a feature of dataset {ds.root}; its features "
                         f"are {sorted(feats)}")
    state_key = _resolve_state_key(ds, feats, cams, state_key)
    cols = [action_key, "episode_index"] + ([state_key] if state_key is not None else [])
    data = ds.hf_dataset.with_format("numpy", columns=cols)[:]
    actions = np.asarray(np.stack(data[action_key]), dtype=np.float32).reshape(len(ds.hf_dataset), -1)
    if state_key is not None:
        states = np.asarray(np.stack(data[state_key]), dtype=np.float32).reshape(len(actions), -1)
    else:
        states = np.zeros((len(actions), 0), np.float32)
    ep = np.asarray(data["episode_index"], dtype=np.int64).reshape(-1)
    if len(ep) == 0:
        raise ValueError(f"dataset {ds.root} has no frames")
    starts = np.flatnonzero(np.r_[True, ep[1:] != ep[:-1]])
    ends = np.r_[starts[1:], len(ep)]
    lengths = ends - starts
    ep_start = np.repeat(starts, lengths)
    ep_end = np.repeat(ends, lengths)
    shape = tuple(feats[image_key]["shape"])
    if shape[-1] != 3 and shape[0] == 3:
        shape = (shape[1], shape[2], shape[0])
    return DemoData(ds, image_key, states, actions, ep, ep_start, ep_end, shape, int(ds.fps),
                    state_key=state_key, action_key=action_key, image_keys=image_keys)


class DemoBatcher:
    """Gathers training batches: history of frames (features or images), state, action chunk.

    `frames`: one array [N,*F] (one camera: `observation.features` [B,T,*F] or
    `observation.image` [B,T,H,W,3], as ever), or a list with one array per camera of
    `demo.image_keys` (several: `observation.features` [B,T,C,*F] in that camera order, or the
    images under each camera key [B,T,H,W,3])."""

    def __init__(self, demo: DemoData, frames: np.ndarray | list[np.ndarray], *, history: int, chunk: int,
                 cached: bool) -> None:
        per_cam = list(frames) if isinstance(frames, list | tuple) else [frames]
        if len(per_cam) > 1 and len(per_cam) != len(demo.image_keys):
            raise ValueError(f"{len(per_cam)} frame arrays for cameras {demo.image_keys}")
        for f in per_cam:
            if len(f) != len(demo):
                raise ValueError(f"{len(f)} frames for {len(demo)} dataset rows")
        self.demo, self.frames, self.per_cam = demo, per_cam[0], per_cam
        self.history, self.chunk, self.cached = history, chunk, cached

    @staticmethod
    def _gather(frames: np.ndarray, flat: np.ndarray, order: np.ndarray) -> np.ndarray:
        gathered = np.empty((len(flat), *frames.shape[1:]), dtype=frames.dtype)
        gathered[order] = frames[flat[order]]  # sorted reads are kinder to a memmap
        return gathered

    def batch(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        d = self.demo
        rows = np.asarray(rows, dtype=np.int64)
        back = np.arange(self.history - 1, -1, -1)  # (T,) e.g. [2, 1, 0]
        hist = np.maximum(rows[:, None] - back[None], d.ep_start[rows][:, None])  # (B, T)
        ahead = rows[:, None] + np.arange(self.chunk)[None]  # (B, C)
        pad = ahead >= d.ep_end[rows][:, None]
        ahead = np.minimum(ahead, d.ep_end[rows][:, None] - 1)
        flat = hist.reshape(-1)
        order = np.argsort(flat, kind="stable")
        per_cam = [torch.from_numpy(self._gather(f, flat, order).reshape(*hist.shape, *f.shape[1:]))
                   for f in self.per_cam]  # C x (B, T, *F)
        if len(per_cam) == 1:
            obs = {OBS_FEATURES if self.cached else OBS_IMAGE: per_cam[0]}
        elif self.cached:
            obs = {OBS_FEATURES: torch.stack(per_cam, dim=2)}  # (B, T, C, *F)
        else:
            obs = dict(zip(d.image_keys, per_cam, strict=True))  # camera key -> (B, T, H, W, 3)
        return {**obs,
                OBS_STATE: torch.from_numpy(d.states[rows]),
                ACTION: torch.from_numpy(d.actions[ahead]),  # (B, C, A)
                ACTION_PAD: torch.from_numpy(pad)}

    def iterate(self, rows: np.ndarray, batch_size: int, rng: np.random.Generator | None = None):
        """Batches over `rows` (shuffled when `rng` is given); the last one may be smaller."""
        rows = rng.permutation(rows) if rng is not None else np.asarray(rows)
        for i in range(0, len(rows), batch_size):
            yield self.batch(rows[i:i + batch_size])
