"""Geometric and photometric preprocessing shared by images, masks and point clouds.

The papers resize to 256 and center-crop 224 on MVTec AD, and resize straight to 224 on
MVTec 3D-AD (``resize == crop``). Masks go through the same geometry (nearest neighbour).
"""

from __future__ import annotations

import functools
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
    aspect: float = 1.0  # height / width: non-square inputs (e.g. KolektorSDD) keep their shape
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if self.crop > self.resize:
            raise ValueError(f"crop ({self.crop}) cannot exceed resize ({self.resize})")

        if self.aspect <= 0:
            raise ValueError(f"aspect must be > 0, got {self.aspect}")

    def _tall(self, side: int) -> int:
        return int(round(side * self.aspect))

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of every processed image, mask and score map."""
        return self._tall(self.crop), self.crop

    def geometry(self, arr: np.ndarray, resample: int) -> np.ndarray:
        """Resize (H, W[, C]) to (resize*aspect, resize) and center-crop to :attr:`size`."""
        im = Image.fromarray(arr)
        im = im.resize((self.resize, self._tall(self.resize)), resample=resample)
        top = (self._tall(self.resize) - self._tall(self.crop)) // 2
        left = (self.resize - self.crop) // 2
        h, w = self.size
        return np.asarray(im)[top : top + h, left : left + w]

    def image(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 -> (*size, 3) uint8, for display and overlays."""
        return self.geometry(rgb, Image.BILINEAR)

    def mask(self, mask: np.ndarray) -> np.ndarray:
        return self.geometry(mask.astype(np.uint8), Image.NEAREST) > 0

    def xyz(self, xyz: np.ndarray) -> np.ndarray:
        """Organized cloud, nearest-neighbour resized and cropped (no blending across holes), as
        float32: the pixels :meth:`nearest_index` picks, gathered at once. The same values as
        resizing each channel, without a pass over the ~600k pixels an 800-px cloud drops."""
        return np.ascontiguousarray(xyz).reshape(-1, 3)[self.nearest_index(xyz.shape[:2])].astype(np.float32, copy=False)

    def nearest_index(self, shape: tuple[int, int]) -> np.ndarray:
        """For each processed pixel, the flat index of the (H, W) input pixel that nearest-neighbour
        :meth:`geometry` puts there (PIL resizing an image of indices; cached per shape)."""
        return _nearest_index(self, tuple(shape))

    def to_tensor(self, images: list[np.ndarray]) -> torch.Tensor:
        """List of (*size, 3) uint8 -> normalised (B, 3, *size) float32."""
        x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (x - mean) / std


@functools.lru_cache(maxsize=32)
def _nearest_index(prep: Preprocess, shape: tuple[int, int]) -> np.ndarray:
    index = prep.geometry(np.arange(shape[0] * shape[1], dtype=np.int32).reshape(shape), Image.NEAREST).astype(np.intp)
    index.flags.writeable = False  # shared by every caller
    return index
