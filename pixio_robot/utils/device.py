"""Device and thread settings shared by every entry (`device=auto|cpu|cuda[:i]|mps`)."""
from __future__ import annotations

import torch

DEVICE_CHOICES = "auto, cpu, cuda, cuda:<i>, mps"


def resolve_device(name: str | None = "auto") -> torch.device:
    """`auto` (or None) -> cuda when available, else cpu; a CUDA device without CUDA is an error."""
    name = "auto" if name in (None, "") else str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device={name} but CUDA is not available; use device=cpu (or device=auto)")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RuntimeError("device=mps but MPS is not available; use device=cpu (or device=auto)")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"device={name!r} is not a device; use one of {DEVICE_CHOICES}") from exc


def set_threads(num_threads: int | None) -> None:
    """torch intra-op threads; None leaves torch's default."""
    if num_threads is not None:
        if int(num_threads) < 1:
            raise ValueError(f"num_threads must be >= 1 or null, got {num_threads}")
        torch.set_num_threads(int(num_threads))
