"""Pretraining data: sources, bad input, curation, stream determinism across lanes and resumes."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pixio_robot.pretrain.config import CurationConfig, DataConfig, SourceConfig
from pixio_robot.pretrain.curation import STAT_KEYS, histogram_entropy, uniform_hash, write_scores
from pixio_robot.pretrain.sources import SourceError, build_sources
from pixio_robot.pretrain.stream import PretrainStream, crop_params, mix_quotas


def _noise_img(rng, h=48, w=40) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def make_folder(root: Path, n: int = 12, corrupt: int = 2, flat: int = 0, small: int = 0) -> Path:
    rng = np.random.default_rng(0)
    (root / "sub").mkdir(parents=True)
    for i in range(n):
        _noise_img(rng).save(root / ("sub" if i % 2 else ".") / f"img{i}.{['png', 'jpg', 'webp'][i % 3]}")
    for i in range(flat):
        Image.new("RGB", (48, 48), (200, 30, 30)).save(root / f"flat{i}.png")
    for i in range(small):
        _noise_img(rng, 12, 12).save(root / f"small{i}.png")
    good = (root / "img0.png").read_bytes()
    for i in range(corrupt):  # a truncated png and a text file named .jpg
        (root / f"bad{i}.{'png' if i % 2 == 0 else 'jpg'}").write_bytes(good[: len(good) // 3] if i % 2 == 0
                                                                           else b"not an image")
    (root / "notes.txt").write_text("ignored")
    return root


def make_shards(root: Path, n_shards: int = 3, per: int = 5, truncate_last: bool = False) -> str:
    rng = np.random.default_rng(1)
    root.mkdir(parents=True, exist_ok=True)
    for s in range(n_shards):
        path = root / f"shard-{s:03d}.tar"
        with tarfile.open(path, "w") as tar:
            for k in range(per):
                buf = io.BytesIO()
                _noise_img(rng).save(buf, format="JPEG")
                for name, data in ((f"s{s}_{k}.jpg", buf.getvalue()), (f"s{s}_{k}.cls", b"3")):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        if truncate_last and s == n_shards - 1:
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2])
    return str(root / f"shard-{{000..{n_shards - 1:03d}}}.tar")


def stream_of(sources_cfg: dict, *, batch=4, world=1, rank=0, curation=None, lane_states=None, seed=0,
              with_ids=True) -> PretrainStream:
    data = DataConfig(sources=sources_cfg, num_workers=0, mix_chunk=16)
    return PretrainStream(build_sources(sources_cfg, progress=False), data, curation or CurationConfig(), seed=seed,
                          img_size=32, batch_size=batch, noise_dim=4, rank=rank, world_size=world,
                          lane_states=lane_states, with_ids=with_ids)


def take(stream, n):
    it = iter(stream)
    return [next(it) for _ in range(n)]


def test_folder_source_skips_and_counts_corrupt(tmp_path):
    root = make_folder(tmp_path / "imgs", n=12, corrupt=2)
    src = build_sources({"f": SourceConfig(type="folder", path=str(root))})[0]
    assert len(src) == 14 and any(f.startswith("sub/") for f in src.files)
    batches = take(stream_of({"f": SourceConfig(type="folder", path=str(root))}), 8)
    stats = np.sum([b["stats"].numpy() for b in batches], axis=0)
    seen, kept, corrupt = stats[:3]
    assert kept == 32 and corrupt > 0 and seen == kept + corrupt
    b = batches[0]
    assert b["images"].shape == (4, 3, 32, 32) and b["images"].dtype.is_floating_point is False
    assert not any("bad" in i for bt in batches for i in bt["ids"])


@pytest.mark.parametrize("kind", ["missing", "empty"])
def test_missing_or_empty_folder_names_the_path(tmp_path, kind):
    path = tmp_path / "nowhere"
    if kind == "empty":
        path.mkdir()
        (path / "a.txt").write_text("x")
    with pytest.raises(SourceError, match=str(path)):
        build_sources({"f": SourceConfig(type="folder", path=str(path))})


def test_webdataset_split_across_lanes_and_truncated_shard(tmp_path):
    pattern = make_shards(tmp_path / "shards", n_shards=4, per=5, truncate_last=True)
    cfg = {"w": SourceConfig(type="webdataset", path=pattern)}
    src = build_sources(cfg)[0]
    assert len(src.shards) == 4
    stats: dict = {}
    lanes = [list(src.iter_raw(lane, 2, 0, 0, stats)) for lane in range(2)]
    ids = [[sid for sid, _ in lane] for lane in lanes]
    assert not set(ids[0]) & set(ids[1])  # disjoint shards per lane
    assert 15 <= len(ids[0]) + len(ids[1]) < 20 and stats["corrupt_shards"] == 1
    shards = [{i.split("/")[1] for i in lane} for lane in ids]
    assert len(shards[0]) == 2 and len(shards[1]) == 2  # whole shards
    with pytest.raises(SourceError, match="matches no shard"):
        build_sources({"w": SourceConfig(type="webdataset", path=str(tmp_path / "none-*.tar"))})


def test_more_lanes_than_shards_split_samples(tmp_path):
    pattern = make_shards(tmp_path / "shards", n_shards=1, per=6)
    src = build_sources({"w": SourceConfig(type="webdataset", path=pattern)})[0]
    got = [[sid for sid, _ in src.iter_raw(lane, 3, 0, 0, {})] for lane in range(3)]
    assert [len(g) for g in got] == [2, 2, 2] and len({i for g in got for i in g}) == 6


def test_mixed_stream_weights_and_webdataset_resume(tmp_path):
    root = make_folder(tmp_path / "imgs", n=10, corrupt=0)
    pattern = make_shards(tmp_path / "shards", n_shards=2, per=8)
    cfg = {"f": SourceConfig(type="folder", path=str(root), weight=3.0),
           "w": SourceConfig(type="webdataset", path=pattern, weight=1.0)}
    batches = take(stream_of(cfg, batch=8), 8)
    ids = [i for b in batches for i in b["ids"]]
    share = sum(i.startswith("w/") for i in ids) / len(ids)
    assert 0.15 < share < 0.35  # weight 1 of 4
    resumed = take(stream_of(cfg, batch=8, lane_states={0: batches[3]["state"].tolist()}), 4)
    assert [b["ids"] for b in resumed] == [b["ids"] for b in batches[4:]]
    assert all((a["images"] == b["images"]).all() for a, b in zip(resumed, batches[4:]))


def test_stream_is_the_same_for_one_or_two_ranks(tmp_path):
    root = make_folder(tmp_path / "imgs", n=9, corrupt=0)
    cfg = {"f": SourceConfig(type="folder", path=str(root))}
    one = take(stream_of(cfg, batch=8), 3)
    two = [take(stream_of(cfg, batch=4, world=2, rank=r), 3) for r in range(2)]
    for k in range(3):
        union = sorted(zip(two[0][k]["ids"] + two[1][k]["ids"],
                           [x.numpy().tobytes() for x in [*two[0][k]["images"], *two[1][k]["images"]]]))
        single = sorted(zip(one[k]["ids"], [x.numpy().tobytes() for x in one[k]["images"]]))
        assert union == single  # same samples, same crops
    # every item is drawn once per pass before any repeats
    ids = [i for b in one for i in b["ids"]][:9]
    assert len(set(ids)) == 9


def test_entropy_and_resolution_filters(tmp_path):
    root = make_folder(tmp_path / "imgs", n=6, corrupt=0, flat=6, small=6)
    assert histogram_entropy(np.full((40, 40, 3), 7, np.uint8)) == 0.0
    rng = np.random.default_rng(0)
    assert histogram_entropy(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)) > 7.9
    cur = CurationConfig(entropy_threshold=4.5, min_resolution=32)
    batches = take(stream_of({"f": SourceConfig(type="folder", path=str(root))}, curation=cur), 6)
    stats = dict(zip(["seen", "kept", "corrupt", "low_entropy", "low_resolution"],
                     np.sum([b["stats"].numpy() for b in batches], axis=0)[:5]))
    assert stats["kept"] == 24 and stats["low_entropy"] > 0 and stats["low_resolution"] > 0
    assert all("flat" not in i and "small" not in i for b in batches for i in b["ids"])


def test_curation_dropping_everything_names_the_source(tmp_path):
    root = tmp_path / "flat"
    root.mkdir()
    for i in range(3):
        Image.new("RGB", (32, 32), (i, 0, 0)).save(root / f"{i}.png")
    cur = CurationConfig(entropy_threshold=4.5, max_consecutive_drops=30)
    with pytest.raises(SourceError, match=f"(?s){root}.*low_entropy=30.*relax curation.entropy_threshold"):
        take(stream_of({"f": SourceConfig(type="folder", path=str(root))}, curation=cur), 1)
    for i in range(3):  # every file unreadable, no curation: the advice is about the files
        (root / f"{i}.png").write_bytes(b"not an image")
    with pytest.raises(SourceError, match=r"corrupt=30\); check the files: they do not decode") as info:
        take(stream_of({"f": SourceConfig(type="folder", path=str(root))},
                       curation=CurationConfig(max_consecutive_drops=30)), 1)
    assert "relax curation" not in str(info.value)


def test_loss_based_sampling_keep_rate(tmp_path):
    root = make_folder(tmp_path / "imgs", n=40, corrupt=0)
    src = build_sources({"f": SourceConfig(type="folder", path=str(root))})[0]
    ids = [src.sample_id(i) for i in range(len(src))]
    losses = [0.1 if i < 20 else 5.0 for i in range(40)]  # half keep with p=0.2, half always
    scores = write_scores(tmp_path / "s.parquet", ids, losses)
    cur = CurationConfig(scores=str(scores), tau=0.5)
    batches = take(stream_of({"f": SourceConfig(type="folder", path=str(root))}, curation=cur, batch=20), 20)
    st = np.sum([b["stats"].numpy() for b in batches], axis=0)
    rate = st[1] / st[0]
    assert abs(rate - 0.6) < 0.06  # E[keep] = 0.5 * 0.2 + 0.5 * 1
    low = sum(i in ids[:20] for b in batches for i in b["ids"]) / 400
    assert 0.1 < low < 0.25  # easy samples seen rarely but not never
    # the draw changes between passes and is fixed by (seed, pass, id)
    assert uniform_hash(0, 0, ids[0]) == uniform_hash(0, 0, ids[0]) != uniform_hash(0, 1, ids[0])


def test_crop_params_and_quotas():
    rng = np.random.default_rng(0)
    for _ in range(200):
        top, left, h, w = crop_params(rng, 60, 80, (0.2, 1.0), (3 / 4, 4 / 3))
        assert 0 <= top and top + h <= 60 and 0 <= left and left + w <= 80
        assert 0.19 * 4800 <= h * w <= 4800
    assert crop_params(rng, 10, 1000, (0.99, 1.0), (3 / 4, 4 / 3)) == (0, 493, 10, 13)  # centred fallback
    assert list(mix_quotas([3, 1], 16)) == [12, 4] and list(mix_quotas([1, 1, 1], 10)).count(3) == 2


def _two_camera_dataset(root: Path, cams: tuple[str, str], shape, dtype: str, steps: int, frame) -> Path:
    """A 2-episode LeRobotDataset (real lerobot) with two cameras; `frame(ep, t)` gives both images."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    feat = {"dtype": dtype, "shape": shape, "names": ["height", "width", "channels"]}
    features = {cams[0]: feat, cams[1]: dict(feat), "action": {"dtype": "float32", "shape": (2,), "names": None}}
    ds = LeRobotDataset.create("local/two_cameras", fps=10, features=features, root=root, use_videos=dtype == "video")
    for ep in range(2):
        for t in range(steps):
            a, b = frame(ep, t)
            ds.add_frame({cams[0]: a, cams[1]: b, "action": np.zeros(2, np.float32), "task": "test"})
        ds.save_episode()
    ds.finalize()
    return root


