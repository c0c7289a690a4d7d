"""Dataset rows -> decoded, preprocessed images: the one place a row can turn into a typed error."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from raydist.contracts import Decoded
from raydist.data.decode import DEFAULT_MAX_PIXELS, decode_image, decode_mask
from raydist.errors import DuplicateImageIdError, InvalidPointCloudError
from raydist.features.preprocess import Preprocess

INPUT_COLUMNS = ["image_id", "class_name", "split", "label", "defect_type", "image", "mask", "xyz", "height", "width"]


def input_columns(needs_xyz: bool) -> list[str]:
    """The columns a method reads: the point cloud only for multimodal ones (an 800-px MVTec 3D-AD
    cloud is 7.7 MB per row; reading it for RGB-only PatchCore cost ~65 ms per row)."""
    return INPUT_COLUMNS if needs_xyz else [c for c in INPUT_COLUMNS if c != "xyz"]


def image_id_of(row: dict[str, Any]) -> str:
    return row.get("image_id") or "<missing image_id>"


def decode_row(row: dict[str, Any], prep: Preprocess, max_pixels: int = DEFAULT_MAX_PIXELS,
               cloud: Callable[[np.ndarray, str], np.ndarray] | None = None) -> Decoded:  # fmt: skip
    """Decode and transform one dataset row; raises a :class:`~raydist.errors.RowError` naming the row.

    ``cloud`` given (a multimodal detector's ``prepare_cloud``, bound to its config): the row's
    organised point cloud is decoded too and handed to it with the row's id, to become the cloud
    the detector scores (CFM: background plane removed, resized like the image).
    """
    image_id = image_id_of(row)
    img = decode_image(row.get("image"), image_id, max_pixels)
    gt = decode_mask(row.get("mask"), image_id, img.shape[:2], label=int(row.get("label") or 0), max_pixels=max_pixels)
    xyz = None
    if cloud is not None:
        from raydist.data.decode import read_xyz

        raw = read_xyz(row.get("xyz"), image_id, img.shape[:2])
        if raw is None:
            raise InvalidPointCloudError(image_id, "row has no xyz but the model is multimodal (CFM)")
        xyz = cloud(raw, image_id)
    label, defect = int(row.get("label") or 0), row.get("defect_type") or ""
    return Decoded(image_id, row["class_name"], label, defect, prep.image(img), prep.mask(gt), xyz, tuple(img.shape[:2]))


def cloud_step(cls, cfg, prep: Preprocess) -> Callable[[np.ndarray, str], np.ndarray] | None:
    """The detector class's point-cloud step bound to ``cfg`` and ``prep`` (None for RGB-only methods)."""
    if not cls.needs_xyz:
        return None
    return lambda raw, image_id: cls.prepare_cloud(raw, prep, cfg, image_id)


def check_duplicate(image_id: str, duplicates: dict[str, int]) -> None:
    """Every occurrence of a duplicated id is refused: which one is right is the archive owner's call."""
    if image_id in duplicates:
        raise DuplicateImageIdError(image_id, f"image_id occurs {duplicates[image_id]} times in the evaluated split")
