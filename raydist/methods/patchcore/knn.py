"""Chunked exact nearest-neighbour distances (the PatchCore bank search), on any torch device.

The (queries x bank) distance matrix is never materialised beyond ``budget_mb``: the bank is
walked in chunks and a running minimum is kept, so memory is bounded for any bank size.

A :class:`SearchBank` is a bank prepared once for one device: on the CPU it is float32 and, when
asked (a scorer's resident bank) and large and wide enough, carries a
:class:`~raydist.methods.patchcore.bound_search.BoundIndex` that finds the same nearest rows while
skipping most of the bank (~4x faster on real features); on an accelerator it is stored as
float16 (half the memory, so twice the classes stay resident) and each chunk is widened to float32
for the matmul, because ``|q|^2 + |b|^2 - 2 q.b`` cancels catastrophically in float16.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from raydist.methods.patchcore.bound_search import BoundIndex

CPU_BLOCK_MB = 16.0  # one distance block on the CPU: cache-sized (see nearest_distances)
BOUND_MIN_ROWS = 1024  # smaller banks: the dense product is already cheap (and the index costs its build)
BOUND_MIN_WIDTH = 65  # the bound keeps 32 principal directions: narrower features gain too little


@dataclass(frozen=True)
class SearchBank:
    """A bank resident on ``rows.device`` with its float32 squared norms.

    ``dtype=torch.bfloat16`` (the ``bf16`` bank search): the bank is centred on its mean (distances
    do not change, the products shrink) and searched in bfloat16, ~3x the float32 matmul rate on
    CPUs with AVX512-BF16 or AMX; the nearest row found is then re-ranked in float32 against
    ``exact``, so a distance is exact whenever the bfloat16 search found the true neighbour and
    otherwise that of a row within bfloat16's rounding of it (recall and AUROC change measured by
    benchmarks/vs_anomalib.py).
    """

    rows: torch.Tensor  # (M, D), float32 on the CPU, float16 on accelerators (or as asked)
    sq: torch.Tensor  # (M,) float32 (bfloat16 for a bfloat16 search)
    exact: torch.Tensor | None = None  # (M, D) centred float32 rows, for re-ranking a bfloat16 search
    centre: torch.Tensor | None = None  # (D,) subtracted from bank and queries before a bfloat16 search
    bound: BoundIndex | None = None  # asked for, float32 on the CPU, >= BOUND_MIN_ROWS x BOUND_MIN_WIDTH

    @classmethod
    def build(cls, bank: np.ndarray | torch.Tensor, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
              index: bool = False) -> SearchBank:  # fmt: skip
        """``index``: build the bound index where it applies. It pays for a bank searched many times
        (a scorer's: ~50 ms to build at 7,526 x 152, the compiled kernels ~0.3 s and ~190 MB of RSS
        once per process); a one-off search (fit's validation maps, coverage) is cheaper dense."""
        device = torch.device(device)
        dtype = dtype or (torch.float32 if device.type == "cpu" else torch.float16)
        b32 = torch.as_tensor(bank).to(device=device, dtype=torch.float32)
        if dtype == torch.bfloat16:
            centre = b32.mean(0)
            exact = b32 - centre
            return cls(exact.to(dtype), (exact * exact).sum(1).to(dtype), exact, centre)
        rows = b32 if dtype == torch.float32 else b32.to(dtype)
        sq = (b32 * b32).sum(1) if dtype == torch.float32 else (rows.float() ** 2).sum(1)  # the norms of what is stored
        bound = None
        if index and device.type == "cpu" and dtype == torch.float32 and rows.shape[0] >= BOUND_MIN_ROWS and rows.shape[1] >= BOUND_MIN_WIDTH:
            # numba is imported only where an index is built
            from raydist.methods.patchcore.bound_search import BoundIndex

            bound = BoundIndex.build(rows.numpy())
        return cls(rows, sq, bound=bound)

    @property
    def device(self) -> torch.device:
        return self.rows.device

    @property
    def nbytes(self) -> int:
        extra = (self.bound.coords, self.bound.sq) if self.bound is not None else ()
        return sum(t.element_size() * t.nelement() for t in (self.rows, self.sq, self.exact, self.centre, *extra) if t is not None)


def warm_up_search(device: torch.device) -> None:
    """Load the bound index's compiled kernels where a scorer will build indexes (the CPU): ~0.3 s
    once per process, and numba is imported only then."""
    if device.type == "cpu":
        from raydist.methods.patchcore.bound_search import load_kernels

        load_kernels()


def nearest_distances(
    queries: np.ndarray | torch.Tensor,
    bank: np.ndarray | torch.Tensor | SearchBank,
    budget_mb: float | None = None,
    return_index: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Euclidean distance from each query row to its nearest bank row.

    ``bank`` may be a :class:`SearchBank` (a scorer reuses one for many images): the search then
    runs on its device and only the distances come back to the host. ``budget_mb`` bounds one
    distance block; by default 16 MB on the CPU, where a block that stays in cache is searched
    ~1.7x faster than one of 256 MB (bottle bank 7,526 x 152, 8 images: 23.6 -> 13.8 ms per
    image, same distances), and 256 MB on accelerators; 2 MB for a block of bounds.

    A bank with a bound index (see :class:`SearchBank`) returns the exact nearest row and its
    distance from a float64 sum; the dense product's distances differ from those by its float32
    cancellation (~5e-4 on bottle's distances of ~3-10).
    """
    sb = bank if isinstance(bank, SearchBank) else SearchBank.build(bank, "cpu")
    bound_block = None if budget_mb is None else int(budget_mb * 2**20)
    if budget_mb is None:
        budget_mb = CPU_BLOCK_MB if sb.device.type == "cpu" else 256.0
    q = torch.as_tensor(queries).to(device=sb.device, dtype=torch.float32)
    b, bsq = sb.rows, sb.sq
    if q.ndim != 2 or b.ndim != 2 or q.shape[1] != b.shape[1]:
        raise ValueError(f"queries {tuple(q.shape)} and bank {tuple(b.shape)} must be 2-D with equal width")
    if sb.exact is not None:
        return _bf16_nearest(q, sb, budget_mb, return_index)
    if sb.bound is not None:
        dense = functools.partial(_dense_index, sb=SearchBank(sb.rows, sb.sq), budget_mb=budget_mb)
        d2, idx, _ = sb.bound.search(q.numpy(), dense, block_bytes=bound_block)
        dist = np.sqrt(d2).astype(np.float32)
        return (dist, idx) if return_index else dist
    nq, nb = q.shape[0], b.shape[0]
    row, col = _blocks(nq, nb, budget_mb)  # split over queries too when one bank chunk is big
    qsq = (q * q).sum(1)
    best = torch.full((nq,), float("inf"), device=sb.device)
    arg = torch.zeros(nq, dtype=torch.long, device=sb.device)
    for r0 in range(0, nq, row):
        qs = q[r0 : r0 + row]
        best_r = best[r0 : r0 + row]
        arg_r = arg[r0 : r0 + row]
        for c0 in range(0, nb, col):
            chunk = b[c0 : c0 + col].float()  # a no-op for a float32 bank
            d = torch.addmm(bsq[c0 : c0 + col].unsqueeze(0), qs, chunk.T, alpha=-2.0)
            if not return_index:  # cheaper: no arg bookkeeping; the query norm is added once at the end
                torch.minimum(best_r, d.min(dim=1).values, out=best_r)
                continue
            d.add_(qsq[r0 : r0 + row].unsqueeze(1))
            m, a = d.min(dim=1)
            upd = m < best_r
            best_r[upd] = m[upd]
            arg_r[upd] = a[upd] + c0
    if not return_index:
        best.add_(qsq)
    dist = best.clamp_min_(0).sqrt_().cpu().numpy()
    return (dist, arg.cpu().numpy()) if return_index else dist


def _dense_index(q: np.ndarray, sb: SearchBank, budget_mb: float) -> np.ndarray:
    return nearest_distances(q, sb, budget_mb=budget_mb, return_index=True)[1]


def _blocks(nq: int, nb: int, budget_mb: float, itemsize: int = 4) -> tuple[int, int]:
    """(query rows, bank columns) of one distance block within ``budget_mb``."""
    max_elems = max(1, int(budget_mb * 2**20 / itemsize))
    col = max(1, min(nb, max_elems // max(1, min(nq, 4096))))
    return max(1, min(nq, max_elems // col)), col


def _bf16_nearest(q: torch.Tensor, sb: SearchBank, budget_mb: float, return_index: bool) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """The bfloat16 search of :class:`SearchBank`: the nearest row in bfloat16, its distance in float32."""
    qc = q - sb.centre
    qb = qc.to(torch.bfloat16)
    nq, nb = q.shape[0], sb.rows.shape[0]
    row, col = _blocks(nq, nb, budget_mb, itemsize=2)
    best = torch.full((nq,), float("inf"), device=sb.device)
    arg = torch.zeros(nq, dtype=torch.long, device=sb.device)
    for r0 in range(0, nq, row):
        best_r, arg_r = best[r0 : r0 + row], arg[r0 : r0 + row]
        for c0 in range(0, nb, col):
            m, a = torch.addmm(sb.sq[c0 : c0 + col].unsqueeze(0), qb[r0 : r0 + row], sb.rows[c0 : c0 + col].T, alpha=-2.0).min(dim=1)
            m = m.float()
            upd = m < best_r
            best_r[upd] = m[upd]
            arg_r[upd] = a[upd] + c0
    dist = (qc - sb.exact[arg]).square_().sum(1).sqrt_().cpu().numpy()
    return (dist, arg.cpu().numpy()) if return_index else dist
