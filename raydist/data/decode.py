"""Lazy, per-row decoding of the encoded columns (image, mask, xyz).

Each function takes one row's bytes and returns an array, or raises a typed
:class:`~raydist.errors.RowError` naming the ``image_id`` and the reason.
"""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
from PIL import Image

from raydist.errors import (
    CorruptImageError,
    ImageTooLargeError,
    InvalidPointCloudError,
    MissingMaskError,
    ShapeMismatchError,
)
from raydist.pointcloud.preprocess import clean_cloud

#: Decompression-bomb guard: 64 Mpx is ~8x an 8K frame, far above any inspection camera image
#: we expect, yet small enough that a hostile PNG cannot exhaust a worker's memory.
DEFAULT_MAX_PIXELS = 64_000_000


def _open(data: bytes | None, image_id: str, what: str, max_pixels: int) -> Image.Image:
    if data is None or len(data) == 0:
        raise CorruptImageError(image_id, f"{what} is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            w, h = im.size
            if w * h > max_pixels:
                raise ImageTooLargeError(image_id, f"{what} is {w}x{h} = {w * h} px, above the limit of {max_pixels} px")
            im.load()
    except ImageTooLargeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageTooLargeError(image_id, f"{what}: {e}") from None
    except Exception as e:  # PIL raises many types for bad bytes; all mean the same here
        raise CorruptImageError(image_id, f"{what} cannot be decoded: {type(e).__name__}: {e}") from None
    return im


def decode_image(data: bytes | None, image_id: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Encoded PNG/JPEG -> (H, W, 3) uint8 RGB. Grayscale, palette and RGBA are converted."""
    im = _open(data, image_id, "image", max_pixels)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im, dtype=np.uint8)


def decode_mask(
    data: bytes | None,
    image_id: str,
    shape: tuple[int, int] | None = None,
    label: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Encoded mask -> (H, W) bool (any value > 0 is defect).

    A missing mask is all-False for a nominal row and an error for an anomalous one.
    """
    if data is None:
        if label == 1:
            raise MissingMaskError(image_id, "anomalous row has no mask")
        if shape is None:
            raise MissingMaskError(image_id, "no mask and no shape to build an empty one")
        return np.zeros(shape, dtype=bool)
    im = _open(data, image_id, "mask", max_pixels)
    arr = np.asarray(im)
    if arr.ndim == 3:
        arr = arr.max(axis=2)
    if shape is not None and arr.shape != tuple(shape):
        raise ShapeMismatchError(image_id, f"mask is {arr.shape[1]}x{arr.shape[0]} but image is {shape[1]}x{shape[0]}")
    return arr > 0


def encode_png(arr: np.ndarray) -> bytes:
    """bool / uint8 array -> PNG bytes (bool masks are stored as 0/255)."""
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", optimize=False, compress_level=3)
    return buf.getvalue()


def encode_npy(arr: np.ndarray) -> bytes:
    """Lossless array bytes (``.npy``), written without pickle."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def decode_npy(data: bytes, image_id: str, what: str = "array") -> np.ndarray:
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as e:
        raise CorruptImageError(image_id, f"{what} is not a valid .npy array: {type(e).__name__}: {e}") from None


NPY_HEADER_MAX = 65536 + 12  # magic, version, a 4-byte length and the longest header


def read_xyz(data: bytes | memoryview | None, image_id: str, shape: tuple[int, int] | None = None) -> np.ndarray | None:
    """``.npy`` bytes (or any bytes-like view) -> the organized point cloud (H, W, 3) as stored: a
    read-only view of the row's bytes, zeros and NaN left as they are; checked to be (H, W, 3) float and,
    given ``shape``, the image's size.

    Why: an 800-px MVTec 3D-AD cloud is 7.7 MB, and a method keeps ~8% of its pixels (a 224-px
    resize) plus a thin border for its plane fit; copying, converting and testing every pixel of
    it cost ~6 ms a row. The method tests validity on the pixels it keeps
    (:func:`raydist.pointcloud.preprocess.clean_cloud`)."""
    if data is None:
        return None
    try:
        f = io.BytesIO(bytes(memoryview(data)[:NPY_HEADER_MAX]))  # the header only: ``data`` may be a view of a read buffer
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        dims, fortran, dtype = read_header(f)
        xyz = np.frombuffer(data, dtype=dtype, count=math.prod(dims), offset=f.tell()).reshape(dims, order="F" if fortran else "C")
    except Exception as e:
        raise CorruptImageError(image_id, f"xyz is not a valid .npy array: {type(e).__name__}: {e}") from None
    if xyz.ndim != 3 or xyz.shape[2] != 3 or not np.issubdtype(xyz.dtype, np.floating):
        raise InvalidPointCloudError(image_id, f"xyz must be HxWx3 float, got shape {xyz.shape} dtype {xyz.dtype}")
    if shape is not None and xyz.shape[:2] != tuple(shape):
        raise ShapeMismatchError(image_id, f"xyz is {xyz.shape[1]}x{xyz.shape[0]} but image is {shape[1]}x{shape[0]}")
    return xyz


def decode_xyz(data: bytes | None, image_id: str, shape: tuple[int, int] | None = None) -> np.ndarray | None:
    """``.npy`` bytes -> organized point cloud (H, W, 3) float32, NaN where there is no point: the
    :func:`read_xyz` view as a cleaned copy. Zeros (MVTec 3D-AD's "no point") become NaN so later
    stages need one test only.
    """
    xyz = read_xyz(data, image_id, shape)
    return None if xyz is None else clean_cloud(xyz, xyz, image_id)
