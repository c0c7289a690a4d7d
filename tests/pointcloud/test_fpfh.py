"""raydist.pointcloud.fpfh against open3d's own FPFH (the features the BTF / CFM baselines use)."""

import numpy as np
import pytest
from scipy.spatial import cKDTree

from raydist.pointcloud.fpfh import fpfh, normals_and_fpfh, radius_neighbours
from raydist.pointcloud.preprocess import remove_plane, valid_mask
from tests.conftest import shared_sample


def open3d_fpfh(pts: np.ndarray, normal_factor: float = 3.0, feature_factor: float = 6.0, max_nn: int = 100):
    """open3d's legacy pipeline as FPFH used it before: spacing, normals, FPFH."""
    import open3d as o3d

    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))
    spacing = float(np.median(np.asarray(pcd.compute_nearest_neighbor_distance())))
    pcd.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=normal_factor * spacing, max_nn=30))
    f = o3d.pipelines.registration.compute_fpfh_feature(
        pcd, o3d.geometry.KDTreeSearchParamHybrid(radius=feature_factor * spacing, max_nn=max_nn)
    )
    return np.asarray(f.data).T, np.asarray(pcd.normals), feature_factor * spacing


def real_part() -> np.ndarray:
    """The real cable_gland part at 224 px, background plane removed (7k points)."""
    import tifffile

    from raydist.features.preprocess import Preprocess

    raw = tifffile.imread(shared_sample("mvtec3d-mini") / "cable_gland" / "test" / "bent" / "xyz" / "000.tiff").astype(np.float32)
    xyz = remove_plane(Preprocess(224, 224).xyz(raw), 0.005, fit_on=raw)
    return xyz[valid_mask(xyz)].astype(np.float64)


def generated_part() -> np.ndarray:
    from raydist.data.decode import decode_xyz
    from raydist.data.synth3d import Synth3DConfig, generate_rows

    row = next(r for r in generate_rows(Synth3DConfig(n_classes=1, n_train=1, n_val=0, n_test_good=0, n_test_bad=0, size=160)))
    xyz = remove_plane(decode_xyz(row["xyz"], "g"), 0.005)
    return xyz[valid_mask(xyz)].astype(np.float64)


@pytest.mark.parametrize("part", [real_part, generated_part], ids=["cable_gland", "generated"])
def test_fpfh_equals_open3d(part):
    """Same histograms as open3d's to float64 rounding; a point may differ only where two
    neighbours tie at the max_nn boundary (measured: 0-1 of 12-15k points on generated parts)."""
    pts = part()
    ref, normals, radius = open3d_fpfh(pts)
    ours = fpfh(pts, normals, radius, 100, threads=2)
    off = np.abs(ours - ref).max(1) > 1e-9
    assert off.mean() <= 1e-3, f"{off.sum()} of {len(pts)} points differ"
    np.testing.assert_allclose(ours[~off], ref[~off], atol=1e-9)
    # each of the three histograms of a point with neighbours sums to 100 (its SPFH) + 100 (neighbours')
    sums = ours.reshape(len(pts), 3, 11).sum(2)
    assert np.allclose(sums[sums[:, 0] > 0], 200.0, atol=1e-6)


@pytest.mark.parametrize("part", [real_part, generated_part], ids=["cable_gland", "generated"])
def test_normals_and_fpfh_equal_open3d(part):
    """open3d's normals (its closed-form eigensolver, signs included) to 1e-9, and so its FPFH,
    except where normals ~1e-13 apart move a pair feature across a bin edge (measured on
    cable_gland: 0-53 of 7-8k points; generated: 0-1 of 13k; most likely theta at +-pi, where
    open3d's either-way normals make flat-patch neighbours anti-parallel)."""
    pts = part()
    ref, ref_normals, radius = open3d_fpfh(pts)
    normals, ours = normals_and_fpfh(pts, radius / 2, radius, 30, 100, threads=2)
    np.testing.assert_allclose(normals, ref_normals, atol=1e-9)
    off = np.abs(ours - ref).max(1) > 1e-9
    assert off.mean() <= 0.01, f"{off.sum()} of {len(pts)} points differ"
    np.testing.assert_allclose(ours[~off], ref[~off], atol=1e-9)


def test_fpfh_the_same_on_any_thread_count():
    pts = generated_part()
    _, normals, radius = open3d_fpfh(pts)
    one = fpfh(pts, normals, radius, 100, threads=1)
    np.testing.assert_array_equal(one, fpfh(pts, normals, radius, 100, threads=3))


def spfh_from_each_end(pts, normals, idx, cnt) -> np.ndarray:
    """SPFH as open3d computes it: every pair from its own point's end, 100 / (neighbours) added
    per pair (the reference for the kernel that computes a shared pair once)."""
    from raydist.pointcloud.fpfh import DIM, _pair_bins

    out = np.zeros((len(pts), DIM))
    for i in range(len(pts)):
        if cnt[i] <= 1:
            continue
        inc = 100.0 / (cnt[i] - 1)
        for q in idx[i, : cnt[i]]:
            if q != i:
                for b in _pair_bins(pts, normals, i, q)[:3]:
                    out[i, b] += inc
    return out


