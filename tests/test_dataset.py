"""LeRobotDataset round trips through lerobot itself, and crash-safe episode commits."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from pixio_robot.data.lerobot_io import (
    JOURNAL,
    DemoWriter,
    demo_features,
    load_frames,
    open_dataset,
    recover_journal,
    write_journal,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")


def _smooth_episode(rng, length, hw=(24, 32), state_dim=3, action_dim=2):
    """Frames with large smooth colour blobs (video-codec friendly) and random vectors."""
    yy, xx = np.mgrid[0:hw[0], 0:hw[1]]
    frames = []
    for t in range(length):
        cx, cy = rng.uniform(0, hw[1]), rng.uniform(0, hw[0])
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 40.0)
        img = np.stack([blob * 255, (1 - blob) * 200, np.full(hw, 60.0 + t)], -1).astype(np.uint8)
        frames.append({"observation.image": img,
                       "observation.state": rng.normal(size=state_dim).astype(np.float32),
                       "action": rng.normal(size=action_dim).astype(np.float32),
                       "next.reward": np.array([t], np.float32), "next.success": np.array([t == length - 1]),
                       "next.done": np.array([t == length - 1])})
    return frames


def _stack(episodes, key):
    return np.stack([f[key] for ep in episodes for f in ep])


@pytest.mark.parametrize("use_videos", [False, True])
def test_round_trip_through_lerobot(tmp_path, use_videos):
    rng = np.random.default_rng(0)
    eps = [_smooth_episode(rng, n) for n in (4, 6, 5)]
    w = DemoWriter(tmp_path / "ds", demo_features((24, 32), 3, 2, use_videos=use_videos), fps=10)
    assert [w.add_episode(ep, "reach the blob") for ep in eps] == [0, 1, 2]

    ds = open_dataset(tmp_path / "ds")  # lerobot's own reader, offline
    assert (ds.num_episodes, ds.num_frames, ds.fps) == (3, 15, 10)
    item = ds[7]
    assert item["task"] == "reach the blob" and int(item["episode_index"]) == 1
    np.testing.assert_allclose(item["observation.state"].numpy(), eps[1][3]["observation.state"], rtol=0, atol=0)

    images, states, actions, ep_index = load_frames(tmp_path / "ds")
    assert images.shape == (15, 24, 32, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(states, _stack(eps, "observation.state"))
    np.testing.assert_array_equal(actions, _stack(eps, "action"))
    np.testing.assert_array_equal(ep_index, [0] * 4 + [1] * 6 + [2] * 5)
    lerobot_img = np.round(ds[7]["observation.image"].numpy().transpose(1, 2, 0) * 255)
    np.testing.assert_array_equal(images[7], lerobot_img)  # load_frames decodes like lerobot
    err = np.abs(images.astype(np.int16) - _stack(eps, "observation.image")).mean()
    assert err == 0 if not use_videos else err < 6  # PNG lossless; h264 close

    sub = load_frames(tmp_path / "ds", episodes=[2])
    assert sub[0].shape[0] == 5 and set(sub[3]) == {2}
    np.testing.assert_array_equal(sub[0], images[10:])


def test_reopen_appends_and_rejects_other_features(tmp_path):
    rng = np.random.default_rng(1)
    feats = demo_features((24, 32), 3, 2, use_videos=False)
    DemoWriter(tmp_path / "ds", feats, fps=10).add_episode(_smooth_episode(rng, 3), "t")
    w = DemoWriter(tmp_path / "ds", feats, fps=10)
    assert w.num_episodes == 1 and w.add_episode(_smooth_episode(rng, 2), "t") == 1
    assert open_dataset(tmp_path / "ds").num_frames == 5
    with pytest.raises(ValueError, match="other features/fps"):
        DemoWriter(tmp_path / "ds", demo_features((24, 32), 4, 2, use_videos=False), fps=10)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not a LeRobotDataset"):
        DemoWriter(tmp_path / "junk", feats, fps=10)
    with pytest.raises(FileNotFoundError, match="No LeRobotDataset"):
        open_dataset(tmp_path / "nothing")


def test_interrupt_during_save_rolls_back(tmp_path, monkeypatch):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    rng = np.random.default_rng(2)
    w = DemoWriter(tmp_path / "ds", demo_features((24, 32), 3, 2), fps=10)
    w.add_episode(_smooth_episode(rng, 4), "t")
    original = LeRobotDataset.save_episode

    def save_then_interrupt(self, *a, **k):
        original(self, *a, **k)  # data, video and metadata written ...
        raise KeyboardInterrupt  # ... but cut off before the commit ends

    monkeypatch.setattr(LeRobotDataset, "save_episode", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        w.add_episode(_smooth_episode(rng, 5), "t")
    monkeypatch.undo()
    assert not (tmp_path / "ds" / JOURNAL).exists()
    ds = open_dataset(tmp_path / "ds")
    assert (ds.num_episodes, ds.num_frames) == (1, 4)
    w2 = DemoWriter(tmp_path / "ds", demo_features((24, 32), 3, 2), fps=10)
    assert w2.add_episode(_smooth_episode(rng, 2), "t") == 1
    assert load_frames(tmp_path / "ds")[0].shape[0] == 6


def test_journal_recovers_after_sigkill_mid_save(tmp_path):
    """A real process killed (SIGKILL) between lerobot's save_episode and finalize: the next
    writer rolls the half-written episode back and the dataset reads as before."""
    script = textwrap.dedent(f"""
        import os, signal, numpy as np
        from lerobot.datasets.lerobot_dataset import LeRobotDataset
        from pixio_robot.data.lerobot_io import DemoWriter, demo_features
        rng = np.random.default_rng(0)
        def ep(n):
            return [{{"observation.image": rng.integers(0, 255, (16, 16, 3), dtype=np.uint8),
                     "observation.state": np.zeros(3, np.float32), "action": np.zeros(2, np.float32),
                     "next.reward": np.zeros(1, np.float32), "next.success": np.array([False]),
                     "next.done": np.array([False])}} for _ in range(n)]
        w = DemoWriter({str(tmp_path / "ds")!r}, demo_features((16, 16), 3, 2), fps=10)
        w.add_episode(ep(3), "t")
        w.add_episode(ep(4), "t")
        orig = LeRobotDataset.save_episode
        def killed(self, *a, **k):
            orig(self, *a, **k)
            os.kill(os.getpid(), signal.SIGKILL)
        LeRobotDataset.save_episode = killed
        w.add_episode(ep(6), "t")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    root = tmp_path / "ds"
    assert (root / JOURNAL).is_dir()
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["total_episodes"] == 3  # lerobot had already counted the killed episode
    assert recover_journal(root)
    ds = open_dataset(root)
    assert (ds.num_episodes, ds.num_frames) == (2, 7)
    assert load_frames(root)[0].shape[0] == 7


