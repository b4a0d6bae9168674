"""Probe heads on frozen features and their metrics.

Heads (closed form, deterministic, seconds on a CPU):
- `Ridge`: standardised features -> targets, the penalty chosen by efficient leave-one-out over a
  log grid (the SVD form of ridge, as scikit-learn's RidgeCV with gcv); dual when features
  outnumber samples. Used on class tokens, flattened patch tokens and raw pixels.
- `DenseProbe`: a linear map per patch token (shared over patches) to the patch's depth values or
  class scores at patch resolution, then bilinear upsampling to the image (DINOv2's linear dense
  probe, fitted by the same ridge). Segmentation takes the argmax of least-squares class scores.

Metrics: `r2` (per target group, 1 - SSE/SST on the test frames, averaged over the group's dims),
`depth_metrics` (AbsRel = mean |d - d*| / d*, delta1 = fraction with max(d/d*, d*/d) < 1.25, on
pixels that show geometry), `miou` (mean over classes present in truth or prediction of
TP / (TP + FP + FN)). Each metric also has per-frame additive sums (`*_sums`) and a `finalize`
that turns pooled sums into the metric, so `sums_bootstrap` resamples whole test episodes from
their per-episode sums (exactly the metric of the resampled frames, without touching pixels again).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

ALPHAS = tuple(10.0 ** np.arange(-3, 6))


class Ridge:
    """Multi-output ridge regression with a leave-one-out choice of the penalty."""

    def __init__(self, alphas=ALPHAS) -> None:
        self.alphas = tuple(alphas)

    def fit(self, x: np.ndarray, y: np.ndarray) -> Ridge:
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        self.mu, self.sd = x.mean(0), x.std(0) + 1e-8
        self.ymu = y.mean(0)
        xs, yc = (x - self.mu) / self.sd, y - self.ymu
        n, d = xs.shape
        # The eigen-decomposition of the smaller Gram matrix gives the thin SVD xs = U S V^T:
        # n x n (X X^T) for wide features (flattened patch tokens), d x d (X^T X) otherwise.
        if d >= n:
            s2, u = np.linalg.eigh(xs @ xs.T)  # (n,), (n, n)
            v = None
        else:
            s2, v = np.linalg.eigh(xs.T @ xs)  # (d,), (d, d)
            keep = s2 > 1e-10 * max(float(s2.max()), 1e-30)
            s2, v = s2[keep], v[:, keep]
            u = (xs @ v) / np.sqrt(s2)  # (n, r)
        s2 = np.clip(s2, 0.0, None)
        uty = u.T @ yc  # (r, T)
        best = None
        for a in self.alphas:
            f = s2 / (s2 + a)  # shrinkage per singular direction
            fitted = u @ (f[:, None] * uty)
            h = (u**2 * f).sum(1)  # leverage (hat diagonal); the intercept adds 1/n (centring)
            loo = ((yc - fitted) / np.maximum(1 - h - 1.0 / n, 1e-6)[:, None]) ** 2
            err = float(loo.mean())
            if best is None or err < best[0]:
                best = (err, a)
        self.alpha = best[1]
        if v is None:  # coef = X^T U diag(1 / (s^2 + a)) U^T y
            self.coef = xs.T @ (u @ (uty / (s2 + self.alpha)[:, None]))  # (D, T)
        else:  # coef = V diag(1 / (s^2 + a)) V^T X^T y
            self.coef = v @ ((v.T @ (xs.T @ yc)) / (s2 + self.alpha)[:, None])
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, np.float64) - self.mu) / self.sd) @ self.coef + self.ymu


def r2(y: np.ndarray, pred: np.ndarray, var: np.ndarray | None = None) -> float:
    """Coefficient of determination averaged over target dims: 1 - MSE / variance per dim. `var`
    fixes the variances (those of the whole test set), so a bootstrap resample of test episodes
    is scored on the same scale (an episode in which a target never moves has no variance of its
    own). Dims without variance are left out."""
    y, pred = np.asarray(y, np.float64).reshape(len(y), -1), np.asarray(pred, np.float64).reshape(len(y), -1)
    var = y.var(0) if var is None else np.asarray(var, np.float64).reshape(-1)
    mse = ((y - pred) ** 2).mean(0)
    ok = var > 1e-12
    return float(np.mean(1 - mse[ok] / var[ok])) if ok.any() else float("nan")


def depth_metrics(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> dict[str, float]:
    p, g = np.asarray(pred, np.float64)[valid], np.asarray(gt, np.float64)[valid]
    p = np.maximum(p, 1e-3)
    ratio = np.maximum(p / g, g / p)
    return {"absrel": float(np.mean(np.abs(p - g) / g)), "delta1": float(np.mean(ratio < 1.25))}


def miou(pred: np.ndarray, gt: np.ndarray, n_classes: int) -> float:
    ious = []
    for c in range(n_classes):
        p, g = pred == c, gt == c
        union = (p | g).sum()
        if union:
            ious.append((p & g).sum() / union)
    return float(np.mean(ious)) if ious else float("nan")


def r2_sums(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """(F, 1 + T): per frame, 1 and the squared error per target dim."""
    y, pred = np.asarray(y, np.float64).reshape(len(y), -1), np.asarray(pred, np.float64).reshape(len(y), -1)
    return np.concatenate([np.ones((len(y), 1)), (y - pred) ** 2], 1)


def r2_finalize(var: np.ndarray) -> Callable[[np.ndarray], float]:
    var = np.asarray(var, np.float64).reshape(-1)
    ok = var > 1e-12

    def fin(t: np.ndarray) -> float:
        return float(np.mean(1 - (t[1:][ok] / t[0]) / var[ok])) if ok.any() else float("nan")

    return fin


def depth_sums(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(F, 3): per frame, sum of |d - d*| / d*, count of delta < 1.25, count of valid pixels."""
    p, g = np.maximum(np.asarray(pred, np.float64), 1e-3), np.asarray(gt, np.float64)
    v = np.asarray(valid, bool)
    rel = np.where(v, np.abs(p - g) / np.where(v, g, 1.0), 0.0)
    ratio = np.maximum(p / np.where(v, g, 1.0), np.where(v, g, 1.0) / p)
    axes = tuple(range(1, p.ndim))
    return np.stack([rel.sum(axes), (v & (ratio < 1.25)).sum(axes), v.sum(axes)], 1)


