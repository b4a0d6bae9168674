"""Tiny LeRobotDatasets written with lerobot itself (shared by the policy / train / cache tests),
and tests of the demonstration reader and batcher."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

STATE_DIM, ACTION_DIM = 4, 2


def make_dataset(root: Path, n_episodes: int = 4, length: int = 10, size: int = 32, video: bool = True,
                 seed: int = 0, action_dim: int = ACTION_DIM, state_dim: int = STATE_DIM,
                 smooth: bool = False, cameras: tuple[str, ...] = ("observation.image",),
                 state_key: str = "observation.state") -> Path:
    """A LeRobotDataset v3 on disk whose actions are a fixed function of the state (learnable).
    `smooth`: states follow a deterministic trajectory per episode, so future actions (chunks) are
    predictable from the current observation too. `cameras` / `state_key` name the features
    (the second camera's frames are the first one's, inverted)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    feats = {cam: {"dtype": "video" if video else "image", "shape": (size, size, 3),
                   "names": ["height", "width", "channels"]} for cam in cameras}
    feats.update({
        state_key: {"dtype": "float32", "shape": (state_dim,), "names": None},
        "action": {"dtype": "float32", "shape": (action_dim,), "names": None},
        "next.success": {"dtype": "bool", "shape": (1,), "names": None},
    })
    ds = LeRobotDataset.create("local/tiny", fps=10, features=feats, root=root, use_videos=video)
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((state_dim, action_dim)).astype(np.float32)
    for e in range(n_episodes):
        for t in range(length):
            img = np.zeros((size, size, 3), np.uint8)
            img[..., 0] = (30 * e + 20 * t) % 256
            img[: size // 2, :, 1] = 255 - 12 * t
            if smooth:
                state = np.sin(0.3 * t * np.arange(1, state_dim + 1) + e).astype(np.float32)
            else:
                state = rng.standard_normal(state_dim).astype(np.float32)
            action = np.tanh(state @ w).astype(np.float32)
            frame = {cam: img if i == 0 else 255 - img for i, cam in enumerate(cameras)}
            ds.add_frame({**frame, state_key: state, "action": action,
                          "next.success": np.array([t == length - 1]), "task": "tiny task"})
        ds.save_episode()
    ds.finalize()
    return Path(root)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("ds") / "tiny", n_episodes=3, length=8)


def test_load_demos_layout_and_stats(tiny_dataset):
    from pixio_robot.policies.demos import load_demos

    d = load_demos(str(tiny_dataset))
    assert d.states.shape == (24, STATE_DIM) and d.actions.shape == (24, ACTION_DIM)
    assert d.image_key == "observation.image" and d.image_shape == (32, 32, 3)
    assert d.ep_start[:9].tolist() == [0] * 8 + [8] and d.ep_end[7] == 8 and d.ep_end[8] == 16
    stats = d.stats()
    np.testing.assert_allclose(stats["action"]["mean"], d.actions.mean(0), rtol=1e-6)
    train, val = d.split(0.34, seed=0)
    assert len(train) + len(val) == 24 and len(val) == 8  # one whole episode held out
    assert len(np.unique(d.episode_index[val])) == 1


def test_batcher_pads_history_and_chunks(tiny_dataset):
    from pixio_robot.policies.demos import DemoBatcher, load_demos

    d = load_demos(str(tiny_dataset))
    feats = np.arange(24, dtype=np.float32)[:, None].repeat(3, 1)  # row id as the "feature"
    b = DemoBatcher(d, feats, history=3, chunk=4, cached=True).batch(np.array([0, 1, 7, 9]))
    hist = b["observation.features"][:, :, 0]
    assert hist.tolist() == [[0, 0, 0], [0, 0, 1], [5, 6, 7], [8, 8, 9]]  # padded with the episode's first frame
    assert b["action_is_pad"][2].tolist() == [False, True, True, True]  # frame 7 is the episode's last
    assert torch.equal(b["action"][2, 1], b["action"][2, 0])  # padded with the last action
    assert torch.equal(b["action"][3, 0], torch.from_numpy(d.actions[9]))


def test_load_demos_bad_inputs(tmp_path, tiny_dataset):
    from pixio_robot.policies.demos import load_demos

    with pytest.raises(FileNotFoundError, match="not a LeRobotDataset"):
        load_demos(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="does not exist; fix dataset.root"):
        load_demos(str(tmp_path / "typo"))
    with pytest.raises(KeyError, match="camera key 'nope'"):
        load_demos(str(tiny_dataset), image_key="nope")
    with pytest.raises(ValueError, match="dataset.root"):
        load_demos()


@pytest.fixture(scope="module")
def altstate_dataset(tmp_path_factory) -> Path:
    """Two cameras (observation.images.top / .wrist) and the state under observation.joint_pos."""
    return make_dataset(tmp_path_factory.mktemp("alt") / "alt", n_episodes=2, length=3, size=16, video=False,
                        state_dim=3, cameras=("observation.images.top", "observation.images.wrist"),
                        state_key="observation.joint_pos")


def test_load_demos_state_and_action_keys(altstate_dataset, caplog, monkeypatch):
    import logging

    from pixio_robot.policies.demos import load_demos

    monkeypatch.setattr(logging.getLogger("pixio_robot"), "propagate", True)  # let caplog see it
    with caplog.at_level(logging.WARNING):
        d = load_demos(str(altstate_dataset))
    assert d.states.shape == (6, 0) and d.state_key is None and d.image_key == "observation.images.top"
    assert "observation.joint_pos" in caplog.text and "dataset.state_key=" in caplog.text  # not silent
    d = load_demos(str(altstate_dataset), state_key="observation.joint_pos")
    assert d.states.shape == (6, 3) and d.state_key == "observation.joint_pos" and d.action_key == "action"
    assert np.abs(d.states).sum() > 0 and list(d.stats()) == ["observation.state", "action"]
    with pytest.raises(ValueError, match=r"dataset.state_key='observation.state' is not a feature.*"
                                         r"'observation.joint_pos'"):
        load_demos(str(altstate_dataset), state_key="observation.state")
    with pytest.raises(ValueError, match=r"dataset.action_key='act' is not a feature.*'action'"):
        load_demos(str(altstate_dataset), action_key="act")
    with pytest.raises(ValueError, match="not a numeric vector"):
        load_demos(str(altstate_dataset), state_key="observation.images.wrist")


def test_load_demos_uses_the_pretraining_video_backend(tiny_dataset):
    from pixio_robot.policies.demos import load_demos

    # lerobot 0.6 keeps the decoder choice as LeRobotDataset._video_backend (no public accessor)
    assert load_demos(str(tiny_dataset)).dataset._video_backend == "pyav"  # as pretraining's data config
    assert load_demos(str(tiny_dataset), video_backend="torchcodec").dataset._video_backend == "torchcodec"


def test_load_frames_documents_states_none_without_state(tmp_path):
    from pixio_robot.data.lerobot_io import load_frames

    root = make_dataset(tmp_path / "s", n_episodes=1, length=2, size=8, video=False, state_key="observation.other")
    images, states, actions, _ = load_frames(root)
    assert states is None and images.shape == (2, 8, 8, 3) and actions.shape == (2, ACTION_DIM)
    assert "None" in load_frames.__doc__  # the docstring says so
