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
from raydist.contracts import Scored
from raydist.data.decode import encode_npy, encode_png
from raydist.engine.scoring import Scorer
from raydist.metrics.aggregates import PixelAggregate
from raydist.metrics.binary import confusion
from raydist.segment.base import Binariser
from raydist.segment.registry import BINARISERS
from raydist.timing import StageTimes


def _result_schema() -> pa.Schema:
    """One row per image: its identity and score, then each registered binariser's mask (PNG 0/255,
    null when not asked for) and info columns, then the row's error."""
    cols = [
        ("image_id", pa.string()),
        ("class_name", pa.string()),
        ("label", pa.int8()),
        ("defect_type", pa.string()),
        ("image_score", pa.float64()),
        ("is_anomalous", pa.bool_()),  # the image-level decision: score above the unit's image threshold (null: none calibrated)
        ("score_map", pa.binary()),  # .npy float32 (H, W) at the evaluation resolution: the map the binarisers saw
    ]
    for name, b in BINARISERS.items():
        cols += [(f"mask_{name}", pa.binary())] + [(f"{name}_{c}", pa.string()) for c in b.info_columns]
    return pa.schema([*cols, ("error", pa.string())])


RESULT_SCHEMA = _result_schema()
Binarised = tuple[dict[str, np.ndarray], dict[str, dict]]  # one image: masks and info dicts, by binariser name


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


def binarise_all(scored: Sequence[Scored], cfg: EvalConfig, times: StageTimes | None = None) -> list[Binarised]:
    """:func:`binarise` over images, the configured binarisers built once."""
    binarisers = cfg.binarisers()
    return [binarise(s, binarisers, times, cfg.gate) for s in scored]


GATED = {"status": "nominal", "reason": "image score not above the image threshold"}


def binarise(s: Scored, binarisers: Sequence[Binariser], times: StageTimes | None = None, gate: bool = False) -> Binarised:
    """Each binariser's mask and info for one scored image (nothing when the row already failed).
    With ``gate``, an image judged nominal gets an empty mask from every binariser, none of which
    runs. A binariser that reports a status (an info column) and fails on one image records the
    error there and gives no mask; the others' failures are the unit's, as a bug should be."""
    if s.error is not None:
        return {}, {}
    if gate and s.is_anomalous is False:
        empty = np.zeros(s.score_map.shape, bool)
        return {b.name: empty for b in binarisers}, {b.name: {c: GATED.get(c) for c in b.info_columns} for b in binarisers}
    times = times if times is not None else StageTimes()
    masks: dict[str, np.ndarray] = {}
    info: dict[str, dict] = {}
    for b in binarisers:
        with times(b.name):
            try:
                masks[b.name], info[b.name] = b.binarise(s)
            except Exception as e:
                if "status" not in b.info_columns:
                    raise
                info[b.name] = {"status": "error", "reason": f"{type(e).__name__}: {e}"}
    return masks, info


def result_row(s: Scored, masks: dict[str, np.ndarray], info: dict[str, dict]) -> dict[str, Any]:
    ok = s.error is None
    row = {
        "image_id": s.image_id,
        "class_name": s.class_name,
        "label": s.label,
        "defect_type": s.defect_type,
        "image_score": s.image_score if ok else None,
        "is_anomalous": s.is_anomalous if ok else None,
        "score_map": encode_npy(s.score_map.astype(np.float32)) if ok else None,
    }
    for name, b in BINARISERS.items():
        row[f"mask_{name}"] = encode_png(masks[name]) if name in masks else None
        row.update({f"{name}_{c}": info.get(name, {}).get(c) for c in b.info_columns})
    row["error"] = s.error
    return row


def segment_unit(uid: str, scored: Sequence[Scored], cfg: EvalConfig, offset: float, times: StageTimes | None = None,
                 binarised: Sequence[Binarised] | None = None) -> tuple[pa.Table, dict[str, Any]]:  # fmt: skip
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
              "is_anomalous": s.is_anomalous, "counts": {}, **s.extras}  # fmt: skip
        if s.error is None:
            with times("metric_counts"):
                aggs.setdefault(s.class_name, PixelAggregate.universal(offset)).add(s.gt, s.score_map)
                for b, m in masks.items():
                    im["counts"][b] = confusion(s.gt, m)
        images.append(im)
    summary = {"unit": uid, "n_rows": len(rows), "images": images, "aggregates": {c: a.to_dict() for c, a in sorted(aggs.items())}}
    return pa.Table.from_pylist(rows, schema=RESULT_SCHEMA), summary