def miou_sums(pred: np.ndarray, gt: np.ndarray, n_classes: int) -> np.ndarray:
    """(F, 3C): per frame and class, TP, FP, FN pixel counts."""
    axes = tuple(range(1, np.ndim(pred)))
    cols = []
    for c in range(n_classes):
        p, g = pred == c, gt == c
        cols += [(p & g).sum(axes), (p & ~g).sum(axes), (~p & g).sum(axes)]
    return np.stack(cols, 1).astype(np.float64)


def miou_finalize(t: np.ndarray) -> float:
    tp, fp, fn = t[0::3], t[1::3], t[2::3]
    union = tp + fp + fn
    return float(np.mean(tp[union > 0] / union[union > 0])) if (union > 0).any() else float("nan")


def sums_bootstrap(frame_sums: np.ndarray, finalize: Callable[[np.ndarray], float], episodes: np.ndarray,
                   reps: int = 1000, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of `finalize(pooled sums)` over resampled test episodes."""
    eps, inv = np.unique(episodes, return_inverse=True)
    if eps.size < 2:
        return float("nan"), float("nan")
    per_ep = np.zeros((eps.size, frame_sums.shape[1]))
    np.add.at(per_ep, inv, frame_sums)  # (E, K)
    idx = np.random.default_rng(seed).integers(0, eps.size, size=(reps, eps.size))
    vals = np.array([finalize(t) for t in per_ep[idx].sum(1)])
    vals = vals[np.isfinite(vals)]
    a = (1 - confidence) / 2
    return (float(np.quantile(vals, a)), float(np.quantile(vals, 1 - a))) if vals.size else (float("nan"), float("nan"))


def _patch_targets(maps: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(F, H, W[, C]) -> (F*gh*gw, p*p[*C]): each patch's pixels, row-major, as one target row."""
    f, h, w = maps.shape[:3]
    gh, gw = grid
    ph, pw = h // gh, w // gw
    c = maps.shape[3] if maps.ndim == 4 else 1
    x = maps.reshape(f, gh, ph, gw, pw, c).transpose(0, 1, 3, 2, 4, 5)  # (F, gh, gw, ph, pw, C)
    return x.reshape(f * gh * gw, ph * pw * c)


def _from_patches(pred: np.ndarray, f: int, grid: tuple[int, int], hw: tuple[int, int], c: int) -> np.ndarray:
    """Inverse of `_patch_targets` at patch resolution, then bilinear upsampling is not needed:
    each patch predicts its own p x p pixels (a linear 'pixel shuffle' head)."""
    gh, gw = grid
    ph, pw = hw[0] // gh, hw[1] // gw
    x = pred.reshape(f, gh, gw, ph, pw, c).transpose(0, 1, 3, 2, 4, 5)  # (F, gh, ph, gw, pw, C)
    return x.reshape(f, hw[0], hw[1], c)


class DenseProbe:
    """Linear head per patch token -> that patch's pixels (depth, or class scores), shared over
    patches. Targets are taken at `stride` pixels per patch side (then upsampled bilinearly)."""

    def __init__(self, n_out: int, stride: int = 4, alphas=ALPHAS) -> None:
        self.n_out, self.stride = n_out, stride
        self.ridge = Ridge(alphas)

    def _down(self, maps: np.ndarray, grid) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))
        t = t.permute(0, 3, 1, 2) if t.ndim == 4 else t[:, None]  # (F, C, H, W)
        size = (grid[0] * self.stride, grid[1] * self.stride)
        return F.interpolate(t, size=size, mode="area").permute(0, 2, 3, 1).numpy()  # (F, h, w, C)

    def fit(self, patches: np.ndarray, maps: np.ndarray, grid: tuple[int, int]) -> DenseProbe:
        """patches (F, N, D); maps (F, H, W) depth or (F, H, W, C) one-hot."""
        y = _patch_targets(self._down(maps, grid), grid)
        self.ridge.fit(patches.reshape(-1, patches.shape[-1]), y)
        return self

    def predict(self, patches: np.ndarray, grid: tuple[int, int], hw: tuple[int, int]) -> np.ndarray:
        f = patches.shape[0]
        small = self.ridge.predict(patches.reshape(-1, patches.shape[-1]))
        small = _from_patches(small, f, grid, (grid[0] * self.stride, grid[1] * self.stride), self.n_out)
        t = torch.from_numpy(small.astype(np.float32)).permute(0, 3, 1, 2)  # (F, C, h, w)
        up = F.interpolate(t, size=hw, mode="bilinear", align_corners=False)
        return up.permute(0, 2, 3, 1).numpy()  # (F, H, W, C)
