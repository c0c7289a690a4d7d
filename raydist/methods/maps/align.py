"""Decode a stored score map (.npy, PNG or TIFF) and align it with the image it belongs to."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from raydist.errors import InvalidMapError, MissingMapError
from raydist.features.preprocess import Preprocess

ASPECT_TOLERANCE = 0.05  # a full-frame map may differ from its image's aspect by rounding only


def decode_map(data: bytes | None, image_id: str) -> np.ndarray:
    """``.npy`` (float16/32, (H, W) or (1, H, W)) or a grey PNG/TIFF -> (H, W) float32.

    NaN pixels (no score) become the map's lowest score; a map without any finite score, or of
    another dimensionality, is an :class:`InvalidMapError` naming the row.
    """
    if data is None:
        raise MissingMapError(image_id, "the maps dataset has this image_id but no score_map")
    try:
        if data[:6] == b"\x93NUMPY":
            m = np.load(io.BytesIO(data), allow_pickle=False)
        else:
            m = np.asarray(Image.open(io.BytesIO(data)))
    except Exception as e:
        raise InvalidMapError(image_id, f"score_map is neither .npy nor an image: {type(e).__name__}: {e}") from None
    m = np.squeeze(np.asarray(m)) if m.ndim == 3 and 1 in (m.shape[0], m.shape[-1]) else np.asarray(m)
    if m.ndim != 2 or min(m.shape) < 2 or not (np.issubdtype(m.dtype, np.floating) or np.issubdtype(m.dtype, np.integer)):
        raise InvalidMapError(image_id, f"score_map must be a 2D numeric array, got shape {m.shape} dtype {m.dtype}")
    m = m.astype(np.float32)
    finite = np.isfinite(m)
    if not finite.any():
        raise InvalidMapError(image_id, "score_map has no finite score (all NaN or inf)")
    if np.isinf(m).any():
        raise InvalidMapError(image_id, "score_map holds inf values")
    return np.where(finite, m, m[finite].min())


def align_map(m: np.ndarray, orig_shape: tuple[int, int], prep: Preprocess, image_id: str) -> np.ndarray:
    """A map at any resolution -> the processed image's (H, W).

    A full-frame map (its aspect is the stored image's) goes through the image's own resize and
    crop, so every pixel lands where its image pixel does; a map already at the processed size
    (e.g. raydist's own results) is taken as it is. Any other shape cannot be aligned safely.
    """
    h, w = m.shape
    oh, ow = orig_shape
    if abs((h / w) / (oh / ow) - 1) <= ASPECT_TOLERANCE:
        return prep.geometry(m, Image.BILINEAR).astype(np.float32)
    if (h, w) == prep.size:
        return m
    raise InvalidMapError(image_id, f"score_map shape {m.shape} cannot be aligned to the image ({oh}x{ow}): aspect differs")