def test_lerobot_frames_source(tmp_path):
    shape = (40, 48, 3)
    rng = np.random.default_rng(0)
    frames = []

    def frame(ep, t):
        frames.append((rng.integers(0, 256, shape, dtype=np.uint8), rng.integers(0, 256, shape, dtype=np.uint8)))
        return frames[-1]

    root = _two_camera_dataset(tmp_path / "ds", ("observation.image", "observation.wrist"), shape, "image", 3, frame)
    src = build_sources({"lr": SourceConfig(type="lerobot", path=str(root))})[0]
    assert len(src) == 12 and src.cameras == ["observation.image", "observation.wrist"]
    assert src.sample_id(5) == "lr/2/observation.wrist"
    assert np.array_equal(src.load(5), frames[2][1]) and np.array_equal(src.load(8), frames[4][0])
    one = build_sources({"lr": SourceConfig(type="lerobot", path=str(root), camera_keys=["observation.wrist"])})[0]
    assert len(one) == 6 and np.array_equal(one.load(1), frames[1][1])
    with pytest.raises(SourceError, match="not in the dataset"):
        build_sources({"lr": SourceConfig(type="lerobot", path=str(root), camera_keys=["nope"])})
    with pytest.raises(SourceError, match="not a LeRobotDataset root"):
        build_sources({"lr": SourceConfig(type="lerobot", path=str(tmp_path))})
    with pytest.raises(SourceError, match="does not exist; fix data.sources.lr.path"):
        build_sources({"lr": SourceConfig(type="lerobot", path=str(tmp_path / "typo"))})
    batch = take(stream_of({"lr": SourceConfig(type="lerobot", path=str(root))}, batch=6), 1)[0]
    assert batch["images"].shape == (6, 3, 32, 32) and len(set(batch["ids"])) == 6


