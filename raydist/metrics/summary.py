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


class ImageTable:
    """The per-image records of many summaries as columns (a million images: ~160 MB, where the
    records as dicts took ~2 GB): image ids, labels, scores, row errors, the image decision
    (-1 = none) and each binariser's (tp, fp, fn) (-1 = not binarised)."""

    def __init__(self, binarisers: Sequence[str]):
        self.binarisers = tuple(binarisers)
        self._chunks: list[tuple] = []

    def add(self, images: list[dict]) -> None:
        if not images:
            return
        ids = [im["image_id"] for im in images]
        label = np.array([im["label"] for im in images], dtype=np.int8)
        score = np.array([np.nan if im["image_score"] is None else im["image_score"] for im in images], dtype=np.float64)
        ok = np.array([im["error"] is None for im in images], dtype=bool)
        decision = np.array([-1 if im.get("is_anomalous") is None else int(im["is_anomalous"]) for im in images], dtype=np.int8)
        counts = {b: np.array([im["counts"].get(b, (-1, -1, -1)) for im in images], dtype=np.int64).reshape(-1, 3) for b in self.binarisers}
        self._chunks.append((ids, label, score, ok, decision, counts))

    @classmethod
    def joined(cls, tables: Iterable[ImageTable], binarisers: Sequence[str]) -> ImageTable:
        """Every table's records in one (the pooled scope; ties in image_id keep the tables' order)."""
        out = cls(binarisers)
        out._chunks = [c for t in tables for c in t._chunks]
        return out

    def columns(self) -> dict[str, np.ndarray]:
        """Every column, rows in image_id order (stable): sums must not depend on how the archive
        was cut into units, nor on the order units finished."""
        ids = np.array([i for c in self._chunks for i in c[0]], dtype=object)
        order = np.argsort(ids, kind="stable")
        cols = {"ids": ids}
        for k, j in (("label", 1), ("score", 2), ("ok", 3), ("decision", 4)):
            cols[k] = np.concatenate([c[j] for c in self._chunks]) if self._chunks else np.zeros(0)
        for b in self.binarisers:
            cols[f"counts.{b}"] = np.concatenate([c[5][b] for c in self._chunks]) if self._chunks else np.zeros((0, 3), np.int64)
        return {k: v[order] for k, v in cols.items()}


def _block(cols: dict[str, np.ndarray], agg: PixelAggregate | None, binarisers: Sequence[str]) -> dict:
    ok = cols["ok"]
    labels = cols["label"][ok].astype(int)
    scores = cols["score"][ok]
    out = {
        "i_auroc": i_auroc(labels, scores),
        "i_ap": i_ap(labels, scores),
        "p_auroc": agg.p_auroc() if agg else float("nan"),
        "p_ap": agg.p_ap() if agg else float("nan"),
        "aupro_30": agg.aupro(0.3) if agg else float("nan"),
        "aupro_1": agg.aupro(0.01) if agg else float("nan"),
        "n_images": int(ok.sum()),
        "n_anomalous": int(labels.sum()) if len(labels) else 0,
        "n_errors": int((~ok).sum()),
    }
    for b in binarisers:
        c = cols[f"counts.{b}"][ok]
        have = c[:, 0] >= 0
        out[b] = mask_metrics(c[have & (labels == 1)], c[have & (labels != 1)])
    decided = cols["decision"][ok] >= 0
    out["image"] = decision_prf(labels[decided], cols["decision"][ok][decided] == 1)
    return out


def report_from_summaries(summaries: Iterable[dict], binarisers: Sequence[str]) -> dict:
    tables: dict[str, ImageTable] = {}
    aggs: dict[str, PixelAggregate] = {}
    for s in summaries:
        by_class: dict[str, list[dict]] = {}
        for im in s["images"]:
            by_class.setdefault(im["class_name"], []).append(im)
        for cls, ims in by_class.items():
            tables.setdefault(cls, ImageTable(binarisers)).add(ims)
        for cls, d in s["aggregates"].items():
            a = PixelAggregate.from_dict(d)
            aggs[cls] = aggs[cls].merge(a) if cls in aggs else a
    cols = {c: t.columns() for c, t in tables.items()}
    classes = {c: _block(cols[c], aggs.get(c), binarisers) for c in sorted(cols)}
    pooled_agg = None
    for _, a in sorted(aggs.items()):
        pooled_agg = a if pooled_agg is None else pooled_agg.merge(a)
    mean = {k: nanmean([b[k] for b in classes.values()]) for k in SCORE_METRICS}
    for k in ("n_images", "n_anomalous", "n_errors"):
        mean[k] = int(sum(b[k] for b in classes.values()))
    for b in binarisers:
        mean[b] = {k: nanmean([c[b][k] for c in classes.values()]) for k in BINARY_METRICS}
    mean["image"] = {k: nanmean([c["image"][k] for c in classes.values()]) for k in DECISION_METRICS}
    pooled = ImageTable.joined(tables.values(), binarisers).columns()
    return to_jsonable({"classes": classes, "mean": mean, "pooled": _block(pooled, pooled_agg, binarisers)})
