"""AUPRO as MVTec's evaluation defines it.

PRO at a threshold = mean, over every connected component of the ground truth (of all images),
of the fraction of that component's pixels above the threshold. The PRO curve is plotted against
the false-positive rate over all nominal pixels, integrated up to ``fpr_limit`` and divided by it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

_STRUCTURE = np.ones((3, 3), dtype=int)  # 8-connectivity, as MVTec's reference code uses


def pro_curve(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Exact (fpr, pro) at every distinct score, from one sort of all pixels.

    Each nominal pixel adds ``1 / n_nominal`` to the FPR when the threshold passes it; each pixel
    of component ``r`` adds ``1 / (|r| * n_components)`` to the PRO. Cumulative sums over the
    descending scores then give both curves exactly, without a loop over thresholds.
    """
    weights_fp, scores = [], []
    n_components = 0
    n_nominal = 0
    comp_weights = []
    for gt, sc in zip(masks, maps):
        gt = np.asarray(gt, dtype=bool)
        sc = np.asarray(sc, dtype=np.float64)
        if gt.shape != sc.shape:
            raise ValueError(f"mask shape {gt.shape} != map shape {sc.shape}")
        labels, n = ndimage.label(gt, structure=_STRUCTURE)
        sizes = np.bincount(labels.ravel(), minlength=n + 1).astype(np.float64)
        w = np.zeros(gt.size)
        flat = labels.ravel()
        w[flat > 0] = 1.0 / sizes[flat[flat > 0]]
        comp_weights.append(w)
        weights_fp.append((~gt).ravel().astype(np.float64))
        scores.append(sc.ravel())
        n_components += n
        n_nominal += int((~gt).sum())
    if n_components == 0 or n_nominal == 0:
        return np.array([0.0, 1.0]), np.array([np.nan, np.nan])
    scores_all = np.concatenate(scores)
    fp = np.concatenate(weights_fp) / n_nominal
    pro = np.concatenate(comp_weights) / n_components
    order = np.argsort(-scores_all, kind="stable")
    s_sorted = scores_all[order]
    fpr = np.cumsum(fp[order])
    prc = np.cumsum(pro[order])
    # keep the last index of each run of equal scores: a threshold cannot split ties
    last = np.r_[np.nonzero(np.diff(s_sorted))[0], s_sorted.size - 1]
    fpr = np.r_[0.0, fpr[last]]
    prc = np.r_[0.0, prc[last]]
    return fpr, prc


def aupro(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray], fpr_limit: float = 0.3) -> float:
    """Normalised area under the PRO curve for FPR in [0, fpr_limit]; NaN without defects."""
    if not 0 < fpr_limit <= 1:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    fpr, pro = pro_curve(masks, maps)
    if np.isnan(pro).any():
        return float("nan")
    # clip the curve at the limit, interpolating the PRO value there
    pro_at_limit = float(np.interp(fpr_limit, fpr, pro))
    keep = fpr <= fpr_limit
    x = np.r_[fpr[keep], fpr_limit]
    y = np.r_[pro[keep], pro_at_limit]
    return float(np.trapezoid(y, x) / fpr_limit)