def test_lane_tracker_saves_own_lanes_and_handles_new_layouts():
    from pixio_robot.pretrain.stream import LaneTracker

    saved = {"num_lanes": 4, "states": {"0": [40], "1": [41], "2": [42], "3": [43]}}
    t = LaneTracker(4, 0, saved)  # rank 1 of 2 with 2 workers owns lanes 2 and 3
    t.update({"lane": 3, "state": torch.tensor([47]), "stats": torch.zeros(8, dtype=torch.int64)})
    assert t.state_dict(rank=1, world_size=2)["states"] == {"2": [42], "3": [47]}
    other = LaneTracker(2, 0, saved)  # another layout: continue after the furthest position
    assert other.restarted and other.states == {0: [43], 1: [44]}


def _large_jpegs(root: Path, n: int = 6) -> Path:
    """Smooth 640x480 photos-like JPEGs: big enough that most crops can decode at reduced scale."""
    rng = np.random.default_rng(5)
    root.mkdir(parents=True)
    for i in range(n):
        small = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
        Image.fromarray(small).resize((640, 480), Image.Resampling.BICUBIC).save(root / f"p{i}.jpg", quality=92)
    return root


def _first_batches(root: Path, draft: bool, curation=None, n=3) -> list[dict]:
    cfg = {"f": SourceConfig(type="folder", path=str(root))}
    data = DataConfig(sources=cfg, num_workers=0, jpeg_draft=draft, crop_scale=(0.5, 1.0))
    stream = PretrainStream(build_sources(cfg, progress=False), data, curation or CurationConfig(), seed=3,
                            img_size=64, batch_size=4, noise_dim=4)
    it = iter(stream)
    return [next(it) for _ in range(n)]