def test_journal_without_crash_is_a_no_op(tmp_path):
    rng = np.random.default_rng(3)
    w = DemoWriter(tmp_path / "ds", demo_features((24, 32), 3, 2, use_videos=False), fps=10)
    w.add_episode(_smooth_episode(rng, 3), "t")
    assert recover_journal(tmp_path / "ds") is False
    write_journal(tmp_path / "ds")
    (tmp_path / "ds" / "data" / "chunk-000" / "file-009.parquet").write_bytes(b"partial")
    assert recover_journal(tmp_path / "ds")
    assert not (tmp_path / "ds" / "data" / "chunk-000" / "file-009.parquet").exists()
    assert open_dataset(tmp_path / "ds").num_frames == 3


def test_load_frames_reads_files_holding_several_episodes(tmp_path):
    """Datasets written by lerobot in one session (e.g. from the hub) pack episodes into one mp4;
    load_frames must cut them at the right frames and match lerobot's decoder."""
    from lerobot.configs.video import RGBEncoderConfig
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    feats = demo_features((24, 32), 3, 2)
    feats["observation.images.top"] = feats.pop("observation.image")
    ds = LeRobotDataset.create("local/packed", 10, feats, root=tmp_path / "ds", use_videos=True,
                               rgb_encoder=RGBEncoderConfig(vcodec="h264"))
    for e, n in enumerate([4, 7, 5]):
        for t in range(n):
            ds.add_frame({"observation.images.top": np.full((24, 32, 3), 20 * t + 60 * e, np.uint8),
                          "observation.state": np.full(3, e, np.float32), "action": np.zeros(2, np.float32),
                          "next.reward": np.zeros(1, np.float32), "next.success": np.array([False]),
                          "next.done": np.array([False]), "task": "x"})
        ds.save_episode()
    ds.finalize()
    lr = open_dataset(tmp_path / "ds")
    assert set(lr.meta.episodes["videos/observation.images.top/file_index"]) == {0}  # one file, 3 episodes
    images, states, _, ep = load_frames(tmp_path / "ds")
    ref = np.stack([np.round(lr[i]["observation.images.top"].numpy().transpose(1, 2, 0) * 255) for i in range(16)])
    np.testing.assert_array_equal(images, ref)
    np.testing.assert_array_equal(states[:, 0], ep)
    np.testing.assert_array_equal(load_frames(tmp_path / "ds", episodes=[1])[0], ref[4:11])
    with pytest.raises(KeyError, match="cameras"):
        load_frames(tmp_path / "ds", image_key="observation.image")