@pytest.mark.parametrize("threads", [1, 3])
def test_spfh_shared_pairs_equal_each_end(threads):
    """Pairs within both neighbourhoods are computed once: the same floats as from each end,
    with neighbourhoods cut at max_nn (not mutual), duplicates, exact ties (a flat grid, where
    |cos| is equal at both ends) and points split over threads."""
    from raydist.pointcloud.fpfh import DIM, _pair_bins, _spfh

    rng = np.random.default_rng(1)
    grid = np.stack(np.meshgrid(np.arange(12.0), np.arange(12.0)), -1).reshape(-1, 2) * 0.01
    flat = np.c_[grid, np.zeros(len(grid))]
    blob = rng.normal(scale=0.02, size=(300, 3)) + [0.3, 0.3, 0.0]  # dense: many capped at max_nn
    pts = np.r_[flat, flat[:5], blob]
    # the grid's normals all alike and tilted: |cos| ties at both ends with cos of one sign, the
    # one case where the features depend on which end is first
    normals = np.r_[np.tile([0.6, 0.0, 0.8], (len(flat) + 5, 1)), rng.normal(size=(300, 3))]
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    idx, _, cnt = radius_neighbours(pts, 0.025, 40, threads=threads)
    assert 0 < (cnt == 40).sum() < (cnt > 1).sum()  # some neighbourhoods cut, most whole
    assert _pair_bins(pts, normals, 0, 1)[:3] != _pair_bins(pts, normals, 1, 0)[:3]
    out = np.zeros((len(pts), DIM))
    bounds = np.linspace(0, len(pts), threads + 1).astype(int)
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):  # the kernel per thread range, as _split runs it
        _spfh(lo, hi, pts, normals, idx, cnt, 40, np.zeros((len(pts), DIM), dtype=np.int32), out)
    np.testing.assert_array_equal(out, spfh_from_each_end(pts, normals, idx, cnt))


@pytest.mark.parametrize("max_nn", [5, 40, 1000])
def test_neighbours_are_the_nearest_within_the_radius(max_nn):
    rng = np.random.default_rng(0)
    pts = rng.random((3000, 3)) * [1.0, 1.0, 0.05]  # a thick sheet, like a scanned surface
    radius = 0.04
    idx, d2, cnt = radius_neighbours(pts, radius, max_nn, threads=2)
    d, ref = cKDTree(pts).query(pts, k=min(max_nn, len(pts)), distance_upper_bound=radius)
    ref_cnt = np.isfinite(d).sum(1)
    np.testing.assert_array_equal(cnt, ref_cnt)
    for i in range(0, len(pts), 37):
        assert set(idx[i, : cnt[i]].tolist()) == set(ref[i, : ref_cnt[i]].tolist())
        np.testing.assert_allclose(np.sort(d2[i, : cnt[i]]), d[i, : ref_cnt[i]] ** 2, rtol=1e-12)


def test_isolated_and_duplicate_points():
    """A point alone in its radius gets an all-zero histogram; duplicates (zero distance) are
    counted as open3d counts them (zero pair features, no FPFH weight)."""
    pts = np.array([[0, 0, 0], [0, 0, 0], [0.01, 0, 0], [0, 0.01, 0.001], [5, 5, 5]], dtype=np.float64)
    normals = np.tile([0.0, 0.0, 1.0], (5, 1))
    ours = fpfh(pts, normals, 0.05, 100)
    assert not ours[4].any()
    import open3d as o3d

    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))
    pcd.normals = o3d.utility.Vector3dVector(normals)
    ref = np.asarray(o3d.pipelines.registration.compute_fpfh_feature(pcd, o3d.geometry.KDTreeSearchParamHybrid(radius=0.05, max_nn=100)).data).T
    np.testing.assert_allclose(ours, ref, atol=1e-9)


def test_normals_of_degenerate_neighbourhoods_follow_open3d():
    """Fewer than 3 neighbours: open3d's identity covariance gives (0, 0, 1); collinear and
    axis-aligned planar neighbourhoods take its eigensolver's special branches."""
    import open3d as o3d

    pts = np.array([[0, 0, 0], [0.01, 0, 0], [0.02, 0, 0], [0.03, 0, 0],  # a line
                    [1, 1, 1], [1.01, 1, 1], [1, 1.01, 1], [1.01, 1.01, 1],  # an axis-aligned square
                    [5, 5, 5], [5.01, 5, 5]], dtype=np.float64)  # fmt: skip
    normals, _ = normals_and_fpfh(pts, 0.05, 0.05, 30, 100)
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))
    pcd.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=0.05, max_nn=30))
    np.testing.assert_allclose(normals, np.asarray(pcd.normals), atol=1e-9)
    np.testing.assert_array_equal(normals[8:], [[0, 0, 1], [0, 0, 1]])


def test_empty_cloud_gives_empty_features():
    normals, feats = normals_and_fpfh(np.zeros((0, 3)), 0.01, 0.02)
    assert normals.shape == (0, 3) and feats.shape == (0, 33)
