"""Quality of binary masks, from each image's (tp, fp, fn).

On anomalous images (as the TTT4AS paper does): precision, recall and F1 as the per-image mean
(what the paper's tables report; its mean F1 is not the harmonic mean of its mean P and R), F1
pooled over their pixels, and the mean IoU. Over every image, nominal ones included, what a user
of an archive that is mostly good parts sees: ``segf1``, F1 of all pixels of all test images
pooled (MVTec AD 2's threshold-dependent metric: a mask on a good part costs its false positives),
and ``nominal_marked``, the share of nominal images given a non-empty mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _prf(tp: float, fp: float, fn: float) -> tuple[float, float, float]:
    """Precision, recall and F1 of one (tp, fp, fn): :func:`_prf_arrays` on one row."""
    p, r, f = _prf_arrays(np.array([[tp, fp, fn]], dtype=np.float64))
    return float(p[0]), float(r[0]), float(f[0])


def confusion(gt: np.ndarray, pred: np.ndarray) -> tuple[int, int, int]:
    """(tp, fp, fn) of one binary prediction."""
    gt = np.asarray(gt, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    if gt.shape != pred.shape:
        raise ValueError(f"mask shape {gt.shape} != prediction shape {pred.shape}")
    tp = int(np.count_nonzero(gt & pred))
    return tp, int(np.count_nonzero(pred)) - tp, int(np.count_nonzero(gt)) - tp


def prf_from_counts(counts: Sequence[tuple[int, int, int]] | np.ndarray) -> dict[str, float]:
    """Per-image mean P/R/F1 and pooled F1 from per-image (tp, fp, fn) of anomalous images."""
    c = np.asarray(counts, dtype=np.float64).reshape(-1, 3)
    if len(c) == 0:
        nan = float("nan")
        return {"precision": nan, "recall": nan, "f1": nan, "f1_pooled": nan}
    p, r, f = _prf_arrays(c)
    return {"precision": float(p.mean()), "recall": float(r.mean()), "f1": float(f.mean()), "f1_pooled": _prf(*c.sum(axis=0))[2]}


def _prf_arrays(c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and F1 of each (tp, fp, fn) row of an (n, 3) array. An empty prediction
    has precision 0 (it found nothing), not NaN: it must count against a method."""
    tp, fp, fn = c[:, 0], c[:, 1], c[:, 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        r = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        f = np.where(p + r > 0, 2 * p * r / (p + r), 0.0)
    return p, r, f


def mask_metrics(anomalous: Sequence[tuple[int, int, int]] | np.ndarray, nominal: Sequence[tuple[int, int, int]] | np.ndarray) -> dict[str, float]:
    """Every mask metric (module docstring) from the (tp, fp, fn) of anomalous and of nominal images."""
    a, n = (np.asarray(x, dtype=np.float64).reshape(-1, 3) for x in (anomalous, nominal))
    out = prf_from_counts(a)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(a.sum(axis=1) > 0, a[:, 0] / a.sum(axis=1), 0.0)
    out["iou"] = float(iou.mean()) if len(a) else float("nan")
    every = np.concatenate([a, n])
    out["segf1"] = _prf(*every.sum(axis=0))[2] if len(every) else float("nan")
    out["nominal_marked"] = float(np.mean(n[:, 0] + n[:, 1] > 0)) if len(n) else float("nan")
    return out


def decision_prf(labels: Sequence[int], decided: Sequence[bool]) -> dict[str, float]:
    """Precision, recall and F1 of an image-level decision, and the share of nominal images it marks."""
    y, d = np.asarray(labels, dtype=int) == 1, np.asarray(decided, dtype=bool)
    if y.size == 0:
        nan = float("nan")
        return {"precision": nan, "recall": nan, "f1": nan, "nominal_marked": nan}
    tp = float(np.sum(y & d))
    p, r, f = _prf(tp, float(np.sum(~y & d)), float(np.sum(y & ~d)))
    return {"precision": p, "recall": r, "f1": f, "nominal_marked": float(d[~y].mean()) if (~y).any() else float("nan")}


def mask_prf(masks: Sequence[np.ndarray], preds: Sequence[np.ndarray]) -> dict[str, float]:
    """Every mask metric from ground truths and predictions (an image with a defect pixel is anomalous)."""
    counts = [(confusion(g, p), bool(np.any(g))) for g, p in zip(masks, preds)]
    return mask_metrics([c for c, a in counts if a], [c for c, a in counts if not a])
