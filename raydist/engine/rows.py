"""Dataset rows -> decoded, preprocessed images: the one place a row can turn into a typed error."""

from __future__ import annotations

from typing import Any

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


def decode_row(
    row: dict[str, Any], prep: Preprocess, max_pixels: int = DEFAULT_MAX_PIXELS, plane_distance: float | None = None,
    plane_fit: str = "full",
) -> Decoded:  # fmt: skip
    """Decode and transform one dataset row; raises a :class:`~raydist.errors.RowError` naming the row.

    ``plane_distance`` given: the row's point cloud is decoded too and its background plane removed,
    on the stored cloud before resizing (``plane_fit="full"``: the plane is fitted on the full
    image border, as the official CFM/M3DM preprocessing does) or after resize and crop ("resized").
    """
    image_id = image_id_of(row)
    img = decode_image(row.get("image"), image_id, max_pixels)
    gt = decode_mask(row.get("mask"), image_id, img.shape[:2], label=int(row.get("label") or 0), max_pixels=max_pixels)
    xyz = None
    if plane_distance is not None:
        from raydist.data.decode import decode_xyz
        from raydist.pointcloud.preprocess import remove_plane

        raw = decode_xyz(row.get("xyz"), image_id, img.shape[:2])
        if raw is None:
            raise InvalidPointCloudError(image_id, "row has no xyz but the model is multimodal (CFM)")
        # NaN = no point throughout (nearest resizing carries NaN over as it is)
        xyz = remove_plane(prep.xyz(raw), plane_distance, image_id=image_id, fit_on=raw if plane_fit == "full" else None)
    label, defect = int(row.get("label") or 0), row.get("defect_type") or ""
    return Decoded(image_id, row["class_name"], label, defect, prep.image(img), prep.mask(gt), xyz, tuple(img.shape[:2]))


def check_duplicate(image_id: str, duplicates: dict[str, int]) -> None:
    """Every occurrence of a duplicated id is refused: which one is right is the archive owner's call."""
    if image_id in duplicates:
        raise DuplicateImageIdError(image_id, f"image_id occurs {duplicates[image_id]} times in the evaluated split")
