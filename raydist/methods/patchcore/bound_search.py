"""Exact nearest bank row on the CPU, most of the bank skipped by a cheap lower bound.

Why: PatchCore's dense search costs ``2 * D`` flops per (query, bank row); on a CPU it was the
largest stage of ``evaluate`` (bottle, EfficientNet-Lite0, 7,526 x 152 bank: ~37 ms of ~75 ms of
CPU per image). Real patch features are far from isotropic: a few principal directions carry most
of their spread, so a distance measured there already rules out nearly every bank row.

For an orthonormal basis ``V`` (k columns) of the bank's principal subspace, split each centred
vector ``x`` into ``p = V^T x`` and the residual ``x - V p`` of norm ``r``. Then, exactly,

    ||q - b||^2 = ||p_q - p_b||^2 + ||res_q - res_b||^2 >= ||p_q - p_b||^2 + (r_q - r_b)^2,

the squared distance of the (k + 1)-vectors ``[p, r]``: one small matrix product bounds the
distance to every bank row from below. Per query, the running best row's exact distance ``ub``
(seeded with the rows of smallest bound and the previous query's nearest row: neighbouring patches
share neighbours) keeps only rows whose bound is <= ``ub``; their exact distances (float64 sums of
float32 differences) decide. A row is skipped only if its bound exceeds the best distance plus a
slack far above the float32 rounding of the bound (``SLACK``), so the row returned is the exact
nearest one (ties: lowest index) whatever the thread count, block size or BLAS. Measured on
bottle's 65,072 real test patches (k = 32): 26-63 exact distances per query instead of 7,526,
the same rows as a float64 brute force, ~9 ms instead of ~37 ms per image on one thread (~5 ms of
it the bound's product, whose output alone is 24 MB per image).

Where the bound does not prune (a bank without dominant directions, or KolektorSDD's uniform
backgrounds), a block that needs more than ``DENSE_FRACTION`` of the bank per query and torch
thread sends the rest of the search to the dense product, whose rows are then measured exactly as
well (the dense product's float32 cancellation may then pick another row of a near-tie).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from numba import njit

K = 32  # principal directions in the bound: bottle's test patches need ~120 / 66 / 43 / 22 exact
# distances per query at k = 16 / 24 / 32 / 48, and 32 was fastest (the product grows with k)
SLACK = 1e-4  # relative to ||[p_q, r_q]||^2 + max ||[p_b, r_b]||^2; float32 rounding of the bound is ~1e-6 of that
DENSE_FRACTION = 1 / 16  # per query and torch thread: above this share of the bank the dense product is cheaper
# (the product runs on every torch thread, the scan on one). KolektorSDD, bank 6,507, one image of 1,960 patches:
# ~300 exact distances per query, bound vs dense 45 vs 91 ms on one thread, 40 vs 48 ms on two
LANES = 16  # bank rows per bound group: the group minima are one vectorised pass over the block
_PAD = np.float32(1e37)  # the bound of padding rows: above any real bound, finite (fastmath kernels)
BLOCK_BYTES = 2 << 20  # one block of bounds (queries x bank rows): stays in L2 / L3 between product and scan


@njit(nogil=True, fastmath=True, cache=True)
def _sq_distance(q, b):  # pragma: no cover - compiled
    """||q - b||^2 in float64 (vectorised; the float32 inputs are exact in float64)."""
    s = 0.0
    for t in range(q.shape[0]):
        d = np.float64(q[t]) - np.float64(b[t])
        s += d * d
    return s


@njit(nogil=True, fastmath=True, cache=True)
def _group_minima(row, groups, out):  # pragma: no cover - compiled
    """out[g] = min over lanes of row[lane * groups + g]: LANES contiguous element-wise minima."""
    for g in range(groups):
        out[g] = row[g]
    for lane in range(1, LANES):
        base = lane * groups
        for g in range(groups):
            v = row[base + g]
            out[g] = v if v < out[g] else out[g]


@njit(nogil=True, cache=True)
def _scan(bounds, qsq, slack, queries, bank, order, best_d, best_j, visited, minima):  # pragma: no cover - compiled
    """The exact nearest stored row of each query of one block, given its row of bounds.

    ``bounds[i, j] + qsq[i]`` is the lower bound for query i and stored row j (padding at 1e37),
    bank row ``order[j]``; ties go to the lowest bank index; ``visited[i]`` counts the exact
    distances measured. ``best_j`` gets stored positions.
    """
    groups = bounds.shape[1] // LANES
    guess = -1
    for i in range(bounds.shape[0]):
        row = bounds[i]
        q = queries[i]
        _group_minima(row, groups, minima)
        g_min = 0  # the row of smallest bound: in the group of smallest minimum
        for g in range(1, groups):
            if minima[g] < minima[g_min]:
                g_min = g
        j_min = g_min
        for lane in range(1, LANES):
            j = lane * groups + g_min
            if row[j] < row[j_min]:
                j_min = j
        ub, bj = _sq_distance(q, bank[order[j_min]]), j_min
        n = 1
        if guess >= 0 and guess != j_min:  # the previous query's nearest row: neighbouring patches share it
            d = _sq_distance(q, bank[order[guess]])
            n += 1
            if d < ub or (d == ub and order[guess] < order[bj]):
                ub, bj = d, guess
        first, second = j_min, guess
        lim = ub + slack[i] - qsq[i]
        for g in range(groups):
            if minima[g] <= lim:
                for lane in range(LANES):
                    j = lane * groups + g
                    if row[j] <= lim and j != first and j != second:
                        d = _sq_distance(q, bank[order[j]])
                        n += 1
                        if d < ub or (d == ub and order[j] < order[bj]):
                            ub, bj = d, j
                            lim = ub + slack[i] - qsq[i]
        best_d[i], best_j[i], visited[i] = ub, bj, n
        guess = bj


@njit(nogil=True, cache=True)
def _measure(queries, bank, idx, out):  # pragma: no cover - compiled
    for i in range(queries.shape[0]):
        out[i] = _sq_distance(queries[i], bank[idx[i]])


@dataclass(frozen=True)
class BoundIndex:
    """A float32 bank with its (k + 1)-dim bound coordinates, built once per bank (~50 ms at 7,526 x 152).

    The rows' bound coordinates are stored in groups of LANES rows close together in that space
    (leaves of a median split), group g's at positions ``lane * groups + g``: a query's few
    candidates then fall in a few groups, and a group's minimum bound is one vectorised pass per
    block. The bank itself stays in bank order, shared with the caller's copy.
    """

    bank: np.ndarray  # (M, D) float32, C-contiguous: the rows themselves, in bank order (not copied)
    order: np.ndarray  # (LANES * groups,) int64: the bank row at each stored position, -1 for padding
    mean: np.ndarray  # (D,) float64
    basis: np.ndarray  # (D, k) float64, orthonormal columns
    coords: torch.Tensor  # (LANES * groups, k + 1) float32: stored rows' [p, r], zero padding
    sq: torch.Tensor  # (LANES * groups,) float32: their squared norms, _PAD for padding
    max_sq: float  # largest squared norm of a real row's coordinates (sets the slack)

    @classmethod
    def build(cls, bank: np.ndarray, k: int = K) -> BoundIndex:
        """``bank``: (M, D) float32, C-contiguous, kept by reference (a SearchBank's rows)."""
        if bank.dtype != np.float32 or not bank.flags.c_contiguous:
            raise ValueError("BoundIndex.build takes a C-contiguous float32 bank (it keeps a reference, not a copy)")
        x = bank.astype(np.float64)
        m = x.shape[0]
        mean = x.mean(0)
        x = x - mean
        _, vecs = np.linalg.eigh(x.T @ x)
        basis = np.ascontiguousarray(vecs[:, ::-1][:, :k])  # eigh sorts ascending
        c = _coords(x, basis)
        groups = -(-m // LANES)
        leaves = np.full(groups * LANES, -1, np.int64)
        leaves[:m] = _leaf_order(c)
        order = leaves.reshape(groups, LANES).T.reshape(-1)  # stored position lane * groups + g
        real = order >= 0
        coords = np.zeros((len(order), k + 1), np.float32)
        coords[real] = c[order[real]]
        sq = np.full(len(order), _PAD, np.float32)
        sq[real] = (c * c).sum(1)[order[real]]
        return cls(bank, order, mean, basis, torch.from_numpy(coords), torch.from_numpy(sq), float((c * c).sum(1).max()))

    def search(
        self,
        queries: np.ndarray,
        dense: Callable[[np.ndarray], np.ndarray],
        block_bytes: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(squared distance float64, bank index int64, exact distances measured) per query.

        The bound's product runs on torch's threads; the scan on this thread (splitting it over
        Python threads cost more than it saved on 2 cores: thread starts per block and torch's
        spinning workers). ``dense(queries)`` (nearest bank indices by the dense product) takes
        over when the bound stops pruning.
        """
        q = np.array(queries, dtype=np.float32)  # a copy: non-finite rows are zeroed for the kernels
        n = q.shape[0]
        bad = ~np.isfinite(q).all(1)  # NaN in, NaN out, as the dense product gives
        q[bad] = 0.0
        c = _coords(q.astype(np.float64) - self.mean, self.basis)
        qsq = (c * c).sum(1)
        slack = SLACK * (qsq + self.max_sq)
        qc = torch.from_numpy(c.astype(np.float32))
        d2, pos, visited = np.empty(n), np.empty(n, np.int64), np.zeros(n, np.int64)
        rows = max(8, (block_bytes or BLOCK_BYTES) // (4 * len(self.order)))
        buf = torch.empty(min(rows, n), len(self.order))
        minima = np.empty(len(self.order) // LANES, np.float32)
        limit = DENSE_FRACTION * len(self.bank) / torch.get_num_threads()
        for r0 in range(0, n, rows):
            r1 = min(n, r0 + rows)
            block = torch.addmm(self.sq.unsqueeze(0), qc[r0:r1], self.coords.T, alpha=-2.0, out=buf[: r1 - r0]).numpy()
            _scan(block, qsq[r0:r1], slack[r0:r1], q[r0:r1], self.bank, self.order, d2[r0:r1], pos[r0:r1], visited[r0:r1], minima)
            if visited[r0:r1].mean() > limit and r1 < n:  # the bound does not prune: dense for the rest
                idx = np.empty(n, np.int64)
                idx[:r1] = self.order[pos[:r1]]
                idx[r1:] = dense(q[r1:])
                _measure(q[r1:], self.bank, idx[r1:], d2[r1:])
                visited[r1:] = len(self.bank)
                break
        else:
            idx = self.order[pos]
        d2[bad] = np.nan
        return d2, idx, visited


def _leaf_order(c: np.ndarray) -> np.ndarray:
    """Row indices of ``c`` ordered so that each run of LANES rows is a leaf of a median split
    (on the widest coordinate of each part): rows close together share a group."""
    order = np.arange(len(c))
    parts = [(0, len(c))]
    while parts:
        lo, hi = parts.pop()
        if hi - lo <= LANES:
            continue
        idx = order[lo:hi]
        dim = int(np.argmax(c[idx].var(0)))
        mid = LANES * -(-(hi - lo) // (2 * LANES))  # the lower part a whole number of groups
        order[lo:hi] = idx[np.argpartition(c[idx, dim], mid - 1)]
        parts += [(lo, lo + mid), (lo + mid, hi)]
    return order


def _coords(x: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """[p, r] of centred float64 rows: their principal coordinates and the norm of what is left.

    In torch, not NumPy: NumPy's BLAS keeps its own thread pool, which competes with torch's for
    the same cores (measured: a search step 4x slower with both pools awake on 2 cores)."""
    xt, bt = torch.from_numpy(x), torch.from_numpy(basis)
    p = xt @ bt
    r = ((xt * xt).sum(1) - (p * p).sum(1)).clamp_min_(0.0).sqrt_()
    return torch.cat([p, r[:, None]], dim=1).numpy()


@functools.cache
def load_kernels() -> None:
    """Run every kernel once on a tiny bank: numba loads compiled code from its cache on first call
    (~0.3 s per process; the first compile on a machine, ~3 s, is cached next to this module)."""
    x = np.random.default_rng(0).standard_normal((2 * LANES, 2 * K + 2)).astype(np.float32)
    index = BoundIndex.build(x)
    pos = np.zeros(1, np.int64)
    _measure(x[:1], index.bank, pos, np.empty(1))
    index.search(x[:1], dense=lambda q: pos)

