"""metrics.json from 10^4 images' unit summaries: equal to the metrics computed directly from the
records, whatever order the units are read in, and fast (benchmarks/bench_archive.py measures up
to 10^6: 14 s locally for 15,700 summaries, 0.15 s at 10^4 on this 2-core machine)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from raydist.engine import results
from raydist.metrics.aggregates import PixelAggregate
from raydist.metrics.binary import decision_prf, mask_metrics

N, UNIT, CLASSES, BINS = 10_000, 64, ("a", "b", "c"), ("thr", "ttt4as")


def simulated(rng: np.random.Generator) -> list[dict]:
    """Per-image records as segment_unit writes them: labels, scores, errors, decisions, counts."""
    out = []
    for i in range(N):
        label = int(rng.random() < 0.3)
        error = "corrupt_image: x" if rng.random() < 0.01 else None
        counts = {b: [int(v) for v in rng.integers(0, 50, 3)] for b in BINS if rng.random() < 0.98}
        if label == 0:
            counts = {b: [0, c[1] if rng.random() < 0.3 else 0, 0] for b, c in counts.items()}
        out.append({"image_id": f"{CLASSES[i % 3]}/test/x/{rng.integers(1e9):09d}-{i}", "class_name": CLASSES[i % 3], "label": label,
                    "error": error, "image_score": None if error else float(rng.normal(label, 1.0)),
                    "is_anomalous": None if error else bool(rng.random() < 0.5), "counts": {} if error else counts})  # fmt: skip
    return out


def direct(images: list[dict]) -> dict:
    """The exact metrics of a set of records, straight from them (image_id order, as documented)."""
    ok = sorted((im for im in images if im["error"] is None), key=lambda im: im["image_id"])
    lab = np.array([im["label"] for im in ok])
    out = {"i_auroc": roc_auc_score(lab, [im["image_score"] for im in ok]), "n_images": len(ok), "n_errors": len(images) - len(ok)}
    for b in BINS:
        have = [im for im in ok if b in im["counts"]]
        out[b] = mask_metrics([im["counts"][b] for im in have if im["label"] == 1], [im["counts"][b] for im in have if im["label"] == 0])
    out["image"] = decision_prf(lab, [im["is_anomalous"] for im in ok])
    return out


def test_metrics_from_10k_summaries_equal_the_direct_computation(tmp_path):
    rng = np.random.default_rng(0)
    images = simulated(rng)
    agg = PixelAggregate.universal().to_dict()
    units = [images[i : i + UNIT] for i in range(0, N, UNIT)]
    order = rng.permutation(len(units))  # unit ids unrelated to the archive's order
    for k, j in enumerate(order):
        uid = f"{k:016x}"
        summary = {"unit": uid, "n_rows": len(units[j]), "images": units[j], "aggregates": {c: agg for c in CLASSES}}
        (tmp_path / "_parts").mkdir(exist_ok=True)
        (tmp_path / "_parts" / f"{uid}.json").write_text(json.dumps(summary))
    t = time.perf_counter()
    report = results.metrics_from_results(str(tmp_path), list(BINS))
    spent = time.perf_counter() - t
    print(f"metrics from {len(units)} summaries ({N} images): {spent:.2f} s")
    assert spent < 15  # measured 0.15-0.3 s; the bound is for a regression to per-image Python work on a busy machine
    for scope, want in [("pooled", direct(images))] + [(c, direct([im for im in images if im["class_name"] == c])) for c in CLASSES]:
        got = report["pooled"] if scope == "pooled" else report["classes"][scope]
        assert got["n_images"] == want["n_images"] and got["n_errors"] == want["n_errors"]
        assert got["i_auroc"] == pytest.approx(want["i_auroc"], abs=1e-12)
        for b in BINS:
            for k, v in want[b].items():
                assert got[b][k] == pytest.approx(v, rel=1e-12, abs=1e-15), (scope, b, k)
        assert got["image"] == pytest.approx(want["image"], abs=1e-15)
