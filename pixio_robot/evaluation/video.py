"""mp4 writing with PyAV (bundles FFmpeg; nothing to install) and image grids for reports."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pixio_robot.utils.io import atomic_path


def _even(frame: np.ndarray) -> np.ndarray:
    """yuv420p needs even sides: pad the last row / column by edge replication."""
    h, w = frame.shape[:2]
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge") if (h % 2 or w % 2) else frame


def write_video(path: str | Path, frames: Sequence[np.ndarray], fps: int = 20) -> Path:
    """Write uint8 HxWx3 frames as an H.264 mp4 (atomically). Returns the path."""
    import av
    import av.logging

    av.logging.set_level(av.logging.ERROR)  # no libx264 statistics on stderr
    if len(frames) == 0:
        raise ValueError(f"no frames to write to {path}")
    first = np.asarray(frames[0])
    if first.ndim != 3 or first.shape[2] != 3:
        raise ValueError(f"frames must be HxWx3 uint8, got shape {first.shape}")
    path = Path(path)
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=int(fps))
            h, w = _even(first).shape[:2]
            stream.height, stream.width, stream.pix_fmt = h, w, "yuv420p"
            stream.options = {"crf": "23", "preset": "veryfast"}
            for f in frames:
                img = _even(np.ascontiguousarray(np.asarray(f, dtype=np.uint8)))
                for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():  # flush
                container.mux(packet)
    return path


def count_video_frames(path: str | Path) -> int:
    """Number of decoded frames of a video file (used by tests and reports)."""
    import av

    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))
