"""Fast Point Feature Histograms (Rusu et al. 2009) as open3d computes them, compiled with numba.

Why not call open3d: its FPFH runs on one core and holds the GIL (the pip wheel's OpenMP loop
stays serial), ~150-200 ms per 224-px part of 13k points; it was 60% of CFM's time per image.
Here the same three steps run as numba kernels that release the GIL, split over ``threads``
Python threads (the caller's torch thread budget, so executors keep their thread rule):

1. neighbours: the ``max_nn`` nearest points within ``radius`` (exact: a 3D voxel hash of cell
   size >= radius, all 27 cells scanned, then a quickselect), as open3d's hybrid k-d tree search;
2. SPFH: the (alpha, phi, theta) pair features of each point with each neighbour, 11 bins each,
   each histogram summing to 100 (open3d's ``ComputeSPFHFeature``); a pair in both points'
   neighbourhoods is computed once for both (its features do not depend on which end is first,
   but for an exact tie, handled), as bin counts that become open3d's floats at the end;
3. FPFH: a point's SPFH plus its neighbours' SPFH weighted by 1 / squared distance and
   re-normalised to 100 per histogram (open3d's ``ComputeFPFHFeature``: it weighs by the squared
   distance its k-d tree returns, not by the distance of the paper).

Given the same normals, features equal open3d's to ~1e-12 except where two neighbours tie at the
``max_nn`` boundary (tests/pointcloud/test_fpfh.py).
"""

from __future__ import annotations

import math
import threading

import numpy as np
from numba import njit

BINS = 11
DIM = 3 * BINS
_ROW = 36  # SPFH rows padded to a multiple of 4 doubles (zeros), so FPFH's weighted row sums vectorise
_MAX_CELLS_PER_AXIS = 1 << 20  # keeps the voxel keys inside int64 whatever the cloud's extent


