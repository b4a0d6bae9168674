"""The quickstart on tiny settings: every step runs for real and the report holds what it promises."""

import json

import pytest

pytest.importorskip("metaworld")
pytest.importorskip("pixio_robot.data")


@pytest.mark.slow
def test_quickstart_tiny(tmp_path, tmp_path_factory):
    from safetensors.torch import load_file

    from pixio_robot.evaluation.video import count_video_frames
    from pixio_robot.quickstart import QuickstartConfig, run_quickstart

    cfg = QuickstartConfig(
        run_dir=str(tmp_path / "qs"), pretrain_model="pixio_mae_test", pretrain_steps=4, pretrain_batch_size=8,
        pretrain_image_size=64, sim_frames=16, sim_envs=["gym/Pusher-v5"], sim_render_size=72,
        sim_cache_dir=str(tmp_path / "sim"), envs=["metaworld/drawer-open-v3"], n_demos=2, image_size=64,
        epochs=2, n_episodes=1, n_envs=1, vector_mode="serial", num_threads=1, progress=False,
        data_root=str(tmp_path_factory.getbasetemp() / "shared_demos"), cache_dir=str(tmp_path / "cache"))
    res = run_quickstart(cfg)
    out = tmp_path / "qs"
    report = (out / "report.md").read_text()
    assert "pixio_pretrained" in report and "random_init" in report and "metaworld/drawer-open-v3" in report
    assert "read as `spatial` embeddings" in report  # the default readout of the frozen encoders
    assert res["benchmark"]["done"] == 2 and res["benchmark"]["failed"] == []
    for name in ("pretrain_loss.png", "reconstruction.png", "success_final.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG", name
        assert f"({name})" in report
    assert count_video_frames(res["media"]["video"]) > 1
    # the random twin has the pretrained encoder's exact config and shapes, but other weights
    pre_dir = out / "pretrain" / "encoder"
    cfg_a = json.loads((pre_dir / "config.json").read_text())["config"]
    cfg_b = json.loads((out / "random_encoder" / "config.json").read_text())["config"]
    assert cfg_a == cfg_b
    a, b = load_file(str(pre_dir / "model.safetensors")), load_file(str(out / "random_encoder" / "model.safetensors"))
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
    assert any(not (a[k] == b[k]).all() for k in a)
    assert res["times"]["total"] > 0 and json.loads((out / "quickstart.json").read_text())["report"]


def test_quickstart_rejects_an_unknown_embedding():
    from pixio_robot.quickstart import QuickstartConfig

    with pytest.raises(ValueError, match="embedding='cls' is not one of"):
        QuickstartConfig(embedding="cls")
