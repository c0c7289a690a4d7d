"""Image-level detection metrics (I-AUROC, I-AP). scikit-learn is imported where it is used:
a scorer reaches its first image without paying for it (docs/performance.md, Start-up)."""

from __future__ import annotations

import numpy as np


def _both_classes(labels: np.ndarray) -> bool:
    return labels.size > 0 and labels.min() != labels.max()


def i_auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve of image scores; NaN when only one class is present."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels).astype(int).ravel()
    return float(roc_auc_score(labels, np.asarray(scores, dtype=np.float64).ravel())) if _both_classes(labels) else float("nan")


def i_ap(labels: np.ndarray, scores: np.ndarray) -> float:
    """Average precision of image scores (anomalous = positive); NaN without both classes."""
    from sklearn.metrics import average_precision_score

    labels = np.asarray(labels).astype(int).ravel()
    return (
        float(average_precision_score(labels, np.asarray(scores, dtype=np.float64).ravel()))
        if _both_classes(labels)
        else float("nan")
    )
