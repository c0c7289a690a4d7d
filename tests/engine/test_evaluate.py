"""The local executor: bounded memory whatever the archive's size, and the same results layout as Ray."""

import json
import subprocess
import sys

import pytest

from raydist.config import EvalConfig, ModelConfig
from raydist.data.dataset import read_table, rows_to_table, write_table
from raydist.data.synth import SynthConfig, generate_rows, write_synth
from raydist.engine.evaluate import evaluate
from raydist.engine.fit import fit

MEASURE = """
import json, resource, sys, tracemalloc
from raydist.config import EvalConfig
from raydist.engine.evaluate import evaluate
data, model, out = sys.argv[1:4]
evaluate(data, model, out + "-warm", EvalConfig(segment=("thr", "mebin"), classes=("blobs",)))  # imports and one-off caches
tracemalloc.start()
rep = evaluate(data, model, out, EvalConfig(segment=("thr", "mebin")))
peak = tracemalloc.get_traced_memory()[1]
print(json.dumps({"rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "traced_mib": peak / 2**20,
                  "n": rep["pooled"]["n_images"]}))
"""


def _measure(data: str, model: str, out: str) -> dict:
    res = subprocess.run([sys.executable, "-c", MEASURE, data, model, out], check=True, capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_local_evaluate_memory_is_bounded_at_20x_the_default_archive(tmp_path):
    """20x the default synth test split (600 images) peaks like the default (30): one unit at a time,
    metrics from the unit summaries (an executor holding every map would grow ~20x in traced memory).

    Memory is bounded by the unit (a Parquet row group: <= 64 rows as raydist writes them), not by
    the number of units; both archives here have the default archive's 10-row units."""
    small, big, model = str(tmp_path / "small"), str(tmp_path / "big"), str(tmp_path / "model")
    write_synth(small, SynthConfig(size=64))
    write_table(rows_to_table(generate_rows(SynthConfig(n_test_good=80, n_test_bad=120, size=64))), big, max_rows_per_group=10)
    fit(small, model, ModelConfig(weights="none", resize=64, crop=64))
    a, b = _measure(small, model, str(tmp_path / "ra")), _measure(big, model, str(tmp_path / "rb"))
    print(f"local evaluate, default archive ({a['n']} images): peak RSS {a['rss_mib']:.0f} MiB, traced {a['traced_mib']:.1f} MiB; "
          f"20x ({b['n']} images): peak RSS {b['rss_mib']:.0f} MiB, traced {b['traced_mib']:.1f} MiB")  # fmt: skip
    assert (a["n"], b["n"]) == (30, 600)
    assert b["rss_mib"] < 1.2 * a["rss_mib"] and b["traced_mib"] < 1.2 * a["traced_mib"]


def test_unknown_class_and_bad_rows_are_accounted_for(tmp_path, synth_uri, wrn_model_uri):
    """A class the model never saw is a row error per row, not a crash; rows in == results + errors."""
    import shutil

    from raydist.data.dataset import read_table

    data = str(tmp_path / "data")
    shutil.copytree(synth_uri, data)
    write_synth(str(tmp_path / "other"), SynthConfig(n_classes=4, n_train=0, n_val=0, n_test_good=1, n_test_bad=1))
    shutil.copytree(str(tmp_path / "other" / "class_name=dots"), f"{data}/class_name=dots")
    rep = evaluate(data, wrn_model_uri, str(tmp_path / "r"), EvalConfig(segment=("thr",)))
    rows = read_table(str(tmp_path / "r" / "results"), columns=["image_id", "error"]).to_pylist()
    errors = [r for r in rows if r["error"]]
    assert len(rows) == 32 and len(errors) == 2 and all("no detector for class 'dots'" in r["error"] for r in errors)
    assert rep["pooled"]["n_images"] + rep["pooled"]["n_errors"] == 32


def test_plan_refuses_options_a_model_cannot_honour(synth_uri, wrn_model_uri, tmp_path):
    from raydist.errors import ConfigError

    with pytest.raises(ConfigError, match="CADA alignment needs --method unified"):
        evaluate(synth_uri, wrn_model_uri, str(tmp_path / "r"), EvalConfig(align="cada"))


def test_timing_breaks_the_run_down_by_stage(synth_uri, wrn_model_uri, tmp_path):
    """metrics.json["timing"] says where the time went. With one worker and one unit nothing runs
    side by side, so the stages plus the driver's steps and the overhead add up to the wall time
    exactly; with two workers the stages are summed over both (each batch timed by its own
    thread), and MLflow gets one metric each."""
    from raydist.tracking.mlflow_tracker import metric_items

    cfg = EvalConfig(segment=("thr", "ttt4as", "mebin"), classes=("blobs",))
    rep = evaluate(synth_uri, wrn_model_uri, str(tmp_path / "res"), cfg, workers=1)
    t = rep["timing"]
    stages = t["stages_s"]
    want = {"start_scorer", "read", "decode", "load_detector", "features", "search_and_maps", "thr", "ttt4as", "mebin", "encode", "metric_counts", "write"}
    assert set(stages) == want and all(v >= 0 for v in stages.values())
    assert stages["features"] > 0 and stages["ttt4as"] > 0 and t["workers"] == 1 and rep["executor"] == {"kind": "local", "workers": 1}
    assert set(t["driver_s"]) == {"plan", "metrics"}
    assert sum(stages.values()) + sum(t["driver_s"].values()) + t["overhead_s"] == pytest.approx(t["total_s"], rel=1e-6)
    assert t["overhead_s"] < 0.1 * t["total_s"]  # the stages account for the run (measured: ~1%)
    two = evaluate(synth_uri, wrn_model_uri, str(tmp_path / "two"), cfg, workers=2)["timing"]
    assert two["workers"] == 2 and set(two["stages_s"]) == want and two["overhead_s"] >= 0
    assert sum(two["stages_s"].values()) / 2 <= two["total_s"]  # two workers cannot be busy for longer than the run
    on_disk = json.loads((tmp_path / "res" / "metrics.json").read_text())["timing"]
    assert on_disk["stages_s"] == stages
    logged = metric_items(rep)
    assert logged["timing/stages_s/ttt4as"] == stages["ttt4as"] and "timing/driver_s/plan" in logged and "timing/overhead_s" in logged


def test_results_do_not_depend_on_the_number_of_workers(synth_uri, wrn_model_uri, tmp_path):
    """Worker threads score and binarise batches side by side; every mask must still be a function
    of its image alone. (Without one liblinear fit at a time, 5 of 30 TTT4AS masks differed between
    1 and 2 workers here: scikit-learn's liblinear has one process-wide random generator.)"""
    cfg = EvalConfig(segment=("thr", "ttt4as", "mebin"))
    reports = {w: evaluate(synth_uri, wrn_model_uri, str(tmp_path / f"w{w}"), cfg, workers=w) for w in (1, 3)}
    for r in reports.values():
        del r["timing"], r["executor"]
    assert reports[1] == reports[3]
    rows = {w: read_table(str(tmp_path / f"w{w}" / "results")).sort_by("image_id").to_pylist() for w in (1, 3)}
    assert len(rows[1]) == 30 and rows[1] == rows[3]


def test_the_image_gate_leaves_nominal_images_without_a_mask(synth_uri, wrn_model_uri, tmp_path):
    """Generated data, every binariser: an image judged nominal (its score not above its class's
    image threshold) gets an empty mask from each, its TTT4AS status says why; --no-gate (the
    papers' protocol) binarises it. metrics.json carries the image decision and SegF1 sees the difference."""
    import numpy as np

    from raydist.data.decode import decode_mask
    from raydist.model_store import load_meta
    from raydist.segment.registry import BINARISERS

    every = tuple(BINARISERS)
    gated = evaluate(synth_uri, wrn_model_uri, str(tmp_path / "gated"), EvalConfig(segment=every))
    rows = read_table(str(tmp_path / "gated" / "results")).to_pylist()
    thresholds = {c: u["calibration"]["none"]["image_threshold"] for c, u in load_meta(wrn_model_uri)["units"].items()}
    for r in rows:
        assert r["is_anomalous"] == (r["image_score"] > thresholds[r["class_name"]])
    judged_nominal = [r for r in rows if not r["is_anomalous"]]
    good = [r for r in judged_nominal if r["label"] == 0]
    assert good, "some generated good part must fall below its class's image threshold"
    for r in judged_nominal:
        assert all(not decode_mask(r[f"mask_{b}"], r["image_id"]).any() for b in every), r["image_id"]
        assert r["ttt4as_status"] == "nominal"
    open_ = evaluate(synth_uri, wrn_model_uri, str(tmp_path / "open"), EvalConfig(segment=every, gate=False))
    ungated = {r["image_id"]: r for r in read_table(str(tmp_path / "open" / "results")).to_pylist()}
    assert any(decode_mask(ungated[r["image_id"]]["mask_rel"], r["image_id"]).any() for r in good)  # REL always marks a non-flat map
    g, u = gated["pooled"], open_["pooled"]
    assert g["rel"]["nominal_marked"] < u["rel"]["nominal_marked"] == 1.0
    assert g["image"]["nominal_marked"] == pytest.approx(1 - len(good) / sum(r["label"] == 0 for r in rows))
    assert np.isfinite(g["image"]["recall"]) and g["image"] == u["image"]  # the decision is made either way
