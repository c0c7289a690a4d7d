"""Build the ``metrics.json`` report: per class, mean over classes, and pooled over all classes.

Shape (a contract other tools rely on)::

    {"classes": {name: M}, "mean": M, "pooled": M}
    M = {i_auroc, i_ap, p_auroc, p_ap, aupro_30, aupro_1, n_images, n_anomalous, n_errors,
         <binariser>: {precision, recall, f1, f1_pooled, iou, segf1, nominal_marked}, ...,
         image: {precision, recall, f1, nominal_marked}}   (the image-level decision; summaries only)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from raydist.metrics.aupro import aupro
from raydist.metrics.binary import mask_prf
from raydist.metrics.image import i_ap, i_auroc
from raydist.metrics.pixel import p_ap, p_auroc
from raydist.segment.registry import BINARISERS as REGISTRY

BINARISERS = tuple(REGISTRY)  # every binariser a report can hold, in display order
SCORE_METRICS = ("i_auroc", "i_ap", "p_auroc", "p_ap", "aupro_30", "aupro_1")
BINARY_METRICS = ("precision", "recall", "f1", "f1_pooled", "iou", "segf1", "nominal_marked")
DECISION_METRICS = ("precision", "recall", "f1", "nominal_marked")


@dataclass
class EvalRecord:
    """What the metrics need of one evaluated image (all maps at the same resolution)."""

    class_name: str
    label: int
    image_score: float
    score_map: np.ndarray
    gt_mask: np.ndarray
    masks: dict[str, np.ndarray] = field(default_factory=dict)


def compute_block(records: Sequence[EvalRecord], n_errors: int = 0, binarisers: Sequence[str] = ()) -> dict:
    labels = np.array([r.label for r in records], dtype=int)
    scores = np.array([r.image_score for r in records], dtype=np.float64)
    gts = [r.gt_mask for r in records]
    maps = [r.score_map for r in records]
    out: dict = {
        "i_auroc": i_auroc(labels, scores),
        "i_ap": i_ap(labels, scores),
        "p_auroc": p_auroc(gts, maps) if records else float("nan"),
        "p_ap": p_ap(gts, maps) if records else float("nan"),
        "aupro_30": aupro(gts, maps, 0.3) if records else float("nan"),
        "aupro_1": aupro(gts, maps, 0.01) if records else float("nan"),
        "n_images": len(records),
        "n_anomalous": int(labels.sum()),
        "n_errors": int(n_errors),
    }
    for b in binarisers:
        out[b] = mask_prf(gts, [r.masks[b] for r in records])
    return out


def nanmean(values: list[float]) -> float:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(vals)) if vals else float("nan")


def mean_block(blocks: dict[str, dict], binarisers: Sequence[str]) -> dict:
    out: dict = {k: nanmean([b[k] for b in blocks.values()]) for k in SCORE_METRICS}
    for k in ("n_images", "n_anomalous", "n_errors"):
        out[k] = int(sum(b[k] for b in blocks.values()))
    for name in binarisers:
        out[name] = {k: nanmean([b[name][k] for b in blocks.values()]) for k in BINARY_METRICS}
    return out


def build_report(
    records: Sequence[EvalRecord], errors_per_class: dict[str, int] | None = None, binarisers: Sequence[str] = ("thr",)
) -> dict:
    errors_per_class = dict(errors_per_class or {})
    classes = sorted({r.class_name for r in records} | set(errors_per_class))
    blocks = {
        c: compute_block([r for r in records if r.class_name == c], errors_per_class.get(c, 0), binarisers) for c in classes
    }
    return {
        "classes": blocks,
        "mean": mean_block(blocks, binarisers),
        "pooled": compute_block(records, sum(errors_per_class.values()), binarisers),
    }


def to_jsonable(obj):
    """NaN -> None so the file is strict JSON that any dashboard can parse."""
    if isinstance(obj, dict):
        return {k: to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, np.floating | np.integer):
        return to_jsonable(obj.item())
    return obj
