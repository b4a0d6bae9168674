"""Run outputs: reconstruction grids and scalar logging (TensorBoard, optional W&B)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pixio_robot.models import IMAGENET_MEAN, IMAGENET_STD
from pixio_robot.utils.cli import RunError


@torch.no_grad()
def reconstruction_grid(model, imgs: torch.Tensor, ids_keep: torch.Tensor) -> np.ndarray:
    """Rows of (original | masked | reconstruction) for normalised images [B,3,H,W] -> uint8 [H',W',3].

    Predictions are in per-patch normalised pixels; they are mapped back with each patch's own mean
    and variance (as MAE's visualisation), and visible patches show the original pixels."""
    was_training = model.training
    model.eval()
    _, pred, mask = model(imgs, ids_keep=ids_keep)
    model.train(was_training)
    target = model.patchify(imgs)  # (B, N, p*p*3)
    if model.config.norm_pix_loss:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        pred = pred.float() * (var + 1.0e-6) ** 0.5 + mean
    m = mask.unsqueeze(-1)  # (B, N, 1), 1 = masked
    grid = model.encoder.check_input(imgs)
    masked = model.unpatchify(target * (1 - m), grid)
    recon = model.unpatchify(target * (1 - m) + pred * m, grid)
    std = torch.tensor(IMAGENET_STD, device=imgs.device).view(1, 3, 1, 1)
    mu = torch.tensor(IMAGENET_MEAN, device=imgs.device).view(1, 3, 1, 1)
    gray = (0.5 - mu) / std * model.unpatchify(m.expand_as(target), grid)
    cols = [imgs, masked + gray, recon]
    rows = torch.cat([c * std + mu for c in cols], dim=3)  # (B, 3, H, 3W)
    rows = rows.clamp(0, 1).mul(255).round().byte().cpu()
    return torch.cat(list(rows), dim=1).permute(1, 2, 0).numpy()  # (B*H, 3W, 3)


def save_png(path: Path, img: np.ndarray) -> None:
    from pixio_robot.utils.io import atomic_path

    with atomic_path(path) as tmp:
        Image.fromarray(img).save(tmp, format="PNG")


class ScalarLogger:
    """TensorBoard (default) and W&B (lazy import) behind one call; a no-op on ranks > 0."""

    def __init__(self, run_dir: Path, tensorboard: bool, wandb: bool, project: str, config: dict,
                 enabled: bool) -> None:
        self.tb = self.wb = None
        if not enabled:
            return
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tb"))
        if wandb:
            try:
                import wandb as wb  # optional integration

                self.wb = wb.init(project=project, dir=str(run_dir), config=config, resume="allow")
            except Exception as e:  # noqa: BLE001 - no key, no network, not installed: say what to do
                raise RunError(f"logger=wandb could not start ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                               "run `wandb login`, or set WANDB_MODE=offline (sync later with `wandb sync`), "
                               "or use logger=tensorboard") from e

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(k, v, step)
        if self.wb is not None:
            self.wb.log(values, step=step)

    def image(self, step: int, tag: str, img: np.ndarray) -> None:
        if self.tb is not None:
            self.tb.add_image(tag, img, step, dataformats="HWC")
        if self.wb is not None:
            import wandb

            self.wb.log({tag: wandb.Image(img)}, step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wb is not None:
            self.wb.finish()
