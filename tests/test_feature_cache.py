"""Frozen-feature cache: hit, miss, invalidation by weights / preprocessing / dataset content."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_policies_data import make_dataset

from pixio_robot.data.feature_cache import ArrayFrames, FeatureCache, LeRobotFrames, directory_fingerprint
from pixio_robot.policies import build_adapter


def _frames(n=12, size=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


class CountingAdapter:
    """Wraps an adapter, counting encode calls (to tell a hit from a rebuild)."""

    def __init__(self, adapter):
        self.a, self.calls = adapter, 0

    def __getattr__(self, name):
        return getattr(self.a, name)

    def encode(self, x):
        self.calls += 1
        return self.a.encode(x)


def test_hit_miss_and_values(tmp_path):
    cache = FeatureCache(tmp_path)
    adapter = CountingAdapter(build_adapter())
    src = ArrayFrames(_frames())
    feats, hit = cache.get(adapter, src, batch_size=5, progress=False)
    assert not hit and adapter.calls == 3 and feats.shape == (12, 32)
    assert isinstance(feats, np.memmap)
    with torch.no_grad():
        expect = adapter.a.encode(torch.from_numpy(src.frames)).numpy()
    np.testing.assert_allclose(feats, expect, atol=1e-5)
    again, hit = cache.get(adapter, src, progress=False)
    assert hit and adapter.calls == 3  # no encoder call on a hit
    np.testing.assert_array_equal(again, feats)
    assert len(cache.entries()) == 1


def test_invalidation_on_weights_preprocessing_and_data(tmp_path):
    cache = FeatureCache(tmp_path)
    adapter = build_adapter()
    src = ArrayFrames(_frames())
    base, _ = cache.get(adapter, src, progress=False)
    key0 = cache.key(adapter, src)
    with torch.no_grad():  # any weight change -> new key -> rebuilt features
        adapter.backbone.model.blocks[0].mlp.fc1.weight[0, 0] += 0.5
    assert cache.key(adapter, src) != key0
    changed, hit = cache.get(adapter, src, progress=False)
    assert not hit and not np.allclose(changed, base)
    resized = build_adapter(image_size=32)  # preprocessing change
    assert cache.key(resized, src) != key0 and cache.get(resized, src, progress=False)[1] is False
    frames = _frames()
    frames[3, 0, 0, 0] ^= 1  # one pixel of one frame
    assert cache.key(build_adapter(), ArrayFrames(frames)) != key0
    assert cache.lookup(build_adapter(), src) is not None  # the original entry is still a hit
    removed = cache.prune(keep={key0})
    assert len(removed) == 2 and len(cache.entries()) == 1


def test_corrupt_entry_is_rebuilt(tmp_path):
    cache = FeatureCache(tmp_path)
    adapter, src = build_adapter(), ArrayFrames(_frames())
    feats, _ = cache.get(adapter, src, progress=False)
    entry = tmp_path / cache.key(adapter, src)
    (entry / "features.npy").write_bytes(b"garbage")
    assert cache.lookup(adapter, src) is None
    rebuilt, hit = cache.get(adapter, src, progress=False)
    assert not hit and rebuilt.shape == feats.shape


def test_lerobot_video_dataset_frames_and_fingerprint(tmp_path):
    root = make_dataset(tmp_path / "ds", n_episodes=2, length=6)
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    src = LeRobotFrames(LeRobotDataset("local/tiny", root=root), "observation.image")
    cache = FeatureCache(tmp_path / "cache")
    frames = cache.frames(src, progress=False)
    assert frames.shape == (12, 32, 32, 3) and frames.dtype == np.uint8
    red = frames[:, 0, 0, 0].astype(int)  # written as (30 e + 20 t) % 256, decoded from lossy video
    assert np.abs(red - np.array([30 * e + 20 * t for e in range(2) for t in range(6)])).max() <= 6
    feats, hit = cache.get(build_adapter(), src, progress=False)
    assert not hit and feats.shape == (12, 32)
    fp = directory_fingerprint(root)
    make_dataset(root.parent / "other", n_episodes=2, length=6, seed=1)
    assert directory_fingerprint(root.parent / "other") != fp
    with pytest.raises(KeyError, match="camera key"):
        LeRobotFrames(src.ds, "observation.images.top")


def test_float16_cache_is_a_separate_entry(tmp_path):
    adapter, src = build_adapter(embedding="spatial"), ArrayFrames(_frames(n=4))
    full, _ = FeatureCache(tmp_path).get(adapter, src, progress=False)
    half_cache = FeatureCache(tmp_path, dtype="float16")
    half, hit = half_cache.get(adapter, src, progress=False)
    assert not hit and half.dtype == np.float16 and full.dtype == np.float32 and half.shape == (4, 16, 32)
    np.testing.assert_allclose(half.astype(np.float32), full, atol=2e-2, rtol=1e-2)
    assert half_cache.get(adapter, src, progress=False)[1]
    with pytest.raises(ValueError, match="float16"):
        FeatureCache(tmp_path, dtype="int8")


def _get_in_process(args):
    root, seed = args
    torch.set_num_threads(1)
    _, hit = FeatureCache(root).get(build_adapter(), ArrayFrames(_frames(n=40)), batch_size=8, progress=False)
    return hit


def test_concurrent_builders_of_one_entry_all_succeed(tmp_path):
    """Parallel benchmark cells share a cache entry: one process builds it under a lock, the others
    wait and read it (they used to delete it from under each other)."""
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(3) as pool:
        hits = pool.map(_get_in_process, [(str(tmp_path), i) for i in range(3)])
    assert sorted(hits) == [False, True, True]
    assert len(FeatureCache(tmp_path).entries()) == 1


def test_architecture_settings_are_part_of_the_key(tmp_path):
    """The same weights under another config (e.g. head count) give other features: not a hit."""
    from pixio_robot.models import create_model, save_encoder

    torch.manual_seed(0)
    enc = create_model("pixio_vittest")
    save_encoder(enc, tmp_path / "a")
    import json

    save_encoder(enc, tmp_path / "b")
    cfg = json.loads((tmp_path / "b" / "config.json").read_text())
    cfg["config"]["num_heads"] = 4 if cfg["config"]["num_heads"] != 4 else 2
    (tmp_path / "b" / "config.json").write_text(json.dumps(cfg))
    a = build_adapter(source="checkpoint", path=str(tmp_path / "a"))
    b = build_adapter(source="checkpoint", path=str(tmp_path / "b"))
    assert a.encoder_digest() == b.encoder_digest()  # identical weights ...
    src = ArrayFrames(_frames())
    assert FeatureCache(tmp_path / "c").key(a, src) != FeatureCache(tmp_path / "c").key(b, src)  # ... other key
