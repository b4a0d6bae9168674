"""Feature distillation (frozen teacher -> student + projector) through the pretraining loop."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from pixio_robot.models import create_model, load_encoder, save_encoder
from pixio_robot.models.distill import PixioDistill, student_name
from pixio_robot.pretrain.config import register_configs

register_configs()


pytestmark = pytest.mark.usefixtures("private_sim_cache")


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory) -> Path:
    torch.manual_seed(1)
    teacher = create_model("pixio_vittest", img_size=64, embed_dim=48, num_heads=2)  # wider than the student
    return save_encoder(teacher, tmp_path_factory.mktemp("teacher") / "enc")


def cfg_for(run_dir: Path, teacher: Path, *overrides: str):
    with initialize_config_module("pixio_robot.configs.pretrain", version_base="1.3"):
        cfg = compose("config", overrides=["experiment=test", f"run_dir={run_dir}", f"distill.teacher={teacher}",
                                           *overrides])
    return OmegaConf.to_object(cfg)


def test_student_names():
    assert student_name("pixio_mae_tiny") == "pixio_vittiny"
    assert student_name("pixio_mae_vitb16") == "pixio_vitb16"
    assert student_name("pixio_vitl16") == "pixio_vitl16"


def test_loss_is_the_papers_cosine_objective():
    """Teacher: last block before the final norm, whole image; student: after its norm, visible
    patches only, through the projector; 50/50 class / patch cosine distance."""
    torch.manual_seed(0)
    teacher = create_model("pixio_vittest", img_size=64, embed_dim=48, num_heads=2).eval()
    student = create_model("pixio_vittest", img_size=64)
    model = PixioDistill(student, teacher, mask_ratio=0.5, mask_block=2)
    imgs = torch.randn(3, 3, 64, 64)
    ids_keep, mask = model.masking(3)
    assert ids_keep.shape == (3, 8) and mask.sum(1).tolist() == [8.0] * 3  # 2 of 4 blocks of 2x2 visible
    loss, pred, out_mask = model(imgs, ids_keep=ids_keep)
    assert torch.equal(out_mask, mask) and pred.shape == (3, 8 + 8, 48)

    k = teacher.num_cls_tokens
    with torch.no_grad():  # the teacher by hand: every block, no final norm
        p, c = teacher.embed_patches(imgs)
        t = torch.cat([c, p], 1)
        for blk in teacher.blocks:
            t = blk(t)
        p, c = student.embed_patches(imgs)
        vis = p.gather(1, ids_keep[..., None].expand(-1, -1, p.shape[-1]))
        s = model.projector(student.norm(student.blocks[1](student.blocks[0](torch.cat([c, vis], 1)))))
        tp = t[:, k:].gather(1, ids_keep[..., None].expand(-1, -1, 48))
        want = 0.5 * (1 - F.cosine_similarity(s[:, :k], t[:, :k], dim=-1)).mean() \
            + 0.5 * (1 - F.cosine_similarity(s[:, k:], tp, dim=-1)).mean()
    torch.testing.assert_close(loss, want, rtol=1e-5, atol=1e-6)

    loss.backward()  # gradients reach the student and projector, never the teacher
    assert all(p.grad is None for p in teacher.parameters())
    assert student.patch_embed.proj.weight.grad is not None and model.projector[0].weight.grad is not None
    assert not any(k.startswith("_teacher") or "teacher" in k for k in model.state_dict())
    assert {k.split(".")[0] for k in model.state_dict()} == {"student", "projector"}
    model.to(torch.float64)  # the teacher moves along, and stays in eval mode after .train()
    assert teacher.pos_embed.dtype == torch.float64
    model.train()
    assert not teacher.training and student.training


def test_full_image_student_and_clear_errors(teacher_dir, tmp_path):
    teacher = load_encoder(teacher_dir)
    model = PixioDistill(create_model("pixio_vittest", img_size=48), teacher)  # 3x3 grid: any grid works unmasked
    ids_keep, mask = model.masking(2)
    assert ids_keep.shape == (2, 9) and mask.sum() == 0
    loss, _, _ = model(torch.randn(2, 3, 48, 48))
    assert 0 < loss.item() < 2
    with pytest.raises(ValueError, match="model.num_cls_tokens=8"):
        PixioDistill(create_model("pixio_vittest", img_size=64, num_cls_tokens=4), teacher)
    with pytest.raises(FileNotFoundError, match="distill.teacher: .*official .pth"):
        from pixio_robot.pretrain import run_pretrain

        run_pretrain(cfg_for(tmp_path / "r", tmp_path / "missing"))
    with pytest.raises(ValueError, match="distillation student is a Pixio encoder"):
        cfg_for(tmp_path / "r", teacher_dir, "model.name=mae_test")
    with pytest.raises(ValueError, match="plan MAE pretraining, not distillation"):
        cfg_for(tmp_path / "r", teacher_dir, "micro_batch_size=0")


def test_distill_run_learns_resumes_and_exports_the_student(teacher_dir, tmp_path):
    from pixio_robot.pretrain import run_pretrain

    args = ("steps=12", "optim.lr=0.05", "optim.warmup_steps=2", "distill.mask_ratio=0.5", "distill.mask_block=2",
            "keep_last=10")
    teacher_before = {k: v.clone() for k, v in load_encoder(teacher_dir).state_dict().items()}
    full = run_pretrain(cfg_for(tmp_path / "full", teacher_dir, *args))
    assert full["loss_end"] < full["loss_start"] - 0.05, full["loss_history"]
    teacher_after = load_encoder(teacher_dir).state_dict()
    assert all(torch.equal(teacher_before[k], teacher_after[k]) for k in teacher_before)

    # the exported encoder is the student (narrower than the teacher); the checkpoint reads back the same
    enc = load_encoder(tmp_path / "full")
    assert enc.embed_dim == 32 and enc.num_cls_tokens == 8
    from pixio_robot.pretrain.score import load_mae

    ckpt = load_mae(tmp_path / "full")
    assert list(enc.state_dict()) == list(ckpt.encoder.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(enc.state_dict().values(), ckpt.encoder.state_dict().values(),
                                                 strict=True))
    assert ckpt.projector[-1].out_features == 48

    # as if killed after step 6: resuming to 12 gives the same losses as the uninterrupted run
    shutil.copytree(tmp_path / "full", tmp_path / "split")
    for name in ("checkpoints/step_00000009", "checkpoints/step_00000012", "encoder"):
        shutil.rmtree(tmp_path / "split" / name)
    resumed = run_pretrain(cfg_for(tmp_path / "split", teacher_dir, *args))
    assert resumed["resumed_from"] == 6
    a, b = dict(full["loss_history"]), dict(resumed["loss_history"])
    for step in (10, 12):  # logged as the mean of steps 9-10 and 11-12 in both runs
        assert a[step] == pytest.approx(b[step], rel=1e-5, abs=1e-6), step

    # another teacher in the same run dir is refused (the run's identity includes the distillation)
    other = save_encoder(create_model("pixio_vittest", img_size=64), tmp_path / "other")
    with pytest.raises(ValueError, match="distill.teacher"):
        run_pretrain(cfg_for(tmp_path / "split", other, *args))
    # scores are MAE losses: a distillation run is refused with what to use instead
    from pixio_robot.pretrain.config import ScoreConfig
    from pixio_robot.pretrain.score import run_score

    with pytest.raises(ValueError, match="distillation run"):
        run_score(ScoreConfig(checkpoint=str(tmp_path / "full"), scores=str(tmp_path / "s.parquet")))


def test_distill_under_single_process_fsdp2_matches_plain(teacher_dir, tmp_path):
    from pixio_robot.pretrain import run_pretrain

    plain = run_pretrain(cfg_for(tmp_path / "plain", teacher_dir, "steps=4"))
    fsdp = run_pretrain(cfg_for(tmp_path / "fsdp", teacher_dir, "steps=4", "parallel=fsdp"))
    steps = [s for s, _ in plain["loss_history"]]
    assert steps == [s for s, _ in fsdp["loss_history"]] and steps[0] == 1 and steps[-1] == 4  # logged steps
    for (_, a), (_, b) in zip(plain["loss_history"], fsdp["loss_history"], strict=True):
        assert a == pytest.approx(b, rel=1e-5)
    assert torch.equal(load_encoder(tmp_path / "plain").pos_embed, load_encoder(tmp_path / "fsdp").pos_embed) or \
        torch.allclose(load_encoder(tmp_path / "plain").pos_embed, load_encoder(tmp_path / "fsdp").pos_embed, atol=1e-6)
