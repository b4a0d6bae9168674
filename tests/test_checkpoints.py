"""Checkpoint I/O: bitwise round trip, the official .pth layout, clear errors."""

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

from pixio_robot.models import create_model, load_encoder, load_model, save_encoder, save_model


def test_save_load_roundtrip_bitwise(tmp_path):
    torch.manual_seed(0)
    enc = create_model("pixio_vittest", num_cls_tokens=4, img_size=(64, 96)).eval()
    save_encoder(enc, tmp_path / "enc")
    assert (tmp_path / "enc" / "model.safetensors").exists() and (tmp_path / "enc" / "config.json").exists()
    back = load_encoder(tmp_path / "enc").eval()
    assert back.config == enc.config
    for (k, a), (_, b) in zip(enc.state_dict().items(), back.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    x = torch.randn(2, 3, 64, 96)
    assert torch.equal(enc.embed(x), back.embed(x))


def test_mae_roundtrip_and_encoder_from_mae(tmp_path):
    torch.manual_seed(0)
    model = create_model("pixio_mae_test").eval()
    save_model(model, tmp_path / "mae")
    back = load_model(tmp_path / "mae")
    x = torch.randn(2, 3, 64, 64)
    ids = torch.tensor([[0, 1, 4, 5]] * 2)
    assert torch.equal(model(x, ids_keep=ids)[1], back(x, ids_keep=ids)[1])
    enc = load_encoder(tmp_path / "mae")  # a whole-MAE checkpoint yields its encoder
    assert torch.equal(enc.eval().embed(x), model.encoder.embed(x))
    save_encoder(model, tmp_path / "from_mae")  # handed the whole MAE, save_encoder keeps its encoder
    assert torch.equal(load_encoder(tmp_path / "from_mae").eval().embed(x), model.encoder.embed(x))
    with pytest.raises(TypeError, match="needs a PixioEncoder"):
        save_encoder(torch.nn.Linear(2, 2), tmp_path / "linear")
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(FileExistsError, match="is a file; saving writes a directory"):
        save_encoder(model.encoder, tmp_path / "a_file")


def _official_state_dict(d=32, depth=2, k=8, grid=16):
    """A random state dict in the official released layout (keys and shapes of PIXIO.md)."""
    g = torch.Generator().manual_seed(1)
    sd = {"cls_token": torch.randn(1, k, d, generator=g) * 0.02,
          "pos_embed": torch.randn(1, k + grid * grid, d, generator=g) * 0.02,
          "patch_embed.proj.weight": torch.randn(d, 3, 16, 16, generator=g) * 0.02,
          "patch_embed.proj.bias": torch.randn(d, generator=g) * 0.02,
          "norm.weight": 1 + 0.1 * torch.randn(d, generator=g), "norm.bias": 0.1 * torch.randn(d, generator=g)}
    for i in range(depth):
        p = f"blocks.{i}."
        shapes = {"norm1.weight": (d,), "norm1.bias": (d,), "attn.qkv.weight": (3 * d, d), "attn.qkv.bias": (3 * d,),
                  "attn.proj.weight": (d, d), "attn.proj.bias": (d,), "norm2.weight": (d,), "norm2.bias": (d,),
                  "mlp.fc1.weight": (4 * d, d), "mlp.fc1.bias": (4 * d,), "mlp.fc2.weight": (d, 4 * d),
                  "mlp.fc2.bias": (d,)}
        for name, shape in shapes.items():
            t = torch.randn(*shape, generator=g) * (0.1 if "weight" in name and "norm" not in name else 0.05)
            sd[p + name] = t + (1.0 if name.startswith("norm") and name.endswith("weight") else 0.0)
    return sd


def test_official_pth_loads_and_matches_reference(tmp_path):
    sd = _official_state_dict()
    torch.save(sd, tmp_path / "pixio_test.pth")
    with pytest.raises(ValueError, match=r"width 32 is not an official Pixio size .* num_heads=\.\.\."):
        load_encoder(tmp_path / "pixio_test.pth")  # a guessed head count would be silently wrong
    enc = load_encoder(tmp_path / "pixio_test.pth", num_heads=1).eval()
    assert enc.num_cls_tokens == 8 and enc.img_size == (256, 256) and enc.embed_dim == 32
    # Reference architecture: timm's VisionTransformer with 1 class + 7 register tokens,
    # positions over all 264 tokens, pre-norm blocks, final norm.
    ref = VisionTransformer(img_size=256, patch_size=16, embed_dim=32, depth=2, num_heads=1,
                            class_token=True, reg_tokens=7, global_pool="token", num_classes=0, qkv_bias=True)
    ref_sd = dict(sd)
    ref_sd["cls_token"], ref_sd["reg_token"] = sd["cls_token"][:, :1], sd["cls_token"][:, 1:]
    ref.load_state_dict(ref_sd, strict=True)
    ref.eval()
    x = torch.randn(2, 3, 256, 256)
    with torch.no_grad():
        ours = enc.forward_features(x)
        theirs = ref.forward_features(x)  # (B, 8 + 256, D) after final norm
    torch.testing.assert_close(ours["cls_tokens"], theirs[:, :8], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours["patch_tokens"], theirs[:, 8:], atol=1e-5, rtol=1e-5)


def test_official_with_prefix_and_wrapper(tmp_path):
    sd = {"model": {f"module.{k}": v for k, v in _official_state_dict().items()}}
    torch.save(sd, tmp_path / "wrapped.pth")
    assert load_encoder(tmp_path / "wrapped.pth", num_heads=1).embed_dim == 32


def test_mismatched_checkpoint_lists_keys_and_shapes(tmp_path):
    enc = create_model("pixio_vittest")
    save_encoder(enc, tmp_path / "enc")
    # tamper: config says depth 3, weights have 2 blocks
    import json

    cfg = json.loads((tmp_path / "enc" / "config.json").read_text())
    cfg["config"]["depth"] = 3
    cfg["config"]["embed_dim"] = 64
    cfg["config"]["num_heads"] = 2
    (tmp_path / "enc" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError) as err:
        load_encoder(tmp_path / "enc")
    msg = str(err.value)
    assert "missing keys" in msg and "blocks.2." in msg and "expected (1, 8, 64), found (1, 8, 32)" in msg


def test_truncated_and_missing_files_fail_clearly(tmp_path):
    enc = create_model("pixio_vittest")
    save_encoder(enc, tmp_path / "enc")
    w = tmp_path / "enc" / "model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    with pytest.raises(ValueError, match="truncated"):
        load_encoder(tmp_path / "enc")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_encoder(tmp_path / "nope")
    torch.save(_official_state_dict(), tmp_path / "x.pth")
    (tmp_path / "x.pth").write_bytes((tmp_path / "x.pth").read_bytes()[:500])
    with pytest.raises(ValueError, match="truncated"):
        load_encoder(tmp_path / "x.pth")
    (tmp_path / "random.bin").write_bytes(bytes(range(256)) * 8)
    with pytest.raises(ValueError, match=r"not a checkpoint, or holds pickled objects") as err:
        load_encoder(tmp_path / "random.bin")
    assert "weights_only=False" not in str(err.value)  # no advice to unpickle an unknown file
    with pytest.raises(ValueError, match="expected float images .* got torch.uint8"):
        enc.forward_features(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    (tmp_path / "cfgless").mkdir()
    (tmp_path / "cfgless" / "model.safetensors").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_encoder(tmp_path / "cfgless")


def _to_hf_layout(sd, depth=2):
    """Write the official dict in transformers' PixioModel names (split q/k/v)."""
    d = sd["cls_token"].shape[-1]
    hf = {"embeddings.cls_token": sd["cls_token"], "embeddings.position_embeddings": sd["pos_embed"],
          "embeddings.patch_embeddings.projection.weight": sd["patch_embed.proj.weight"],
          "embeddings.patch_embeddings.projection.bias": sd["patch_embed.proj.bias"],
          "layernorm.weight": sd["norm.weight"], "layernorm.bias": sd["norm.bias"]}
    for i in range(depth):
        b, L = f"blocks.{i}.", f"encoder.layer.{i}."
        for n in ("norm1", "norm2", "mlp.fc1", "mlp.fc2"):
            for t in ("weight", "bias"):
                hf[f"{L}{n}.{t}"] = sd[f"{b}{n}.{t}"]
        for t in ("weight", "bias"):
            hf[f"{L}attention.output.dense.{t}"] = sd[f"{b}attn.proj.{t}"]
            q, k, v = sd[f"{b}attn.qkv.{t}"].split(d, dim=0)
            for name, part in (("query", q), ("key", k), ("value", v)):
                hf[f"{L}attention.attention.{name}.{t}"] = part
    return hf


def test_hf_transformers_layout_loads_identically(tmp_path):
    import json

    from safetensors.torch import save_file

    sd = _official_state_dict()
    torch.save(sd, tmp_path / "official.pth")
    ref = load_encoder(tmp_path / "official.pth", num_heads=1).eval()
    hf_dir = tmp_path / "hf"
    hf_dir.mkdir()
    save_file({k: v.contiguous() for k, v in _to_hf_layout(sd).items()}, hf_dir / "model.safetensors")
    (hf_dir / "config.json").write_text(json.dumps({"model_type": "pixio", "num_attention_heads": 1}))
    enc = load_encoder(hf_dir).eval()
    for k, v in ref.state_dict().items():
        assert torch.equal(v, enc.state_dict()[k]), k
    torch.save({f"pixio.{k}": v for k, v in _to_hf_layout(sd).items()}, tmp_path / "hf.pth")
    x = torch.randn(1, 3, 256, 256)
    assert torch.equal(load_encoder(tmp_path / "hf.pth", num_heads=1).eval().embed(x), ref.embed(x))
    # what transformers 5's save_pretrained writes (MLP as intermediate / output.dense), and its
    # in-memory names (layers.i, q/k/v/o_proj, layernorm_before / after) saved with torch.save
    import re

    v5_file = {re.sub(r"mlp\.fc1\.", "intermediate.dense.", re.sub(r"mlp\.fc2\.", "output.dense.", k)): v
               for k, v in _to_hf_layout(sd).items()}
    assert any(".intermediate.dense." in k for k in v5_file)
    v5_dir = tmp_path / "v5"
    v5_dir.mkdir()
    save_file({k: v.contiguous() for k, v in v5_file.items()}, v5_dir / "model.safetensors")
    (v5_dir / "config.json").write_text(json.dumps({"model_type": "pixio", "num_attention_heads": 1}))
    assert torch.equal(load_encoder(v5_dir).eval().embed(x), ref.embed(x))
    names = [("encoder.layer.", "layers."), ("attention.attention.query", "attention.q_proj"),
             ("attention.attention.key", "attention.k_proj"), ("attention.attention.value", "attention.v_proj"),
             ("attention.output.dense", "attention.o_proj"), ("norm1", "layernorm_before"),
             ("norm2", "layernorm_after")]
    memory = {}
    for k, v in _to_hf_layout(sd).items():
        for a, b in names:
            k = k.replace(a, b)
        memory[k] = v
    torch.save(memory, tmp_path / "v5_memory.pth")
    assert torch.equal(load_encoder(tmp_path / "v5_memory.pth", num_heads=1).eval().embed(x), ref.embed(x))
