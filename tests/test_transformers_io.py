"""Hugging Face transformers both ways, against the real `transformers.PixioModel`, and timm
registration by `import pixio_robot` alone."""

import subprocess
import sys

import pytest
import torch

from pixio_robot.models import create_model, load_encoder, save_encoder

transformers = pytest.importorskip("transformers")


def _random_pixio_model(seed=0):
    from transformers import PixioConfig, PixioModel

    torch.manual_seed(seed)
    cfg = PixioConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, mlp_ratio=4,
                      image_size=64, patch_size=16, n_cls_tokens=8)
    model = PixioModel(cfg).eval()
    with torch.no_grad():  # transformers inits LayerNorms to (1, 0): make every tensor count
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def test_load_encoder_reads_a_real_transformers_pixio_model(tmp_path):
    hf = _random_pixio_model()
    hf.save_pretrained(tmp_path / "hf")
    enc = load_encoder(tmp_path / "hf").eval()
    assert (enc.embed_dim, len(enc.blocks), enc.num_cls_tokens) == (64, 2, 8)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = hf(pixel_values=x)
        ours = enc.forward_features(x)
    k = enc.num_cls_tokens
    assert (ours["cls_tokens"] - out.last_hidden_state[:, :k]).abs().max() < 1e-5
    assert (ours["patch_tokens"] - out.last_hidden_state[:, k:]).abs().max() < 1e-5
    assert (enc.embed(x) - out.pooler_output).abs().max() < 1e-5  # pooler = mean of the class tokens


def test_a_transformers_model_is_fed_as_its_image_processor_says(tmp_path):
    """A PixioModel directory with its own (non-ImageNet) processor: the adapter's embedding of a
    uint8 frame equals transformers' processor + model on the same frame."""
    import numpy as np
    from transformers import AutoImageProcessor, BitImageProcessor

    from pixio_robot.policies.encoder_adapter import AdapterConfig, EncoderAdapter

    hf = _random_pixio_model(seed=1)
    hf.save_pretrained(tmp_path / "hf")
    BitImageProcessor(do_resize=False, do_center_crop=False, do_rescale=True, rescale_factor=1 / 255,
                      do_normalize=True, image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.25, 0.3]
                      ).save_pretrained(tmp_path / "hf")
    adapter = EncoderAdapter(AdapterConfig(source="checkpoint", path=str(tmp_path / "hf"))).eval()
    assert adapter.norm_mean == (0.5, 0.4, 0.3) and adapter.norm_std == (0.2, 0.25, 0.3)
    frames = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    proc = AutoImageProcessor.from_pretrained(tmp_path / "hf")
    with torch.no_grad():
        want = hf(**proc(images=list(frames), return_tensors="pt")).pooler_output
        got = adapter(torch.from_numpy(frames))
    assert (got - want).abs().max() < 1e-4
    # without a processor file: Pixio's own ImageNet normalisation
    (tmp_path / "hf" / "preprocessor_config.json").unlink()
    plain = EncoderAdapter(AdapterConfig(source="checkpoint", path=str(tmp_path / "hf")))
    assert plain.norm_mean == (0.485, 0.456, 0.406)


def test_save_encoder_transformers_loads_with_automodel(tmp_path):
    from transformers import AutoImageProcessor, AutoModel, PixioModel

    torch.manual_seed(1)
    enc = create_model("pixio_vittest", num_cls_tokens=4).eval()
    save_encoder(enc, tmp_path / "out", format="transformers")
    hf = AutoModel.from_pretrained(tmp_path / "out").eval()
    assert type(hf) is PixioModel and hf.config.n_cls_tokens == 4
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        out = hf(pixel_values=x).last_hidden_state
        ours = enc.forward_features(x)
    assert (out[:, :4] - ours["cls_tokens"]).abs().max() < 1e-4
    assert (out[:, 4:] - ours["patch_tokens"]).abs().max() < 1e-4
    proc = AutoImageProcessor.from_pretrained(tmp_path / "out")
    assert list(proc.image_mean) == [0.485, 0.456, 0.406] and proc.size["height"] == 64
    # and back into the project, bit for bit
    back = load_encoder(tmp_path / "out").eval()
    for k, v in enc.state_dict().items():
        assert torch.equal(v, back.state_dict()[k]), k


def test_save_encoder_rejects_unknown_format_and_non_square(tmp_path):
    with pytest.raises(ValueError, match="'pixio' or 'transformers'"):
        save_encoder(create_model("pixio_vittest"), tmp_path / "x", format="onnx")
    with pytest.raises(ValueError, match="square"):
        save_encoder(create_model("pixio_vittest", img_size=(64, 96)), tmp_path / "y", format="transformers")


@pytest.mark.parametrize("order", ["pixio_robot first", "timm first"])
def test_import_pixio_robot_registers_in_timm_without_importing_it(order):
    first, second = ("pixio_robot", "timm") if order == "pixio_robot first" else ("timm", "pixio_robot")
    code = (f"import sys; import {first}; "
            "lazy = 'timm' not in sys.modules and 'torch' not in sys.modules; "
            f"import {second}; import timm; m = timm.create_model('pixio_vitb16'); "
            "print(lazy, type(m).__name__, m.embed_dim, 'pixio_vittest' in timm.list_models('pixio_*'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    lazy, cls, dim, listed = out.stdout.split()
    assert (cls, dim, listed) == ("PixioEncoder", "768", "True")
    assert lazy == ("True" if first == "pixio_robot" else "False")
