import io

import numpy as np
import pytest
from PIL import Image

from raydist.data.decode import decode_image, decode_mask, decode_xyz, encode_npy, encode_png
from raydist.errors import (
    CorruptImageError,
    ImageTooLargeError,
    InvalidPointCloudError,
    MissingMaskError,
    ShapeMismatchError,
)


def png(arr, mode=None):
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def test_corrupt_and_empty_and_truncated_images_name_the_row():
    good = png(np.zeros((20, 20, 3), np.uint8))
    for data in (b"not a png at all", b"", good[: len(good) // 2]):
        with pytest.raises(CorruptImageError, match="image_id='cls/test/cut/007'"):
            decode_image(data, "cls/test/cut/007")


def test_grayscale_and_rgba_are_converted():
    g = decode_image(png(np.full((5, 6), 7, np.uint8)), "g")
    rgba = decode_image(png(np.full((5, 6, 4), 9, np.uint8)), "r")
    assert g.shape == rgba.shape == (5, 6, 3)
    assert g[0, 0].tolist() == [7, 7, 7] and rgba[0, 0].tolist() == [9, 9, 9]


def test_decompression_bomb_guard():
    with pytest.raises(ImageTooLargeError, match="above the limit of 100 px"):
        decode_image(png(np.zeros((20, 20, 3), np.uint8)), "big", max_pixels=100)


def test_mask_checks():
    m = png(np.zeros((4, 4), np.uint8))
    with pytest.raises(ShapeMismatchError, match="mask is 4x4 but image is 5x4"):
        decode_mask(m, "x", shape=(4, 5))
    with pytest.raises(MissingMaskError, match="anomalous row has no mask"):
        decode_mask(None, "x", shape=(4, 4), label=1)
    assert decode_mask(None, "x", shape=(4, 4), label=0).sum() == 0
    # any value > 0 is a defect (MVTec 3D-AD gt is not only 255)
    assert decode_mask(png(np.array([[0, 1], [2, 255]], np.uint8)), "x").sum() == 3
    assert decode_mask(encode_png(np.eye(3, dtype=bool)), "x").sum() == 3


def test_xyz_checks():
    good = np.ones((4, 5, 3), np.float32)
    good[0, 0] = 0
    xyz = decode_xyz(encode_npy(good), "x", shape=(4, 5))
    assert np.isnan(xyz[0, 0]).all() and np.isfinite(xyz[1:]).all()
    with pytest.raises(ShapeMismatchError):
        decode_xyz(encode_npy(good), "x", shape=(5, 5))
    with pytest.raises(InvalidPointCloudError, match="HxWx3 float"):
        decode_xyz(encode_npy(np.ones((4, 5, 2), np.float32)), "x")
    with pytest.raises(InvalidPointCloudError, match="HxWx3 float"):
        decode_xyz(encode_npy(np.ones((4, 5, 3), np.int32)), "x")
    with pytest.raises(InvalidPointCloudError, match="no valid point"):
        decode_xyz(encode_npy(np.full((4, 5, 3), np.nan, np.float32)), "x")


def test_read_xyz_is_the_stored_cloud_without_a_copy():
    from raydist.data.decode import read_xyz

    cloud = np.random.default_rng(0).random((6, 7, 3)).astype(np.float32)
    cloud[0, 0] = 0
    data = encode_npy(cloud)
    xyz = read_xyz(data, "x", shape=(6, 7))
    assert np.array_equal(xyz, cloud) and not xyz.flags.writeable  # zeros kept: the method tests validity
    assert np.array_equal(read_xyz(encode_npy(np.asfortranarray(cloud)), "x"), cloud)
    assert read_xyz(None, "x") is None
    with pytest.raises(ShapeMismatchError):
        read_xyz(data, "x", shape=(7, 7))
    with pytest.raises(InvalidPointCloudError, match="HxWx3 float"):
        read_xyz(encode_npy(np.ones((4, 5, 3), np.int32)), "x")
    for bad in (data[:-4], b"not an npy", data[:20]):
        with pytest.raises(CorruptImageError, match="xyz is not a valid .npy"):
            read_xyz(bad, "x")
