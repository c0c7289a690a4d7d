"""Pixel-level metrics over all pixels of a set of maps (P-AUROC, P-AP)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from raydist.metrics.image import i_ap, i_auroc


def _flatten(masks: Sequence[np.ndarray] | np.ndarray, maps: Sequence[np.ndarray] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gt = np.concatenate([np.asarray(m).ravel() for m in masks]).astype(bool)
    sc = np.concatenate([np.asarray(s, dtype=np.float32).ravel() for s in maps])
    if gt.shape != sc.shape:
        raise ValueError(f"masks have {gt.size} pixels but maps have {sc.size}")
    return gt, sc


def p_auroc(masks: Sequence[np.ndarray] | np.ndarray, maps: Sequence[np.ndarray] | np.ndarray) -> float:
    gt, sc = _flatten(masks, maps)
    return i_auroc(gt, sc)


def p_ap(masks: Sequence[np.ndarray] | np.ndarray, maps: Sequence[np.ndarray] | np.ndarray) -> float:
    gt, sc = _flatten(masks, maps)
    return i_ap(gt, sc)
