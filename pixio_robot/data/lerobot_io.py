"""LeRobotDataset v3 writing (crash-safe appends) and fast array reading.

Writing: :class:`DemoWriter` adds whole episodes to a dataset on disk with lerobot 0.6
(``LeRobotDataset.create`` / ``add_frame`` / ``save_episode`` / ``finalize``). Each episode is
committed on its own: its own parquet / mp4 / episode-metadata files (no earlier file is
rewritten), writers closed after it. Before a commit the small ``meta/`` folder and a list of
the data files are copied to ``.pixio_journal/``; a run killed in the middle of a commit is
rolled back to the last whole episode on the next open.

Reading: :func:`load_frames` returns numpy arrays of a whole dataset (decoding each video file
once, sequentially), for the pretraining corpus and the policies' feature cache.
:func:`open_dataset` gives lerobot's own ``LeRobotDataset`` offline.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
from lerobot.utils.constants import ACTION as ACTION_KEY
from lerobot.utils.constants import OBS_ENV_STATE as ENV_STATE_KEY
from lerobot.utils.constants import OBS_IMAGE as IMAGE_KEY
from lerobot.utils.constants import OBS_STATE as STATE_KEY

from pixio_robot.utils.io import atomic_write_text, save_json
from pixio_robot.utils.logging import get_logger

log = get_logger(__name__)

JOURNAL = ".pixio_journal"
COLLECT_INFO = "meta/pixio_collect.json"


def default_repo_id(root: str | Path) -> str:
    return f"local/{Path(root).resolve().name}"


_ONE_FILE_PER_EPISODE_MB = 1e-9


def video_backend() -> str:
    """``torchcodec`` when ffmpeg is installed (it needs the system libraries), else ``pyav``."""
    return "torchcodec" if shutil.which("ffmpeg") else "pyav"


def dataset_video_backend(ds) -> str:
    """The decoder a ``LeRobotDataset`` was opened with (lerobot 0.6 keeps it as ``_video_backend``,
    with no public accessor; it is what ``ds[i]`` decodes with, so frames decoded here match it)."""
    return getattr(ds, "_video_backend", None) or video_backend()


def open_dataset(root: str | Path, repo_id: str | None = None, **kw):
    """lerobot's ``LeRobotDataset`` for a dataset on disk, offline, with a working video backend."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = Path(root)
    if not (root / "meta" / "info.json").is_file():
        raise FileNotFoundError(f"No LeRobotDataset at {root} (meta/info.json missing). Collect one with "
                                "`python -m pixio_robot.collect root=<dir>` or pass a hub id.")
    kw.setdefault("video_backend", video_backend())
    return LeRobotDataset(repo_id or default_repo_id(root), root=root, **kw)


def demo_features(image_hw: tuple[int, int] | None, state_dim: int, action_dim: int, *,
                  use_videos: bool = True, env_state_dim: int | None = None) -> dict:
    """lerobot feature spec of the project's demonstrations (see docs/CONTRACTS.md)."""
    feats: dict = {}
    if image_hw is not None:
        feats[IMAGE_KEY] = {"dtype": "video" if use_videos else "image", "shape": (*image_hw, 3),
                            "names": ["height", "width", "channels"]}
    feats[STATE_KEY] = {"dtype": "float32", "shape": (state_dim,), "names": None}
    if env_state_dim:
        feats[ENV_STATE_KEY] = {"dtype": "float32", "shape": (env_state_dim,), "names": None}
    feats[ACTION_KEY] = {"dtype": "float32", "shape": (action_dim,), "names": None}
    feats["next.reward"] = {"dtype": "float32", "shape": (1,), "names": None}
    feats["next.success"] = {"dtype": "bool", "shape": (1,), "names": None}
    feats["next.done"] = {"dtype": "bool", "shape": (1,), "names": None}
    return feats


def _spec_of(feats: dict) -> dict:
    return {k: (v["dtype"], list(v["shape"])) for k, v in feats.items()}


