"""Chunked exact nearest-neighbour distances (the PatchCore bank search).

The (queries x bank) distance matrix is never materialised beyond ``budget_mb``: the bank is
walked in chunks and a running minimum is kept, so memory is bounded for any bank size.
"""

from __future__ import annotations

import numpy as np
import torch


def nearest_distances(
    queries: np.ndarray | torch.Tensor,
    bank: np.ndarray | torch.Tensor,
    budget_mb: float = 256.0,
    return_index: bool = False,
    bank_sq: torch.Tensor | None = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Euclidean distance from each query row to its nearest bank row (float32 arithmetic).

    Pass a float32 ``bank`` and its precomputed squared norms ``bank_sq`` to skip the per-call
    conversion (a scorer reuses one bank for many images).
    """
    q = torch.as_tensor(queries).float()
    b = torch.as_tensor(bank).float()
    if q.ndim != 2 or b.ndim != 2 or q.shape[1] != b.shape[1]:
        raise ValueError(f"queries {tuple(q.shape)} and bank {tuple(b.shape)} must be 2-D with equal width")
    nq, nb = q.shape[0], b.shape[0]
    # rows x cols float32 within the budget; split over queries too when one bank chunk is big
    max_elems = max(1, int(budget_mb * 2**20 / 4))
    col = max(1, min(nb, max_elems // max(1, min(nq, 4096))))
    row = max(1, min(nq, max_elems // col))
    qsq = (q * q).sum(1)
    bsq = bank_sq if bank_sq is not None else (b * b).sum(1)
    best = torch.full((nq,), float("inf"))
    arg = torch.zeros(nq, dtype=torch.long)
    for r0 in range(0, nq, row):
        qs = q[r0 : r0 + row]
        best_r = best[r0 : r0 + row]
        arg_r = arg[r0 : r0 + row]
        for c0 in range(0, nb, col):
            d = torch.addmm(bsq[c0 : c0 + col].unsqueeze(0), qs, b[c0 : c0 + col].T, alpha=-2.0)
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
    dist = best.clamp_min_(0).sqrt_().numpy()
    return (dist, arg.numpy()) if return_index else dist
