"""Background-plane removal on organized clouds (H, W, 3), as the CFM / M3DM papers do.

The plane is fitted with open3d's RANSAC on the points of a thin image border (where the
background is), then every point within ``distance`` of it is dropped. Fitting on the border
keeps a large object from being taken for the plane.
"""

from __future__ import annotations

import functools
import threading

import numpy as np

from raydist.errors import InvalidPointCloudError

# open3d's RANSAC plane fit (one process-wide generator, seeded by ``o3d.utility.random.seed``)
# samples its iterations on parallel threads and by default stops early once a plane is likely
# enough: which samples it saw then depends on timing (measured: under load, 1-2 of 20 fits of a
# noisy plane off by ~1,000-6,500 of 25,600 points). ``probability=1.0`` runs every iteration, so
# the same samples are drawn whatever the timing; the lock keeps two threads' seeding and drawing
# apart. A fit of a border ring takes ~0.4 ms (cable_gland, 7.6k points), with or without early stop.
_RANSAC = threading.Lock()
NO_POINT = "xyz has no valid point (all zero or NaN)"


def valid_mask(xyz: np.ndarray) -> np.ndarray:
    """Pixels holding a point: finite and not all-zero (MVTec 3D-AD's "no point"). Channel by
    channel: numpy's reductions over a length-3 last axis cost ~10 ms per 800 x 800 cloud each."""
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    return np.isfinite(x) & np.isfinite(y) & np.isfinite(z) & ((x != 0) | (y != 0) | (z != 0))


def clean_cloud(small: np.ndarray, raw: np.ndarray, image_id: str) -> np.ndarray:
    """``small`` (pixels picked from the stored cloud ``raw``) with NaN wherever there is no point;
    an InvalidPointCloudError when ``raw`` holds no point at all (tested on ``raw`` only then)."""
    valid = valid_mask(small)
    if not valid.any() and not valid_mask(raw).any():
        raise InvalidPointCloudError(image_id, NO_POINT)
    small = np.array(small, dtype=np.float32, copy=True)
    small[~valid] = np.nan
    return small


@functools.lru_cache(maxsize=16)
def ring_index(shape: tuple[int, int], border: int) -> np.ndarray:
    """Flat indices of the pixels within ``border`` of the image's edge, row-major (the order a
    boolean mask picks them in, so RANSAC samples the same points): the plane is fitted on these
    alone, without testing the ~600k inner pixels of an 800-px cloud (~9 ms a row)."""
    ring = np.zeros(shape, dtype=bool)
    ring[:border], ring[-border:], ring[:, :border], ring[:, -border:] = True, True, True, True
    index = np.flatnonzero(ring)
    index.flags.writeable = False  # shared by every caller
    return index


def remove_plane(
    xyz: np.ndarray, distance: float = 0.005, border: int = 10, ransac_n: int = 3, iterations: int = 1000,
    seed: int = 0, image_id: str = "?", fit_on: np.ndarray | None = None,
) -> np.ndarray:  # fmt: skip
    """Return a copy with background points (and pixels without a point: zeros or NaN) set to NaN.
    ``distance`` 0.005 (m) is the papers' value.

    ``fit_on``: the cloud whose border the plane is fitted on (default ``xyz``). Decoding passes
    the stored full-resolution cloud and removes the plane from the resized one: dropping points
    is per pixel and nearest resizing only picks pixels, so this equals removing the plane at full
    resolution and resizing after, without testing the ~600k pixels resizing throws away.
    """
    import open3d as o3d

    src = xyz if fit_on is None else fit_on
    # the border's pixels, in row-major order, as float32 whatever the stored precision
    cand = np.ascontiguousarray(src).reshape(-1, 3)[ring_index(src.shape[:2], border)].astype(np.float32, copy=False)
    pts = cand[valid_mask(cand)]
    if len(pts) < ransac_n:  # no border points: fall back to all points
        valid = valid_mask(src)
        if not valid.any():
            raise InvalidPointCloudError(image_id, NO_POINT)
        pts = src[valid].astype(np.float32, copy=False)
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts.astype(np.float64)))
    with _RANSAC:
        o3d.utility.random.seed(seed)
        (a, b, c, d), _ = pcd.segment_plane(distance_threshold=distance, ransac_n=ransac_n, num_iterations=iterations, probability=1.0)
    norm = float(np.sqrt(a * a + b * b + c * c))
    kept = valid_mask(xyz)
    xyz = np.array(xyz, dtype=np.float32, copy=True)
    dist = np.abs(xyz[..., 0] * a + xyz[..., 1] * b + xyz[..., 2] * c + d) / norm
    xyz[~kept | (dist <= distance)] = np.nan
    return xyz
