"""Geometric and photometric preprocessing shared by images, masks and point clouds.

The papers resize to 256 and center-crop 224 on MVTec AD, and resize straight to 224 on
MVTec 3D-AD (``resize == crop``). Masks go through the same geometry (nearest neighbour).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    resize: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if self.crop > self.resize:
            raise ValueError(f"crop ({self.crop}) cannot exceed resize ({self.resize})")

    def _crop_box(self) -> tuple[int, int]:
        off = (self.resize - self.crop) // 2
        return off, off + self.crop

    def geometry(self, arr: np.ndarray, resample: int) -> np.ndarray:
        """Resize (H, W[, C]) to resize x resize and center-crop to crop x crop."""
        im = Image.fromarray(arr)
        im = im.resize((self.resize, self.resize), resample=resample)
        a, b = self._crop_box()
        return np.asarray(im)[a:b, a:b]

    def image(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 -> (crop, crop, 3) uint8, for display and overlays."""
        return self.geometry(rgb, Image.BILINEAR)

    def mask(self, mask: np.ndarray) -> np.ndarray:
        return self.geometry(mask.astype(np.uint8), Image.NEAREST) > 0

    def xyz(self, xyz: np.ndarray) -> np.ndarray:
        """Organized cloud, nearest-neighbour resized channel by channel (no blending across holes)."""
        chans = [self.geometry(xyz[..., i].astype(np.float32), Image.NEAREST) for i in range(3)]
        return np.stack(chans, axis=-1)

    def to_tensor(self, images: list[np.ndarray]) -> torch.Tensor:
        """List of (crop, crop, 3) uint8 -> normalised (B, 3, crop, crop) float32."""
        x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (x - mean) / std