class DemoWriter:
    """Append whole episodes to a LeRobotDataset at `root`, one crash-safe commit per episode."""

    def __init__(self, root: str | Path, features: dict, fps: int, *, repo_id: str | None = None,
                 vcodec: str = "h264", robot_type: str | None = None) -> None:
        import datasets

        datasets.disable_progress_bars()  # one "Map" bar per episode otherwise
        self.root = Path(root)
        self.repo_id = repo_id or default_repo_id(self.root)
        self.features, self.fps, self.vcodec = features, int(fps), vcodec
        self.robot_type = robot_type
        self._ds = None
        recover_journal(self.root)
        info_path = self.root / "meta" / "info.json"
        if info_path.is_file() and self._meta_info()["total_episodes"] == 0:
            shutil.rmtree(self.root)  # created but never written: start it again
        if info_path.is_file():
            self._check_compatible()
        else:
            if self.root.exists() and any(self.root.iterdir()):
                raise FileExistsError(f"{self.root} exists and is not a LeRobotDataset; choose an empty or new "
                                      "directory.")
            if self.root.exists():
                self.root.rmdir()  # lerobot's create() wants to make the folder itself
        self.num_episodes = self._meta_info()["total_episodes"] if info_path.is_file() else 0

    def _open(self):
        """The writing session of one episode: created, or re-opened with lerobot's
        ``LeRobotDataset.resume`` (lerobot 0.6 finalizes a dataset for good, so every episode
        commits with ``finalize()`` and the next one resumes)."""
        from lerobot.configs.video import RGBEncoderConfig
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        if self._ds is not None:
            return self._ds
        if not (self.root / "meta" / "info.json").is_file():
            use_videos = any(v["dtype"] == "video" for v in self.features.values())
            ds = LeRobotDataset.create(self.repo_id, self.fps, self.features, root=self.root,
                                       robot_type=self.robot_type, use_videos=use_videos,
                                       rgb_encoder=RGBEncoderConfig(vcodec=self.vcodec),
                                       metadata_buffer_size=1)
        else:
            ds = LeRobotDataset.resume(self.repo_id, root=self.root, video_backend=video_backend(),
                                       rgb_encoder=RGBEncoderConfig(vcodec=self.vcodec))
            ds.meta.metadata_buffer_size = 1
        # A tiny file limit makes lerobot start new data / video / episode-metadata files for every
        # episode, so a commit never rewrites (or concatenates into) an earlier file. (lerobot 0.6
        # refuses 0; the limit is stored in info.json, and any later writer keeps one file per episode.)
        ds.meta.update_chunk_settings(data_files_size_in_mb=_ONE_FILE_PER_EPISODE_MB,
                                      video_files_size_in_mb=_ONE_FILE_PER_EPISODE_MB)
        self._ds = ds
        return ds

    def _meta_info(self) -> dict:
        return json.loads((self.root / "meta" / "info.json").read_text())

    def _check_compatible(self) -> None:
        info = self._meta_info()
        have = {k: v for k, v in info["features"].items()
                if k not in ("timestamp", "frame_index", "episode_index", "index", "task_index")}
        if _spec_of(have) != _spec_of(self.features) or int(info["fps"]) != self.fps:
            raise ValueError(
                f"The dataset at {self.root} has other features/fps than this collection:\n"
                f"  on disk: fps={info['fps']} {_spec_of(have)}\n  wanted:  fps={self.fps} {_spec_of(self.features)}\n"
                "Use a new root, or the same env, image size and camera as the existing episodes.")

    def add_episode(self, frames: list[dict], task: str) -> int:
        """Write one episode (a list of frames keyed like the features, without ``task``);
        returns its episode index. Nothing of it is visible on disk until it is whole."""
        if not frames:
            raise ValueError("An episode needs at least one frame.")
        ds = self._open()  # creating a new dataset writes meta/ with 0 episodes, so the journal covers it
        write_journal(self.root)
        try:
            for fr in frames:
                ds.add_frame({**fr, "task": task})
            ds.save_episode(parallel_encoding=False)
            ds.finalize()  # close the parquet writers: the episode's files are complete on disk
            self._ds = None  # lerobot 0.6: a finalized dataset takes no more frames; resume() reopens it
        except BaseException:  # Ctrl-C or an error mid-save: roll back to the last whole episode
            self._ds = None  # its in-memory state no longer matches the disk
            try:
                ds.finalize()
            finally:
                recover_journal(self.root)
            raise
        clear_journal(self.root)
        self.num_episodes += 1
        return self.num_episodes - 1


# -- journal: roll back a commit that a crash cut short ---------------------------------------------
def _data_files(root: Path) -> list[str]:
    out = []
    for sub in ("data", "videos"):
        base = root / sub
        if base.is_dir():
            out += [str(p.relative_to(root)) for p in base.rglob("*") if p.is_file()]
    return sorted(out)


def write_journal(root: Path) -> None:
    """Snapshot ``meta/`` and the list of data/video files before a commit."""
    root = Path(root)
    tmp, final = root / (JOURNAL + ".tmp"), root / JOURNAL
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(root / "meta", tmp / "meta")
    atomic_write_text(tmp / "files.json", json.dumps(_data_files(root)))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)


def clear_journal(root: Path) -> None:
    shutil.rmtree(Path(root) / JOURNAL, ignore_errors=True)


