"""The two evaluation stages over one work unit; both executors call exactly these.

``score_unit`` (GPU-able: backbone + detector) -> list of :class:`Scored`;
``segment_unit`` (CPU: per-image binarisers) -> the unit's result table and its metric summary.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from raydist.config import EvalConfig
from raydist.data.decode import encode_npy, encode_png
from raydist.engine.scoring import Scored, Scorer
from raydist.metrics.aggregates import PixelAggregate
from raydist.metrics.binary import confusion
from raydist.segment.mebin import MEBin
from raydist.segment.ttt4as import TTT4AS
from raydist.timing import StageTimes

RESULT_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("class_name", pa.string()),
        ("label", pa.int8()),
        ("defect_type", pa.string()),
        ("image_score", pa.float64()),
        ("score_map", pa.binary()),  # .npy float32 (H, W) at the evaluation resolution: the map the binarisers saw
        ("mask_thr", pa.binary()),  # PNG 0/255
        ("mask_ttt4as", pa.binary()),  # PNG 0/255
        ("ttt4as_status", pa.string()),
        ("ttt4as_reason", pa.string()),
        ("error", pa.string()),
        ("mask_mebin", pa.binary()),  # PNG 0/255, when --segment has mebin
    ]
)


def batches(rows: Sequence[dict[str, Any]], batch_size: int) -> list[Sequence[dict[str, Any]]]:
    """A unit's rows in scoring batches of ``batch_size`` (bounds the feature memory of a big row group)."""
    return [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]


def score_unit(scorer: Scorer, rows: Sequence[dict[str, Any]], batch_size: int, times: StageTimes | None = None) -> list[Scored]:
    """Score a unit's rows, batch after batch (a Ray scoring actor)."""
    return [s for b in batches(rows, batch_size) for s in scorer.score_rows(b, times)]


def score_and_binarise(scorer: Scorer, rows: Sequence[dict[str, Any]], cfg: EvalConfig) -> tuple[list[Scored], list, StageTimes]:
    """One batch through both stages' per-image work (a local worker thread): its scored images,
    their :func:`binarise_all` output and the stage seconds it took."""
    times = StageTimes()
    scored = scorer.score_rows(rows, times)
    return scored, binarise_all(scored, cfg, times), times


def binarise_all(scored: Sequence[Scored], cfg: EvalConfig, times: StageTimes | None = None) -> list[tuple[dict[str, np.ndarray], dict]]:
    """:func:`binarise` over images, the binarisers built once."""
    ttt4as, mebin = cfg.make_ttt4as(), cfg.make_mebin()
    return [binarise(s, ttt4as, mebin, times) for s in scored]


def binarise(s: Scored, ttt4as: TTT4AS | None, mebin: MEBin | None = None, times: StageTimes | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """The per-image binarisers' masks of one scored image ({} when the row already failed) and
    TTT4AS's info. THR's mask is made at scoring time (it needs only the nominal statistics)."""
    if s.error is not None:
        return {}, {}
    times = times if times is not None else StageTimes()
    masks: dict[str, np.ndarray] = {}
    info: dict = {}
    if ttt4as is not None:
        with times("ttt4as"):
            try:
                masks["ttt4as"], info = ttt4as.fit_predict(s.score_map, s.feature_grids(), s.thr_region)
            except Exception as e:  # a per-image SVM failure must not kill the unit
                info = {"status": "error", "reason": f"{type(e).__name__}: {e}"}
    if mebin is not None:
        with times("mebin"):
            masks["mebin"] = mebin.predict(s.score_map)[0]
    return masks, info


def result_row(s: Scored, masks: dict[str, np.ndarray], info: dict) -> dict[str, Any]:
    ok = s.error is None
    ttt_mask, mebin_mask = masks.get("ttt4as"), masks.get("mebin")
    return {
        "image_id": s.image_id,
        "class_name": s.class_name,
        "label": s.label,
        "defect_type": s.defect_type,
        "image_score": s.image_score if ok else None,
        "score_map": encode_npy(s.score_map.astype(np.float32)) if ok else None,
        "mask_thr": encode_png(s.thr_mask) if ok else None,
        "mask_ttt4as": encode_png(ttt_mask) if ttt_mask is not None else None,
        "ttt4as_status": info.get("status"),
        "ttt4as_reason": info.get("reason"),
        "error": s.error,
        "mask_mebin": encode_png(mebin_mask) if mebin_mask is not None else None,
    }


def segment_unit(uid: str, scored: Sequence[Scored], cfg: EvalConfig, offset: float, times: StageTimes | None = None,
                 binarised: Sequence[tuple[dict[str, np.ndarray], dict]] | None = None) -> tuple[pa.Table, dict[str, Any]]:  # fmt: skip
    """Binarise one unit's images: its result table and its summary (exact per-image counts,
    mergeable per-class pixel histograms): all ``metrics.json`` is ever computed from.
    ``binarised``: the images' :func:`binarise_all` output when already made. Stage seconds are
    added to ``times`` when given."""
    times = times if times is not None else StageTimes()
    binarised = binarised if binarised is not None else binarise_all(scored, cfg, times)
    rows, images = [], []
    aggs: dict[str, PixelAggregate] = {}
    for s, (masks, info) in zip(scored, binarised, strict=True):
        with times("encode"):
            rows.append(result_row(s, masks, info))
        im = {"image_id": s.image_id, "class_name": s.class_name, "label": s.label, "error": s.error, "image_score": s.image_score,
              "counts": {}, **s.extras}  # fmt: skip
        if s.error is None:
            with times("metric_counts"):
                aggs.setdefault(s.class_name, PixelAggregate.universal(offset)).add(s.gt, s.score_map)
                if "thr" in cfg.segment:
                    im["counts"]["thr"] = confusion(s.gt, s.thr_mask)
                for b, m in masks.items():
                    im["counts"][b] = confusion(s.gt, m)
        images.append(im)
    summary = {"unit": uid, "n_rows": len(rows), "images": images, "aggregates": {c: a.to_dict() for c, a in sorted(aggs.items())}}
    return pa.Table.from_pylist(rows, schema=RESULT_SCHEMA), summary
