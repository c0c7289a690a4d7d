"""Score a test split once, then binarise it under many settings: the fidelity harness's core.

Score maps and feature grids are computed once per fitted model (the expensive part); every
binariser setting of a sweep reuses them, so an ablation grid costs only the binarisers' time.
Used by ``benchmarks/fidelity.py`` and by the real-data tests.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from raydist.contracts import Scored
from raydist.data.dataset import iter_batches
from raydist.engine.scoring import Scorer
from raydist.engine.stages import binarise
from raydist.metrics.aupro import aupro
from raydist.metrics.binary import confusion, decision_prf, mask_metrics, prf_from_counts
from raydist.metrics.image import i_auroc
from raydist.metrics.pixel import p_auroc
from raydist.segment.base import Binariser
from raydist.segment.mebin import MEBin
from raydist.segment.relative import Relative
from raydist.segment.ttt4as import TTT4AS

REL_LEVELS = tuple(round(0.3 + 0.05 * i, 2) for i in range(14))  # 0.30 .. 0.95: the fixed levels the oracle picks from


@dataclass
class ScoredSplit:
    """One category's test split, scored once (features kept as float16, as the engine hands them on)."""

    category: str
    images: list[Scored]
    score_ms: float  # scoring time per image, batch 1 (decode + features + search + post)

    @property
    def anomalous(self) -> list[Scored]:
        return [s for s in self.images if s.error is None and s.gt is not None and s.gt.any()]


def score_split(
    data_uri: str, model_uri: str, category: str, classes: Sequence[str] | None = None, anomalous_only: bool = False
) -> ScoredSplit:
    """Score the test rows of ``data_uri`` one image at a time (batch 1, as the speed target says).

    ``anomalous_only`` skips nominal rows: enough for the binarisers' F1 (measured on anomalous
    images only), not for I-AUROC.
    """
    scorer = Scorer(model_uri)
    images: list[Scored] = []
    spent: list[float] = []
    for batch in iter_batches(data_uri, classes, ["test"], scorer.columns, 1):
        rows = [r for r in batch.to_pylist() if not anomalous_only or r["label"] == 1]
        if not rows:
            continue
        t = time.perf_counter()
        images += scorer.score_rows(rows)
        spent.append(time.perf_counter() - t)
    # the first image pays one-off costs (bank load, warm-up): kept out of the per-image time
    return ScoredSplit(category, images, 1000 * float(np.mean(spent[1:] if len(spent) > 1 else spent)))


def score_metrics(split: ScoredSplit) -> dict[str, float]:
    ok = [s for s in split.images if s.error is None]
    labels = np.array([s.label for s in ok])
    return {
        "i_auroc": i_auroc(labels, np.array([s.image_score for s in ok])),
        "p_auroc": p_auroc([s.gt for s in ok], [s.score_map for s in ok]),
        "aupro_30": aupro([s.gt for s in ok], [s.score_map for s in ok], 0.3),
    }


def binary_block(gts: Sequence[np.ndarray], preds: Sequence[np.ndarray]) -> dict[str, float]:
    """P/R/F1 (per-image mean and pooled), mask areas, and F1 by defect-size tercile."""
    counts = [confusion(g, p) for g, p in zip(gts, preds)]
    out = prf_from_counts(counts)
    areas = np.array([g.sum() for g in gts])
    f1 = np.array([2 * tp / max(2 * tp + fp + fn, 1) for tp, fp, fn in counts])
    edges = np.quantile(areas, [1 / 3, 2 / 3])
    tercile = np.digitize(areas, edges)
    for t, name in enumerate(("small", "medium", "large")):
        sel = tercile == t
        out[f"f1_{name}"] = float(f1[sel].mean()) if sel.any() else float("nan")
    out["area_pred"] = float(np.mean([p.sum() for p in preds]))
    out["area_true"] = float(areas.mean())
    return out


def thr_block(split: ScoredSplit) -> dict[str, float]:
    an = split.anomalous
    return binary_block([s.gt for s in an], [s.thr_mask for s in an])


def _timed_block(split: ScoredSplit, binarise: Callable[[Scored], np.ndarray]) -> dict[str, float]:
    """``binarise`` on every anomalous image of the split: metrics plus its time per image."""
    an = split.anomalous
    preds, spent = [], 0.0
    for s in an:
        t = time.perf_counter()
        preds.append(binarise(s))
        spent += time.perf_counter() - t
    out = binary_block([s.gt for s in an], preds)
    out["ms"] = 1000 * spent / max(len(an), 1)
    out["share"] = out["ms"] / split.score_ms
    return out


def mebin_block(split: ScoredSplit, params: dict[str, Any] | None = None) -> dict[str, float]:
    """MEBin (per image) on every anomalous image of the split, with its time per image."""
    mb = MEBin(**(params or {}))
    return _timed_block(split, lambda s: mb.predict(s.score_map)[0])


def ttt4as_block(split: ScoredSplit, params: dict[str, Any]) -> dict[str, float]:
    """TTT4AS with ``params`` on every anomalous image of the split, with its time per image."""
    tt = TTT4AS(**params)
    return _timed_block(split, lambda s: tt.fit_predict(s.score_map, s.feature_grids(), s.thr_region)[0])


def binariser_block(split: ScoredSplit, binariser: Binariser, gate: bool = True) -> dict[str, float]:
    """``binariser`` on every image of the split, as the engine runs it (:func:`~raydist.engine.stages.binarise`;
    ``gate``: an image judged nominal gets an empty mask): every mask metric over all images
    (F1, IoU on anomalous ones; SegF1, nominal_marked over all) and its time per image."""
    counts: dict[bool, list] = {True: [], False: []}
    spent = 0.0
    for s in split.images:
        if s.error is not None:
            continue
        t = time.perf_counter()
        masks, _ = binarise(s, [binariser], gate=gate)
        spent += time.perf_counter() - t
        counts[s.label == 1].append(confusion(s.gt, masks[binariser.name]))
    out = mask_metrics(counts[True], counts[False])
    out["ms"] = 1000 * spent / max(len(counts[True]) + len(counts[False]), 1)
    out["share"] = out["ms"] / split.score_ms
    return out


def rel_oracle(split: ScoredSplit, gate: bool = True) -> tuple[float, dict[str, float]]:
    """The fixed REL level with the best F1 on this split (picked with its ground truth, which no
    user has: a per-category tuning no rule can get for free), and its block."""
    blocks = {lv: binariser_block(split, Relative(level=lv), gate) for lv in REL_LEVELS}
    best = max(blocks, key=lambda lv: blocks[lv]["f1"])
    return best, blocks[best]


def image_decision(split: ScoredSplit) -> dict[str, float]:
    """The image-level decision on this split, as metrics.json scores it: precision, recall on
    anomalous images, F1, share of nominal ones marked."""
    ok = [s for s in split.images if s.error is None and s.is_anomalous is not None]
    return decision_prf([s.label for s in ok], [s.is_anomalous for s in ok])


def parse_sweep(items: Iterable[str]) -> list[dict[str, Any]]:
    """``["radius=2,8", "feature_scale=raw,norm"]`` -> the cartesian grid of TTT4AS overrides."""
    axes: list[tuple[str, list[Any]]] = []
    for item in items:
        name, _, values = item.partition("=")
        axes.append((name.strip().replace("-", "_"), [_value(v) for v in values.split(",") if v]))
    return [dict(zip([a for a, _ in axes], combo)) for combo in itertools.product(*[v for _, v in axes])]


def _value(v: str) -> Any:
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return {"none": None, "true": True, "false": False}.get(v.lower(), v)
