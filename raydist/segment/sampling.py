"""Bilinear feature sampling at pixel coordinates, consistent with dense bilinear upsampling.

Both paths use ``align_corners=False`` with border clamping, so sampling F at pixel (r, c) gives
exactly ``F.interpolate(F, (H, W), mode="bilinear")[..., r, c]`` without building the H x W x D tensor.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def as_grids(features: torch.Tensor | np.ndarray | Sequence) -> list[torch.Tensor]:
    """One (D, h, w) grid or a list of grids of different resolutions -> list of float tensors."""
    if isinstance(features, list | tuple):
        return [torch.as_tensor(g).float() for g in features]
    return [torch.as_tensor(features).float()]


def sample_at(grid: torch.Tensor, coords: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """(D, h, w) grid sampled at integer pixel ``coords`` (n, 2) of an (H, W) image -> (n, D)."""
    H, W = size
    c = torch.as_tensor(np.asarray(coords), dtype=torch.float32)
    # pixel centre -> normalised coordinate in [-1, 1] under align_corners=False
    gx = (2.0 * c[:, 1] + 1.0) / W - 1.0
    gy = (2.0 * c[:, 0] + 1.0) / H - 1.0
    g = torch.stack([gx, gy], dim=-1).view(1, 1, -1, 2)
    out = F.grid_sample(grid.unsqueeze(0), g, mode="bilinear", padding_mode="border", align_corners=False)
    return out[0, :, 0, :].T.contiguous()


def sample_features(grids: Sequence[torch.Tensor], coords: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Concatenate the samples of every grid, each at its own resolution -> (n, sum D) float32."""
    return torch.cat([sample_at(g, coords, size) for g in grids], dim=1).numpy()


def upsample(grid: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(D, h, w) -> (D, H, W), the dense counterpart of :func:`sample_at`."""
    return F.interpolate(grid.unsqueeze(0), size=size, mode="bilinear", align_corners=False)[0]