def recover_journal(root: str | Path) -> bool:
    """If a commit was interrupted, restore ``meta/`` and delete the files it had added.
    Returns True when something was rolled back."""
    root = Path(root)
    shutil.rmtree(root / (JOURNAL + ".tmp"), ignore_errors=True)  # crashed before the commit began
    journal = root / JOURNAL
    if not journal.is_dir():
        return False
    keep = set(json.loads((journal / "files.json").read_text()))
    for rel in _data_files(root):
        if rel not in keep:
            (root / rel).unlink()
    shutil.rmtree(root / "meta", ignore_errors=True)
    shutil.copytree(journal / "meta", root / "meta")
    shutil.rmtree(root / "images", ignore_errors=True)  # lerobot's temporary frames
    clear_journal(root)
    log.warning("Rolled back an episode whose save was interrupted in %s; the earlier episodes are intact.", root)
    return True


def read_collect_info(root: str | Path) -> dict:
    path = Path(root) / COLLECT_INFO
    return json.loads(path.read_text()) if path.is_file() else {}


def write_collect_info(root: str | Path, info: dict) -> None:
    """Save the collection record beside lerobot's metadata (once the dataset exists on disk)."""
    if (Path(root) / "meta" / "info.json").is_file():
        save_json(Path(root) / COLLECT_INFO, info)


# -- reading ---------------------------------------------------------------------------------------------
def _decode_video(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """All frames of a video file: (uint8 [T,H,W,3], timestamps in seconds [T])."""
    import av

    frames, times = [], []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            times.append(float(frame.pts * stream.time_base))
    return np.stack(frames), np.asarray(times)


def _image_column(table, key: str) -> np.ndarray:
    import io

    from PIL import Image

    return np.stack([np.asarray(Image.open(io.BytesIO(cell["bytes"])).convert("RGB"))
                     for cell in table.column(key).to_pylist()])


def load_frames(root: str | Path, *, image_key: str | None = None, episodes: list[int] | None = None):
    """Read a LeRobotDataset on disk into arrays, in dataset order.

    Returns ``(images, states, actions, episode_index)``: images uint8 [N,H,W,3] (from
    `image_key`, default ``observation.image`` or the dataset's first camera), states float32
    [N,S] (``observation.state``; **None** when the dataset has no such feature), actions float32
    [N,A] (``action``), episode_index int64 [N]. Videos are
    decoded once each, sequentially (far faster than per-frame random access).
    `episodes` keeps only those episode indices.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = Path(root)
    info_path = root / "meta" / "info.json"
    if not info_path.is_file():
        raise FileNotFoundError(f"No LeRobotDataset at {root} (meta/info.json missing).")
    info = json.loads(info_path.read_text())
    feats = info["features"]
    cams = [k for k, v in feats.items() if v["dtype"] in ("video", "image")]
    key = image_key or (IMAGE_KEY if IMAGE_KEY in cams else (cams[0] if cams else None))
    if key is None or key not in cams:
        raise KeyError(f"{root} has no camera feature {image_key!r}; cameras: {cams}.")
    data_files = sorted((root / "data").rglob("*.parquet"))
    table = pa.concat_tables([pq.read_table(p) for p in data_files]).sort_by("index")
    ep_all = np.asarray(table.column("episode_index").to_numpy(), np.int64)
    keep = np.ones(len(ep_all), bool) if episodes is None else np.isin(ep_all, list(episodes))
    states = np.asarray(table.column(STATE_KEY).to_pylist(), np.float32)[keep] if STATE_KEY in feats else None
    actions = np.asarray(table.column(ACTION_KEY).to_pylist(), np.float32)[keep]
    if feats[key]["dtype"] == "image":
        images = _image_column(table.filter(pa.array(keep)), key)
        return images, states, actions, ep_all[keep]
    meta = pa.concat_tables([pq.read_table(p) for p in sorted((root / "meta" / "episodes").rglob("*.parquet"))])
    rows = meta.to_pylist()
    by_file: dict[tuple[int, int], list[dict]] = {}
    for r in rows:
        by_file.setdefault((r[f"videos/{key}/chunk_index"], r[f"videos/{key}/file_index"]), []).append(r)
    per_episode: dict[int, np.ndarray] = {}
    wanted = set(np.unique(ep_all[keep]).tolist())
    for (chunk, file), eps in by_file.items():
        if not wanted & {r["episode_index"] for r in eps}:
            continue
        path = root / info["video_path"].format(video_key=key, chunk_index=chunk, file_index=file)
        frames, times = _decode_video(path)
        for r in eps:
            lo, n = r[f"videos/{key}/from_timestamp"], r["length"]
            start = int(np.argmin(np.abs(times - lo)))
            if start + n > len(frames):
                raise RuntimeError(f"{path} holds {len(frames)} frames; episode {r['episode_index']} needs "
                                   f"frames {start}..{start + n}. The video is truncated.")
            per_episode[r["episode_index"]] = frames[start:start + n]
    images = np.concatenate([per_episode[e] for e in sorted(wanted)])  # (N, H, W, 3)
    order = ep_all[keep]
    if not np.all(np.diff(order) >= 0):  # dataset order is by index; episodes are contiguous
        raise RuntimeError(f"{root}: frames of an episode are not contiguous.")
    return images, states, actions, order