def test_jpeg_draft_decode_keeps_crops_masks_and_curation(tmp_path, monkeypatch):
    """Reduced-scale JPEG decoding (the default) gives the full decode's crops within a few grey
    levels, the same mask noise and the same samples; the resolution filter still sees the
    original size."""
    root = _large_jpegs(tmp_path / "big")
    from PIL import JpegImagePlugin

    calls = []
    orig = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size, **kw):
        out = orig(self, mode, size, **kw)
        calls.append(self.size)
        return out

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    fast = _first_batches(root, True)
    monkeypatch.undo()
    assert calls and min(w for w, _ in calls) < 640  # really decoded smaller
    full = _first_batches(root, False)
    for a, b in zip(fast, full):
        assert torch.equal(a["noise"], b["noise"]) and torch.equal(a["state"], b["state"])
        diff = (a["images"].float() - b["images"].float()).abs()
        assert diff.mean() < 4.0, diff.mean()  # of 255: the same crop, resampled from fewer pixels
    kept = _first_batches(root, True, CurationConfig(min_resolution=400), n=1)[0]  # 480 px short side
    assert kept["stats"][STAT_KEYS.index("low_resolution")] == 0


def test_entropy_filter_sees_nearly_the_same_bits_after_a_reduced_decode(tmp_path):
    from pixio_robot.pretrain.sources import decode_image

    root = _large_jpegs(tmp_path / "big", n=3)
    for f in sorted(root.glob("*.jpg")):
        full = decode_image(f)
        half = decode_image(f, lambda w, h: (w // 2, h // 2))
        assert half.shape[:2] == (240, 320) and full.shape[:2] == (480, 640)
        assert abs(histogram_entropy(full) - histogram_entropy(half)) < 0.15


def test_entropy_filter_reads_one_scale_per_image_whatever_the_crop(tmp_path):
    """An image's entropy must not depend on the pass's crop (which picks the reduced JPEG decode):
    near the threshold, the crop's scale flipped keep / drop from pass to pass."""
    from pixio_robot.pretrain.sources import decode_image
    from pixio_robot.pretrain.stream import RandomResizedCrop, decode_for_crop

    root = _large_jpegs(tmp_path / "big", n=2)
    for f in sorted(root.glob("*.jpg")):
        entropies, crop_scales, crop_ents = set(), set(), set()
        for k in range(40):
            crop = RandomResizedCrop(np.random.default_rng([0, 13, k]), 128, (0.08, 1.0), (0.75, 4 / 3))
            img, ent = decode_for_crop(lambda d, f=f: decode_image(f, d), crop, True, True)
            entropies.add(ent)
            crop_scales.add(img.shape[1])
            ref = RandomResizedCrop(np.random.default_rng([0, 13, k]), 128, (0.08, 1.0), (0.75, 4 / 3))
            alone = decode_image(f, ref.draft)  # what the crop alone decodes (the old entropy input)
            crop_ents.add(round(histogram_entropy(alone), 6))
            assert img.shape[1] >= alone.shape[1]  # never fewer pixels for the crop than it asked for
            diff = np.abs(crop(img).astype(float) - ref(alone).astype(float)).mean()
            assert diff < 4.0, diff  # the same crop
        assert len(entropies) == 1, entropies
        assert len(crop_ents) > 1 and crop_scales == {320, 640}  # crops decoded at several scales
    # without reduced decodes the crop reads the full image and the entropy the same canonical scale
    crop = RandomResizedCrop(np.random.default_rng(1), 64, (0.08, 1.0), (0.75, 4 / 3))
    img, ent = decode_for_crop(lambda d, f=f: decode_image(f, d), crop, False, True)
    assert img.shape[:2] == (480, 640) and ent in entropies


def test_lerobot_video_source_decodes_one_camera_and_says_why_frames_fail(tmp_path, monkeypatch):
    """Each sample decodes only its own camera (LeRobotDataset[i] decodes every camera) and gives
    lerobot's own values; a frame that fails to load is reported with its reason."""
    from lerobot.datasets import video_utils
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    shape = (32, 48, 3)
    root = _two_camera_dataset(tmp_path / "vid", ("observation.images.top", "observation.images.wrist"), shape,
                               "video", 4, lambda ep, t: (np.full(shape, 40 * t + 10, np.uint8),
                                                          np.full(shape, 200 - 30 * ep, np.uint8)))
    src = build_sources({"lr": SourceConfig(type="lerobot", path=str(root))})[0]
    ref = LeRobotDataset("local/two_cameras", root=root, video_backend="pyav")
    calls = []
    real = video_utils.decode_video_frames
    monkeypatch.setattr(video_utils, "decode_video_frames", lambda path, *a, **k: calls.append(path) or real(path, *a, **k))
    for i in range(len(src)):
        frame, cam = divmod(i, 2)
        want = (ref[frame][src.cameras[cam]].permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        calls.clear()
        got = src.load(i)
        assert np.array_equal(got, want), i
        assert len(calls) == 1 and src.cameras[cam] in str(calls[0])  # this camera's video only
    assert abs(int(src.load(2 * 4 + 1).mean()) - 170) <= 3  # episode 1's wrist frame (codec error)

    def broken(*a, **k):
        raise RuntimeError("no decoder for codec xyz")

    monkeypatch.setattr(video_utils, "decode_video_frames", broken)
    cfg = {"lr": SourceConfig(type="lerobot", path=str(root))}
    with pytest.raises(SourceError, match="first error: .*RuntimeError: no decoder for codec xyz"):
        take(stream_of(cfg, batch=2, curation=CurationConfig(max_consecutive_drops=5)), 1)


def test_test_preset_does_not_mix_its_sim_frames_into_the_chosen_data(tmp_path):
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from pixio_robot.pretrain.config import register_configs

    register_configs()
    with initialize_config_module("pixio_robot.configs.pretrain", version_base="1.3"):
        cfg = OmegaConf.to_object(compose("config", overrides=["experiment=test", "data=lerobot",
                                                               "data.sources.lerobot.path=/x"]))
        default = OmegaConf.to_object(compose("config", overrides=["experiment=test"]))
    assert list(cfg.data.sources) == ["lerobot"]
    assert list(default.data.sources) == ["sim"] and default.data.sources["sim"].frames == 32



def test_distinct_high_bit_depth_ids_are_counted_up_to_a_bound(tmp_path, monkeypatch, caplog):
    """Each image counts once however often it is drawn; beyond the bound the count says 'at least'
    (so a corpus of millions of 16-bit images does not grow every checkpoint)."""
    import logging

    from pixio_robot.pretrain import runstats, stream
    from pixio_robot.pretrain.stream import LaneTracker

    (tmp_path / "imgs").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "imgs" / "a.png")
    srcs = build_sources({"a": SourceConfig(type="folder", path=str(tmp_path / "imgs")),
                          "b": SourceConfig(type="folder", path=str(tmp_path / "imgs"))})
    t = LaneTracker(1, 0, sources=srcs)
    for ids in (["x", "y"], ["x", "y"], ["z"]):  # x and y drawn twice
        t.update({"lane": 0, "state": torch.tensor([0]), "stats": torch.zeros(len(STAT_KEYS), dtype=torch.int64),
                  "converted_ids": [ids, []]})
    assert runstats.file_stats(t)["high_bit_depth"] == {"a": 3, "b": 0}
    monkeypatch.setattr(stream, "MAX_TRACKED_IDS", 2)
    monkeypatch.setattr(runstats, "MAX_TRACKED_IDS", 2)
    capped = LaneTracker(1, 0, sources=srcs)
    capped.update({"lane": 0, "state": torch.tensor([0]), "stats": torch.zeros(len(STAT_KEYS), dtype=torch.int64),
                   "converted_ids": [["p", "q", "r", "s"], []]})
    stats = runstats.file_stats(capped)
    assert stats["high_bit_depth"]["a"] == 2 and len(stats["high_bit_depth_files"]["a"]) == 2
    with caplog.at_level(logging.INFO, logger="pixio_robot"):
        runstats.report_files(stats, 0, tmp_path)
    assert "source 'a': at least 2 distinct high-bit-depth image(s)" in caplog.text
