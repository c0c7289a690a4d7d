"""Precision, recall and F1 of binary masks, on anomalous images only (as the TTT4AS paper does).

Two aggregations: the per-image mean (what the paper's tables report; its mean F1 is not the
harmonic mean of its mean P and R) and the pooled value over all pixels of all anomalous images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _prf(tp: float, fp: float, fn: float) -> tuple[float, float, float]:
    # An empty prediction has precision 0 (it found nothing), not NaN: it must count against a method.
    p = tp / (tp + fp) if tp + fp > 0 else 0.0
    r = tp / (tp + fn) if tp + fn > 0 else 0.0
    f = 2 * p * r / (p + r) if p + r > 0 else 0.0
    return p, r, f


def confusion(gt: np.ndarray, pred: np.ndarray) -> tuple[int, int, int]:
    """(tp, fp, fn) of one binary prediction."""
    gt = np.asarray(gt, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    if gt.shape != pred.shape:
        raise ValueError(f"mask shape {gt.shape} != prediction shape {pred.shape}")
    tp = int(np.count_nonzero(gt & pred))
    return tp, int(np.count_nonzero(pred)) - tp, int(np.count_nonzero(gt)) - tp


def prf_from_counts(counts: Sequence[tuple[int, int, int]]) -> dict[str, float]:
    """Per-image mean P/R/F1 and pooled F1 from per-image (tp, fp, fn) of anomalous images."""
    if len(counts) == 0:
        nan = float("nan")
        return {"precision": nan, "recall": nan, "f1": nan, "f1_pooled": nan}
    per = np.array([_prf(*c) for c in counts])
    tot = np.sum(np.asarray(counts, dtype=np.float64), axis=0)
    return {
        "precision": float(per[:, 0].mean()),
        "recall": float(per[:, 1].mean()),
        "f1": float(per[:, 2].mean()),
        "f1_pooled": _prf(*tot)[2],
    }


def mask_prf(masks: Sequence[np.ndarray], preds: Sequence[np.ndarray]) -> dict[str, float]:
    """P/R/F1 over the images whose ground truth has at least one defect pixel."""
    counts = [confusion(g, p) for g, p in zip(masks, preds) if np.any(g)]
    return prf_from_counts(counts)