@njit(nogil=True, cache=True)
def _nth_smallest(d: np.ndarray, j: np.ndarray, m: int, k: int) -> None:
    """Reorder d[:m] (and j alongside) so that its k smallest come first (quickselect)."""
    lo, hi = 0, m - 1
    while lo < hi:
        pivot = d[(lo + hi) // 2]
        a, b = lo, hi
        while a <= b:
            while d[a] < pivot:
                a += 1
            while d[b] > pivot:
                b -= 1
            if a <= b:
                d[a], d[b] = d[b], d[a]
                j[a], j[b] = j[b], j[a]
                a += 1
                b -= 1
        if k - 1 <= b:
            hi = b
        elif k - 1 >= a:
            lo = a
        else:
            return


@njit(nogil=True, cache=True)
def _nearest_within(d, j, r2, max_nn, dbuf, jbuf) -> int:  # pragma: no cover - compiled
    """Copy the entries of ``d`` (squared distances, with ids ``j``) below ``r2`` into the buffers,
    keep the ``max_nn`` smallest (in no order) and return how many: open3d's hybrid search
    (its k nearest, then a strict radius cut)."""
    m = 0
    for u in range(len(d)):  # branch-free: written always, kept by advancing m (a quarter pass)
        dbuf[m] = d[u]
        jbuf[m] = j[u]
        m += d[u] < r2
    if m > max_nn:
        _nth_smallest(dbuf, jbuf, m, max_nn)
        m = max_nn
    return m


@njit(nogil=True, cache=True)
def _neighbours(lo, hi, xs, ys, zs, keys, order, dims, r2, max_nn, idx, d2, cnt):  # pragma: no cover - compiled
    """Points lo..hi of the voxel order: consecutive points share a cell, so the candidates (the 27
    cells around it) are gathered once per cell into contiguous arrays and scanned per point."""
    n = xs.shape[0]
    cx, cy, cz = np.empty(n), np.empty(n), np.empty(n)
    cj = np.empty(n, dtype=np.int64)
    dd = np.empty(n)
    dbuf = np.empty(n)
    jbuf = np.empty(n, dtype=np.int64)
    ny, nz = dims[1], dims[2]
    nc, prev = 0, -1
    for t in range(lo, hi):
        key = keys[t]
        if key != prev:
            prev, nc = key, 0
            col = key // nz
            for dx in range(-1, 2):
                for dy in range(-1, 2):
                    # the three cells along z are consecutive keys: one range of the sorted keys
                    base = (col + dx * ny + dy) * nz + key % nz
                    a = np.searchsorted(keys, base - 1)
                    b = np.searchsorted(keys, base + 1, side="right")
                    for u in range(a, b):
                        cx[nc], cy[nc], cz[nc], cj[nc] = xs[u], ys[u], zs[u], order[u]
                        nc += 1
        px, py, pz = xs[t], ys[t], zs[t]
        for u in range(nc):
            ex, ey, ez = cx[u] - px, cy[u] - py, cz[u] - pz
            dd[u] = ex * ex + ey * ey + ez * ez
        m = _nearest_within(dd[:nc], cj[:nc], r2, max_nn, dbuf, jbuf)
        i = order[t]
        cnt[i] = m
        for u in range(m):
            idx[i, u] = jbuf[u]
            d2[i, u] = dbuf[u]


@njit(nogil=True, cache=True)
def _dot(a, b):
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


@njit(nogil=True, cache=True)
def _cross(a, b):
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


@njit(nogil=True, cache=True)
def _matvec(a, u):  # a symmetric: rows as open3d writes them
    return np.array([a[0, 0] * u[0] + a[0, 1] * u[1] + a[0, 2] * u[2],
                     a[0, 1] * u[0] + a[1, 1] * u[1] + a[1, 2] * u[2],
                     a[0, 2] * u[0] + a[1, 2] * u[1] + a[2, 2] * u[2]])  # fmt: skip


@njit(nogil=True, cache=True)
def _eigenvector0(a, ev):  # pragma: no cover - compiled
    """Eigenvector of the symmetric 3 x 3 ``a`` for the simple eigenvalue ``ev`` (cross products of rows)."""
    r0 = np.array([a[0, 0] - ev, a[0, 1], a[0, 2]])
    r1 = np.array([a[0, 1], a[1, 1] - ev, a[1, 2]])
    r2 = np.array([a[0, 2], a[1, 2], a[2, 2] - ev])
    c01, c02, c12 = _cross(r0, r1), _cross(r0, r2), _cross(r1, r2)
    d0, d1, d2 = _dot(c01, c01), _dot(c02, c02), _dot(c12, c12)
    if d1 > d0 and d1 >= d2:
        return c02 / math.sqrt(d1)
    if d2 > d0 and d2 > d1:
        return c12 / math.sqrt(d2)
    return c01 / math.sqrt(d0)


@njit(nogil=True, cache=True)
def _eigenvector1(a, e0, ev):  # pragma: no cover - compiled
    """Eigenvector for ``ev`` orthogonal to the eigenvector ``e0`` (a 2 x 2 problem in its complement)."""
    if abs(e0[0]) > abs(e0[1]):
        inv = 1.0 / math.sqrt(e0[0] * e0[0] + e0[2] * e0[2])
        u = np.array([-e0[2] * inv, 0.0, e0[0] * inv])
    else:
        inv = 1.0 / math.sqrt(e0[1] * e0[1] + e0[2] * e0[2])
        u = np.array([0.0, e0[2] * inv, -e0[1] * inv])
    v = _cross(e0, u)
    au, av = _matvec(a, u), _matvec(a, v)
    m00, m01, m11 = _dot(u, au) - ev, _dot(u, av), _dot(v, av) - ev
    # the null vector of the 2 x 2 [[m00, m01], [m01, m11]] from its larger row
    big, small = (m00, m01) if abs(m00) >= abs(m11) else (m11, m01)
    if max(abs(big), abs(small)) <= 0.0:
        return u
    big, small = _unit(big, small)
    return small * u - big * v if abs(m00) >= abs(m11) else big * u - small * v


@njit(nogil=True, cache=True)
def _unit(a, b):  # pragma: no cover - compiled
    """(a, b) scaled to unit length by dividing by the larger (open3d's way: its sign goes)."""
    if abs(a) >= abs(b):
        b /= a
        a = 1.0 / math.sqrt(1.0 + b * b)
        return a, b * a
    a /= b
    b = 1.0 / math.sqrt(1.0 + a * a)
    return a * b, b


@njit(nogil=True, cache=True)
def _smallest_eigenvector(cov):  # pragma: no cover - compiled
    """open3d's ``FastEigen3x3``: the robust closed form of Eberly's "A Robust Eigensolver for 3 x 3
    Symmetric Matrices", with its sign conventions, so normals (and so FPFH) match open3d's."""
    scale = cov.max()
    if scale == 0.0:
        return np.zeros(3)
    a = cov / scale
    off = a[0, 1] * a[0, 1] + a[0, 2] * a[0, 2] + a[1, 2] * a[1, 2]
    if off <= 0.0:  # diagonal
        if a[0, 0] < a[1, 1] and a[0, 0] < a[2, 2]:
            return np.array([1.0, 0.0, 0.0])
        if a[1, 1] < a[0, 0] and a[1, 1] < a[2, 2]:
            return np.array([0.0, 1.0, 0.0])
        return np.array([0.0, 0.0, 1.0])
    q = (a[0, 0] + a[1, 1] + a[2, 2]) / 3
    b00, b11, b22 = a[0, 0] - q, a[1, 1] - q, a[2, 2] - q
    p = math.sqrt((b00 * b00 + b11 * b11 + b22 * b22 + off * 2) / 6)
    c00 = b11 * b22 - a[1, 2] * a[1, 2]
    c01 = a[0, 1] * b22 - a[1, 2] * a[0, 2]
    c02 = a[0, 1] * a[1, 2] - b11 * a[0, 2]
    half_det = min(max((b00 * c00 - a[0, 1] * c01 + a[0, 2] * c02) / (p * p * p) * 0.5, -1.0), 1.0)
    angle = math.acos(half_det) / 3.0
    beta2 = math.cos(angle) * 2
    beta0 = math.cos(angle + 2.09439510239319549) * 2
    beta1 = -(beta0 + beta2)
    e0, e1, e2 = q + p * beta0, q + p * beta1, q + p * beta2
    # start from the eigenvalue that is well separated (Eberly), then the middle one, then their cross
    first, other = (e2, e0) if half_det >= 0 else (e0, e2)
    vf = _eigenvector0(a, first)
    if first < other and first < e1:
        return vf
    v1 = _eigenvector1(a, vf, e1)
    if e1 < e0 and e1 < e2:
        return v1
    return _cross(v1, vf) if half_det >= 0 else _cross(vf, v1)


@njit(nogil=True, cache=True)
def _normals(lo, hi, pts, idx, d2, cnt, r2, max_nn, out):  # pragma: no cover - compiled
    """open3d's ``EstimateNormals``: the covariance of the ``max_nn`` nearest within the radius
    (identity below 3 points), its smallest eigenvector, (0, 0, 1) where that is zero."""
    dbuf = np.empty(idx.shape[1])
    jbuf = np.empty(idx.shape[1], dtype=np.int64)
    cov = np.empty((3, 3))
    for i in range(lo, hi):
        m = _nearest_within(d2[i, : cnt[i]], idx[i, : cnt[i]], r2, max_nn, dbuf, jbuf)
        if m < 3:
            cov[:] = 0.0
            cov[0, 0] = cov[1, 1] = cov[2, 2] = 1.0
        else:
            sx = sy = sz = sxx = sxy = sxz = syy = syz = szz = 0.0
            for t in range(m):
                x, y, z = pts[jbuf[t], 0], pts[jbuf[t], 1], pts[jbuf[t], 2]
                sx += x
                sy += y
                sz += z
                sxx += x * x
                sxy += x * y
                sxz += x * z
                syy += y * y
                syz += y * z
                szz += z * z
            sx, sy, sz, sxx, sxy, sxz, syy, syz, szz = sx / m, sy / m, sz / m, sxx / m, sxy / m, sxz / m, syy / m, syz / m, szz / m
            cov[0, 0] = sxx - sx * sx
            cov[1, 1] = syy - sy * sy
            cov[2, 2] = szz - sz * sz
            cov[0, 1] = cov[1, 0] = sxy - sx * sy
            cov[0, 2] = cov[2, 0] = sxz - sx * sz
            cov[1, 2] = cov[2, 1] = syz - sy * sz
        n = _smallest_eigenvector(cov)
        if n[0] == 0.0 and n[1] == 0.0 and n[2] == 0.0:
            n[2] = 1.0
        out[i, 0], out[i, 1], out[i, 2] = n[0], n[1], n[2]


@njit(nogil=True, cache=True)
def _bin(x: float, lo: float, width: float) -> int:
    h = int(math.floor(BINS * (x - lo) / width))
    return min(max(h, 0), BINS - 1)


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _angle_polynomial(y: float, x: float) -> tuple[int, bool]:  # pragma: no cover - compiled
    """``_bin(atan2(y, x), -pi, 2 pi)`` from a polynomial (Abramowitz & Stegun 4.4.49, error
    <= 1e-5 rad), and whether that may be wrong: within 1.7e-4 rad of a bin edge, or y or x zero
    (then the bin returned is 0 and atan2 must decide). Branch-free (the octant is unpredictable;
    numpy's error model: 0 / 0 gives NaN, flagged, instead of raising)."""
    fx, fy = abs(x), abs(y)
    r = min(fx, fy) / max(fx, fy)
    s = r * r
    r = r * (0.9998660 + s * (-0.3302995 + s * (0.1801410 + s * (-0.0851330 + s * 0.0208351))))
    r = 0.5 * math.pi - r if fy > fx else r
    r = math.pi - r if x < 0.0 else r
    r = -r if y < 0.0 else r
    t = BINS * (r + math.pi) / (2.0 * math.pi)
    h = math.floor(t)
    exact = (fx == 0.0) | (fy == 0.0) | (t - h < 3e-4) | (t - h > 1.0 - 3e-4)
    return min(max(int(0.0 if exact else h), 0), BINS - 1), exact


@njit(nogil=True, cache=True, error_model="numpy")
def _angle_bin(y: float, x: float) -> int:  # pragma: no cover - compiled
    """``_bin(atan2(y, x), -pi, 2 pi)``, with atan2 (half of SPFH's time) replaced by
    :func:`_angle_polynomial` wherever that is safe, so the bin is always atan2's."""
    h, exact = _angle_polynomial(y, x)
    return _bin(math.atan2(y, x), -math.pi, 2.0 * math.pi) if exact else h


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _pair_features(px, py, pz, ax, ay, az, qx, qy, qz, bx, by, bz):  # pragma: no cover - compiled
    """open3d's ``ComputePairFeatures`` of p (normal a) first and q (normal b): (sin theta,
    cos theta, alpha, phi), open3d's zero features (theta = 0) where the points coincide or the
    line lies along the source's normal, and whether |cos| tied at both ends (only then does
    swapping p and q change the features). Written with selects, no branches, so that a loop of
    it vectorises (numpy's error model: a zero distance gives inf instead of raising, and is
    selected away)."""
    dx, dy, dz = qx - px, qy - py, qz - pz
    dist = math.sqrt(dx * dx + dy * dy + dz * dz)
    inv = 1.0 / dist
    c1 = (ax * dx + ay * dy + az * dz) * inv
    c2 = (bx * dx + by * dy + bz * dz) * inv
    tie = (abs(c1) == abs(c2)) & (dist > 0.0)
    # source = the point whose normal is closer to the connecting line (acos is decreasing)
    swap = abs(c1) < abs(c2)
    ux, uy, uz = (bx if swap else ax), (by if swap else ay), (bz if swap else az)
    wx, wy, wz = (ax if swap else bx), (ay if swap else by), (az if swap else bz)
    sign = -1.0 if swap else 1.0
    dx, dy, dz = sign * dx, sign * dy, sign * dz
    phi = -c2 if swap else c1
    vx, vy, vz = dy * uz - dz * uy, dz * ux - dx * uz, dx * uy - dy * ux
    vn = math.sqrt(vx * vx + vy * vy + vz * vz)
    inv = 1.0 / vn
    vx, vy, vz = vx * inv, vy * inv, vz * inv
    sx, sy, sz = uy * vz - uz * vy, uz * vx - ux * vz, ux * vy - uy * vx
    ok = (dist > 0.0) & (vn > 0.0)
    y = (sx * wx + sy * wy + sz * wz) if ok else 0.0
    x = (ux * wx + uy * wy + uz * wz) if ok else 1.0
    alpha = (vx * wx + vy * wy + vz * wz) if ok else 0.0
    return y, x, alpha, (phi if ok else 0.0), tie


@njit(nogil=True, cache=True, error_model="numpy")
def _pair_bins(pts, nrm, i, q):  # pragma: no cover - compiled
    """The (theta, alpha, phi) bins of the pair (point i, point q), i first, and the tie flag of
    :func:`_pair_features`."""
    y, x, alpha, phi, tie = _pair_features(pts[i, 0], pts[i, 1], pts[i, 2], nrm[i, 0], nrm[i, 1], nrm[i, 2],
                                           pts[q, 0], pts[q, 1], pts[q, 2], nrm[q, 0], nrm[q, 1], nrm[q, 2])  # fmt: skip
    return _angle_bin(y, x), BINS + _bin(alpha, -1.0, 2.0), 2 * BINS + _bin(phi, -1.0, 2.0), tie


@njit(nogil=True, cache=True, error_model="numpy")
def _pair_bins_many(p, a, qx, qy, qz, bx, by, bz, k, b0, b1, b2, exact, ys, xs, tie):  # pragma: no cover - compiled
    """:func:`_pair_bins` for the pairs (p, q[u]), u < k, vectorised (one array per coordinate,
    which the vectoriser needs); where ``exact[u]``, theta's bin is atan2's of (ys[u], xs[u])."""
    for u in range(k):
        y, x, alpha, phi, tie[u] = _pair_features(p[0], p[1], p[2], a[0], a[1], a[2], qx[u], qy[u], qz[u], bx[u], by[u], bz[u])
        b0[u], exact[u] = _angle_polynomial(y, x)
        ys[u], xs[u] = y, x
        b1[u] = BINS + min(max(int(math.floor(BINS * (alpha + 1.0) / 2.0)), 0), BINS - 1)
        b2[u] = 2 * BINS + min(max(int(math.floor(BINS * (phi + 1.0) / 2.0)), 0), BINS - 1)


@njit(nogil=True, cache=True)
def _spfh_counts(lo, hi, pts, nrm, idx, cnt, max_nn, counts):  # pragma: no cover - compiled
    """How many of each point's pairs fall in each bin, for points lo..hi.

    A pair's features are the same seen from either end (open3d picks the source by the normals,
    not by the order), so a pair of two points in this range whose neighbourhoods both hold all
    points within the radius (fewer than ``max_nn``: then each is in the other's) is computed
    once and counted for both; every other pair from each end. Only rows lo..hi are written."""
    todo = np.empty(max_nn, dtype=np.int64)
    both = np.empty(max_nn, dtype=np.int64)
    qx, qy, qz, bx, by, bz = np.empty(max_nn), np.empty(max_nn), np.empty(max_nn), np.empty(max_nn), np.empty(max_nn), np.empty(max_nn)
    b0s, b1s, b2s = np.empty(max_nn, dtype=np.int64), np.empty(max_nn, dtype=np.int64), np.empty(max_nn, dtype=np.int64)
    exact, tie = np.empty(max_nn, dtype=np.bool_), np.empty(max_nn, dtype=np.bool_)
    ys, xs = np.empty(max_nn), np.empty(max_nn)
    for i in range(lo, hi):
        m = cnt[i]
        if m <= 1:
            continue
        whole_i = int(m < max_nn)
        k = 0
        for t in range(m):  # the pairs to compute, gathered branch-free (which ones is a coin flip)
            j = idx[i, t]
            shared = whole_i * int(lo <= j) * int(j < hi) * int(cnt[j] < max_nn)
            todo[k], both[k] = j, shared
            k += int(j != i) * (1 - shared * int(j < i))  # j < i: counted from j's end
        for u in range(k):
            j = todo[u]
            qx[u], qy[u], qz[u] = pts[j, 0], pts[j, 1], pts[j, 2]
            bx[u], by[u], bz[u] = nrm[j, 0], nrm[j, 1], nrm[j, 2]
        _pair_bins_many(pts[i], nrm[i], qx, qy, qz, bx, by, bz, k, b0s, b1s, b2s, exact, ys, xs, tie)
        for u in range(k):
            j = todo[u]
            b0, b1, b2 = b0s[u], b1s[u], b2s[u]
            if exact[u]:  # theta near a bin edge (or y or x zero): atan2 decides
                b0 = _angle_bin(ys[u], xs[u])
            counts[i, b0] += 1
            counts[i, b1] += 1
            counts[i, b2] += 1
            if both[u]:
                if tie[u]:
                    b0, b1, b2, _ = _pair_bins(pts, nrm, j, i)
                counts[j, b0] += 1
                counts[j, b1] += 1
                counts[j, b2] += 1


@njit(nogil=True, cache=True)
def _spfh(lo, hi, pts, nrm, idx, cnt, max_nn, counts, out):  # pragma: no cover - compiled
    """Each point's three 11-bin histograms of its pair features, each summing to 100: the bin
    counts, then 100 / (neighbours) added once per pair in the bin, as open3d accumulates them
    (repeated addition of one value: the same floats whatever order the pairs came in; the
    k-fold sums are tabulated once per point)."""
    _spfh_counts(lo, hi, pts, nrm, idx, cnt, max_nn, counts)
    sums = np.empty(max_nn + 1)
    for i in range(lo, hi):
        m = cnt[i]
        if m <= 1:
            continue
        inc = 100.0 / (m - 1)
        sums[0] = 0.0
        for k in range(1, m):  # no bin holds more than the m - 1 pairs
            sums[k] = sums[k - 1] + inc
        for c in range(DIM):
            out[i, c] = sums[counts[i, c]]


@njit(nogil=True, cache=True)
def _fpfh(lo, hi, spfh, idx, d2, cnt, out):  # pragma: no cover - compiled
    """SPFH + the neighbours' SPFH weighted by 1 / squared distance, re-normalised to 100 each.
    ``spfh`` rows are padded to :data:`_ROW` (zeros): a whole-row loop the compiler vectorises."""
    acc = np.empty(spfh.shape[1])
    for i in range(lo, hi):
        m = cnt[i]
        if m <= 1:
            continue
        acc[:] = 0.0
        for t in range(m):
            if d2[i, t] == 0.0:  # the point itself and exact duplicates
                continue
            q, w = idx[i, t], 1.0 / d2[i, t]
            for c in range(spfh.shape[1]):
                acc[c] += spfh[q, c] * w
        for h in range(3):
            s = 0.0
            for c in range(h * BINS, (h + 1) * BINS):
                s += acc[c]
            s = 100.0 / s if s != 0.0 else 0.0
            for c in range(h * BINS, (h + 1) * BINS):
                out[i, c] = acc[c] * s + spfh[i, c]


def _split(kernel, n: int, threads: int, *args) -> None:
    """Run ``kernel(lo, hi, *args)`` over [0, n) in ``threads`` contiguous ranges, one thread each
    (the kernels release the GIL and write disjoint rows)."""
    bounds = np.linspace(0, n, max(1, min(threads, n)) + 1).astype(np.int64)
    if len(bounds) == 2:
        kernel(0, n, *args)
        return
    workers = [threading.Thread(target=kernel, args=(lo, hi, *args)) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def radius_neighbours(pts: np.ndarray, radius: float, max_nn: int, threads: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``max_nn`` nearest points within ``radius`` of every point (itself included), in no order.

    Returns indices (N, max_nn), squared distances (N, max_nn) and counts (N,); entries past a
    point's count are undefined.
    """
    pts = np.ascontiguousarray(pts, dtype=np.float64)
    n = len(pts)
    if n == 0:
        return np.zeros((0, max_nn), dtype=np.int64), np.zeros((0, max_nn)), np.zeros(0, dtype=np.int64)
    lo = pts.min(0)
    cell = max(radius, float((pts.max(0) - lo).max()) / _MAX_CELLS_PER_AXIS, 1e-300)
    cells = np.floor((pts - lo) / cell).astype(np.int64) + 1  # +1: the -1 neighbour of cell 0 stays >= 0
    dims = cells.max(0) + 2
    keys = (cells[:, 0] * dims[1] + cells[:, 1]) * dims[2] + cells[:, 2]
    order = np.argsort(keys, kind="stable")
    xs, ys, zs = (np.ascontiguousarray(pts[order, k]) for k in range(3))
    idx = np.zeros((n, max_nn), dtype=np.int64)
    d2 = np.zeros((n, max_nn))
    cnt = np.zeros(n, dtype=np.int64)
    _split(_neighbours, n, threads, xs, ys, zs, keys[order], order, dims, radius * radius, max_nn, idx, d2, cnt)
    return idx, d2, cnt


def normals_and_fpfh(
    pts: np.ndarray, normal_radius: float, radius: float, normal_max_nn: int = 30, max_nn: int = 100, threads: int = 1,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """open3d's ``estimate_normals`` then ``compute_fpfh_feature`` (hybrid searches with these radii
    and caps), sharing one neighbour search: the normals' neighbourhood is the first part of the
    FPFH's when ``normal_radius <= radius`` and ``normal_max_nn <= max_nn``."""
    if normal_radius > radius or normal_max_nn > max_nn:
        raise ValueError("the normals' neighbourhood must lie within the histograms' one")
    pts = np.ascontiguousarray(pts, dtype=np.float64)
    idx, d2, cnt = radius_neighbours(pts, radius, max_nn, threads)
    normals = np.empty_like(pts)
    _split(_normals, len(pts), threads, pts, idx, d2, cnt, normal_radius * normal_radius, normal_max_nn, normals)
    return normals, _histograms(pts, normals, idx, d2, cnt, threads)


def fpfh(pts: np.ndarray, normals: np.ndarray, radius: float, max_nn: int = 100, threads: int = 1) -> np.ndarray:
    """(N, 33) FPFH of points with their normals, over the ``max_nn`` nearest within ``radius``."""
    pts = np.ascontiguousarray(pts, dtype=np.float64)
    idx, d2, cnt = radius_neighbours(pts, radius, max_nn, threads)
    return _histograms(pts, np.ascontiguousarray(normals, dtype=np.float64), idx, d2, cnt, threads)


def _histograms(pts, normals, idx, d2, cnt, threads: int) -> np.ndarray:
    n = len(pts)
    spfh = np.zeros((n, _ROW))
    _split(_spfh, n, threads, pts, normals, idx, cnt, idx.shape[1], np.zeros((n, DIM), dtype=np.int32), spfh)
    out = np.zeros((n, DIM))
    _split(_fpfh, n, threads, spfh, idx, d2, cnt, out)
    return out
