"""Per-point features back onto the image grid, then pooled to the 2D feature grid."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def to_image(valid: np.ndarray, point_feats: torch.Tensor, smooth: bool = True) -> torch.Tensor:
    """(P, D) features of the valid pixels (row-major order) -> (D, H, W), zero where no point,
    then a 3 x 3 average over valid neighbours (the papers' smoothing)."""
    H, W = valid.shape
    D = point_feats.shape[1]
    # built channels-last ((H*W, D) rows): the scatter writes whole rows, and avg_pool2d runs ~3x
    # faster on this layout than on (D, H, W) (measured 17 -> 6 ms for 33 x 224 x 224)
    img = torch.zeros(H * W, D)
    m = torch.from_numpy(valid.ravel())
    img[m] = point_feats.float()
    img = img.view(1, H, W, D).permute(0, 3, 1, 2)
    if smooth:
        v = m.view(1, 1, H, W).float()
        num = F.avg_pool2d(img, 3, stride=1, padding=1)
        den = F.avg_pool2d(v, 3, stride=1, padding=1).clamp_min(1e-6)
        img = torch.where(v > 0, num.div_(den), 0.0)
    return img[0]


def pool_to_grid(img: torch.Tensor, valid: np.ndarray, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(D, H, W), zero where no point (as :func:`to_image` makes it) -> (D, h, w) mean over each
    cell's valid pixels, plus the cell's valid fraction."""
    D, H, W = img.shape
    # pooled channels-last with a whole batch stride: ``img[None]`` of to_image's channels-last
    # image keeps a batch stride of D, which sends adaptive_avg_pool2d down a path ~18x slower
    # (6.1 vs 0.33 ms for 33 x 224 x 224; the same floats)
    x = img.permute(1, 2, 0).reshape(1, H, W, D).permute(0, 3, 1, 2)
    v = torch.from_numpy(valid).float()[None, None]
    num = F.adaptive_avg_pool2d(x, size)[0]
    frac = F.adaptive_avg_pool2d(v, size)[0, 0]
    return num / frac.clamp_min(1e-6), frac
