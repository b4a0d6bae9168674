"""Images of every PIL mode and bit depth decode to sane uint8 RGB through every image source
(folder, WebDataset shard, LeRobot dataset image features; the sim source renders RGB uint8 only),
checked against values computed by hand from what was written."""

from __future__ import annotations

import io
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixio_robot.pretrain.config import SourceConfig
from pixio_robot.pretrain.sources import DECODE_COUNTS, FolderSource, WebDatasetSource, decode_image

H, W = 4, 6


def _png16_rgb(rgb: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG written by hand (PIL cannot write one)."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\0" + rgb[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _save(im: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


def cases() -> dict[str, tuple[bytes, str, np.ndarray]]:
    """name -> (file bytes, extension, the expected uint8 [H, W, 3] computed by hand)."""
    grey = np.arange(H * W, dtype=np.uint8).reshape(H, W) * 10  # 0 .. 230
    rgb = np.stack([grey, 255 - grey, np.full_like(grey, 77)], axis=2)
    g16 = (np.arange(H * W, dtype=np.uint16).reshape(H, W) * 2500 + 300)  # 300 .. 57800
    out: dict[str, tuple[bytes, str, np.ndarray]] = {}
    bits = (grey > 100)
    out["1"] = (_save(Image.fromarray(bits), "PNG"), ".png", np.repeat(bits[..., None] * np.uint8(255), 3, 2))
    out["L"] = (_save(Image.fromarray(grey, "L"), "PNG"), ".png", np.repeat(grey[..., None], 3, 2))
    la = np.stack([grey, np.full_like(grey, 128)], 2)
    out["LA"] = (_save(Image.fromarray(la, "LA"), "PNG"), ".png", np.repeat(grey[..., None], 3, 2))
    pal = Image.fromarray(grey, "L").convert("P")
    out["P"] = (_save(pal, "PNG"), ".png", np.repeat(grey[..., None], 3, 2))  # L -> P keeps the greys exactly
    out["RGB"] = (_save(Image.fromarray(rgb, "RGB"), "PNG"), ".png", rgb)
    rgba = np.concatenate([rgb, np.full((H, W, 1), 200, np.uint8)], 2)
    out["RGBA"] = (_save(Image.fromarray(rgba, "RGBA"), "PNG"), ".png", rgb)  # alpha dropped
    cmyk = np.stack([np.zeros_like(grey), grey, np.zeros_like(grey), np.zeros_like(grey)], 2)
    # C=0, M=m, Y=0, K=0 -> R=255, G=255-m, B=255 (PIL's naive CMYK -> RGB)
    out["CMYK"] = (_save(Image.fromarray(cmyk, "CMYK"), "TIFF"), ".tiff",
                   np.stack([np.full_like(grey, 255), 255 - grey, np.full_like(grey, 255)], 2))
    exp16 = np.repeat((g16 >> 8).astype(np.uint8)[..., None], 3, 2)  # hand rule: value >> 8
    out["I;16"] = (_save(Image.fromarray(g16), "PNG"), ".png", exp16)
    i32 = Image.fromarray(g16.astype(np.int32), "I")
    out["I"] = (_save(i32, "TIFF"), ".tiff", exp16)  # 16-bit data held in mode I: the 16-bit rule
    big = (g16.astype(np.int64) << 15).astype(np.int32)  # beyond 16 bits: int32 max -> 255 (value >> 23)
    out["I-32bit"] = (_save(Image.fromarray(big, "I"), "TIFF"), ".tiff",
                      np.repeat((big.astype(np.int64) >> 23).astype(np.uint8)[..., None], 3, 2))
    f = (grey.astype(np.float32) / 230.0)  # 0 .. 1
    out["F"] = (_save(Image.fromarray(f, "F"), "TIFF"), ".tiff",
                np.repeat(np.rint(f * 255).astype(np.uint8)[..., None], 3, 2))
    rgb16 = np.stack([g16, 65535 - g16, np.full_like(g16, 0x1234)], 2)
    out["RGB-16bit-PNG"] = (_png16_rgb(rgb16), ".png", (rgb16 >> 8).astype(np.uint8))
    return out


CASES = cases()


def _check(img: np.ndarray, want: np.ndarray, name: str) -> None:
    assert img.dtype == np.uint8 and img.shape == (H, W, 3), (name, img.dtype, img.shape)
    np.testing.assert_array_equal(img, want, err_msg=name)


def test_sixteen_bit_grey_is_not_saturated():
    """The reported bug: convert("RGB") turned a mid-grey 16-bit PNG almost white."""
    data = _save(Image.fromarray(np.full((H, W), 30000, np.uint16)), "PNG")
    assert Image.open(io.BytesIO(data)).convert("RGB").getpixel((0, 0)) == (255, 255, 255)  # what it did
    assert decode_image(data)[0, 0].tolist() == [30000 >> 8] * 3 == [117] * 3


@pytest.mark.parametrize("name", list(CASES))
def test_decode_bytes_and_path(name, tmp_path):
    data, ext, want = CASES[name]
    _check(decode_image(data), want, name)
    p = tmp_path / f"x{ext}"
    p.write_bytes(data)
    _check(decode_image(p), want, name)


def test_every_mode_through_folder_and_webdataset(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    shard = tmp_path / "shard-000.tar"
    with tarfile.open(shard, "w") as tar:
        for name, (data, ext, _) in CASES.items():
            fname = name.replace(";", "_") + ext
            (folder / fname).write_bytes(data)
            info = tarfile.TarInfo(f"{name.replace(';', '_')}{ext}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    src = FolderSource("f", SourceConfig(type="folder", path=str(folder)))
    assert len(src) == len(CASES)
    by_name = {Path(f).stem: i for i, f in enumerate(src.files)}
    before = DECODE_COUNTS["high_bit_depth"]
    for name, (_, _, want) in CASES.items():
        _check(src.load(by_name[name.replace(";", "_")]), want, f"folder {name}")
    high = {"I;16", "I", "I-32bit", "F"}  # PIL opens the 16-bit RGB PNG as 8-bit RGB itself (top bytes)
    assert DECODE_COUNTS["high_bit_depth"] - before == len(high)
    web = WebDatasetSource("w", SourceConfig(type="webdataset", path=str(shard)))
    got = {sid.rsplit("/", 1)[1]: decode_image(data) for sid, data in web.iter_raw(0, 1, 0, 0, {})}
    assert len(got) == len(CASES)
    for name, (_, _, want) in CASES.items():
        _check(got[name.replace(";", "_")], want, f"webdataset {name}")


def test_lerobot_image_features_of_every_stored_mode(tmp_path):
    """LeRobot 0.6 stores RGB frames as 8-bit PNG, 16-bit depth maps as I;16 PNG and float depth as
    F TIFF (`is_depth_map` features). Colour cameras are read by default, depth maps when named, each
    to uint8 RGB by the hand rules above (16-bit: value >> 8; float in [0, 1]: round(value * 255))."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from pixio_robot.pretrain.sources import build_sources

    img = {"dtype": "image", "names": ["height", "width", "channels"]}
    features = {"observation.images.rgb": {**img, "shape": (H, W, 3)},
                "observation.images.depth": {**img, "shape": (H, W, 1),
                                             "info": {"is_depth_map": True, "depth_unit": "mm"}},
                "observation.images.fdepth": {**img, "shape": (H, W, 1),
                                              "info": {"is_depth_map": True, "depth_unit": "m"}},
                "action": {"dtype": "float32", "shape": (2,), "names": None}}
    ds = LeRobotDataset.create("local/depth", fps=10, features=features, root=tmp_path / "ds", use_videos=False)
    rgb = [np.random.default_rng(t).integers(0, 256, (H, W, 3), dtype=np.uint8) for t in range(2)]
    mm = [(np.arange(H * W, dtype=np.uint16).reshape(H, W, 1) * 2500 + 300 * t) for t in range(2)]  # 0 .. 57800
    metres = [np.linspace(0, 1, H * W, dtype=np.float32).reshape(H, W, 1) * (1 - 0.5 * t) for t in range(2)]
    for t in range(2):
        ds.add_frame({"observation.images.rgb": rgb[t], "observation.images.depth": mm[t],
                      "observation.images.fdepth": metres[t], "action": np.zeros(2, np.float32), "task": "t"})
    ds.save_episode()
    ds.finalize()
    colour = build_sources({"lr": SourceConfig(type="lerobot", path=str(tmp_path / "ds"))})[0]
    assert colour.cameras == ["observation.images.rgb"] and len(colour) == 2
    _check(colour.load(1), rgb[1], "lerobot rgb")
    named = ["observation.images.rgb", "observation.images.depth", "observation.images.fdepth"]
    src = build_sources({"lr": SourceConfig(type="lerobot", path=str(tmp_path / "ds"), camera_keys=named)})[0]
    before = DECODE_COUNTS["high_bit_depth"]
    for t in range(2):
        _check(src.load(3 * t), rgb[t], "lerobot rgb")
        _check(src.load(3 * t + 1), np.repeat((mm[t] >> 8).astype(np.uint8), 3, 2), "lerobot uint16 depth")
        _check(src.load(3 * t + 2), np.repeat(np.rint(metres[t] * 255).astype(np.uint8), 3, 2), "lerobot float depth")
    assert DECODE_COUNTS["high_bit_depth"] - before == 4
