"""Build metrics.json from per-unit summaries: exact image-level metrics, histogram pixel metrics.

Used by the distributed pipeline, where no process ever holds all score maps.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from raydist.metrics.aggregates import PixelAggregate
from raydist.metrics.binary import decision_prf, mask_metrics
from raydist.metrics.image import i_ap, i_auroc
from raydist.metrics.report import (
    BINARY_METRICS,
    DECISION_METRICS,
    SCORE_METRICS,
    nanmean,
    to_jsonable,
)


def _block(images: list[dict], agg: PixelAggregate | None, binarisers: Sequence[str]) -> dict:
    ok = [im for im in images if im["error"] is None]
    labels = np.array([im["label"] for im in ok], dtype=int)
    scores = np.array([im["image_score"] for im in ok], dtype=np.float64)
    out = {
        "i_auroc": i_auroc(labels, scores),
        "i_ap": i_ap(labels, scores),
        "p_auroc": agg.p_auroc() if agg else float("nan"),
        "p_ap": agg.p_ap() if agg else float("nan"),
        "aupro_30": agg.aupro(0.3) if agg else float("nan"),
        "aupro_1": agg.aupro(0.01) if agg else float("nan"),
        "n_images": len(ok),
        "n_anomalous": int(labels.sum()) if len(ok) else 0,
        "n_errors": len(images) - len(ok),
    }
    for b in binarisers:
        counts = [(tuple(im["counts"][b]), im["label"] == 1) for im in ok if b in im["counts"]]
        out[b] = mask_metrics([c for c, a in counts if a], [c for c, a in counts if not a])
    decided = [im for im in ok if im.get("is_anomalous") is not None]
    out["image"] = decision_prf([im["label"] for im in decided], [im["is_anomalous"] for im in decided])
    return out


def report_from_summaries(summaries: Iterable[dict], binarisers: Sequence[str]) -> dict:
    images: dict[str, list[dict]] = {}
    aggs: dict[str, PixelAggregate] = {}
    for s in summaries:
        for im in s["images"]:
            images.setdefault(im["class_name"], []).append(im)
        for cls, d in s["aggregates"].items():
            a = PixelAggregate.from_dict(d)
            aggs[cls] = aggs[cls].merge(a) if cls in aggs else a
    for ims in images.values():  # a fixed order: sums must not depend on how the archive was cut into units
        ims.sort(key=lambda im: im["image_id"])
    classes = {c: _block(images[c], aggs.get(c), binarisers) for c in sorted(images)}
    pooled_agg = None
    for _, a in sorted(aggs.items()):
        pooled_agg = a if pooled_agg is None else pooled_agg.merge(a)
    mean = {k: nanmean([b[k] for b in classes.values()]) for k in SCORE_METRICS}
    for k in ("n_images", "n_anomalous", "n_errors"):
        mean[k] = int(sum(b[k] for b in classes.values()))
    for b in binarisers:
        mean[b] = {k: nanmean([c[b][k] for c in classes.values()]) for k in BINARY_METRICS}
    mean["image"] = {k: nanmean([c["image"][k] for c in classes.values()]) for k in DECISION_METRICS}
    all_images = sorted((im for ims in images.values() for im in ims), key=lambda im: im["image_id"])
    return to_jsonable({"classes": classes, "mean": mean, "pooled": _block(all_images, pooled_agg, binarisers)})
