"""Bring your own maps: `raydist segment` binarises another detector's maps like raydist's own."""

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raydist.cli import main
from raydist.data.dataset import read_table
from raydist.data.decode import encode_npy
from raydist.engine.rows import INPUT_COLUMNS
from raydist.engine.scoring import Scorer

MODEL_FLAGS = ["--backbone", "wrn50", "--weights", "none", "--resize", "128", "--crop", "128"]  # the wrn_model_uri fixture's


def write_maps(path, items) -> str:
    """items: (image_id, map bytes or None, image score or None) -> one Parquet file, the documented format."""
    ids, maps, scores = zip(*items)
    table = pa.table({"image_id": list(ids), "score_map": pa.array(maps, pa.binary()), "image_score": pa.array(scores, pa.float64())})
    path.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path / "maps.parquet")
    return str(path)


def val_maps(data: str, model: str) -> list[tuple]:
    """What "another detector" gives for the nominal val rows (here: raydist's scorer, maps only)."""
    rows = [r for r in read_table(data, splits=["val"], columns=INPUT_COLUMNS).to_pylist() if r["label"] == 0]
    return [(s.image_id, encode_npy(s.score_map), s.image_score) for s in Scorer(model).score_rows(rows)]


def results_maps(out: str) -> list[tuple]:
    t = read_table(out + "/results", columns=["image_id", "score_map", "image_score"]).to_pylist()
    return [(r["image_id"], r["score_map"], r["image_score"]) for r in t]


def _rows(out: str) -> dict:
    return {r["image_id"]: r for r in read_table(out + "/results").to_pylist()}


def test_round_trip_reproduces_masks_and_metrics(synth_uri, wrn_model_uri, tmp_path):
    """Maps written by `raydist evaluate`, re-read by `raydist segment`: the same THR, TTT4AS, AREL,
    TTPix and MEBin masks and the same metrics (THR from the nominal val maps)."""
    seg = ["--segment", "thr,ttt4as,arel,ttpix,mebin", "--no-tracking"]
    assert main(["evaluate", "--data", synth_uri, "--model", wrn_model_uri, "--out", str(tmp_path / "ev"), *seg]) == 0
    maps = write_maps(tmp_path / "maps", val_maps(synth_uri, wrn_model_uri) + results_maps(str(tmp_path / "ev")))
    assert main(["segment", "--data", synth_uri, "--maps", maps, "--out", str(tmp_path / "seg"), *MODEL_FLAGS, *seg]) == 0
    a, b = _rows(str(tmp_path / "ev")), _rows(str(tmp_path / "seg"))
    assert a.keys() == b.keys() and len(a) == 30
    for k in a:
        for col in ("score_map", "image_score", "mask_thr", "mask_ttt4as", "mask_arel", "mask_ttpix", "mask_mebin", "error"):
            assert a[k][col] == b[k][col], (k, col)
    ma, mb = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("ev", "seg"))
    for block in ("mean", "pooled"):
        for key in ("i_auroc", "i_ap", "thr", "ttt4as", "mebin", "n_images"):
            assert ma[block][key] == mb[block][key], (block, key)
        for key in ("p_auroc", "p_ap", "aupro_30"):  # same histograms, merged in another order (float sums)
            assert ma[block][key] == pytest.approx(mb[block][key], abs=1e-12)
    assert mb["config"]["model"]["method"] == "maps" and mb["config"]["model"]["maps"] == maps


def test_low_resolution_maps_are_aligned_to_the_image(synth_uri, wrn_model_uri, tmp_path):
    """64 x 64 maps of 128 x 128 images (as a detector with a smaller input gives) are resized onto them."""
    from PIL import Image

    assert main(["evaluate", "--data", synth_uri, "--model", wrn_model_uri, "--out", str(tmp_path / "ev"), "--segment", "thr", "--no-tracking"]) == 0

    def small(b: bytes) -> bytes:
        m = np.load(io.BytesIO(b)).astype(np.float32)
        return encode_npy(np.asarray(Image.fromarray(m).resize((64, 64), Image.BILINEAR)))

    items = [(i, small(m), None) for i, m, _ in results_maps(str(tmp_path / "ev"))]
    maps = write_maps(tmp_path / "maps", items)
    assert main(["segment", "--data", synth_uri, "--maps", maps, "--out", str(tmp_path / "seg"), *MODEL_FLAGS,
                 "--segment", "ttt4as", "--no-tracking"]) == 0  # fmt: skip
    full = json.loads((tmp_path / "ev" / "metrics.json").read_text())["pooled"]
    low = json.loads((tmp_path / "seg" / "metrics.json").read_text())["pooled"]
    print(f"P-AUROC full-resolution maps {full['p_auroc']:.4f}, 64x64 maps aligned {low['p_auroc']:.4f}")
    assert low["n_images"] == 30 and low["n_errors"] == 0
    assert abs(low["p_auroc"] - full["p_auroc"]) < 0.01 and abs(low["i_auroc"] - full["i_auroc"]) < 0.05


def test_bad_maps_are_typed_row_errors(synth_uri, wrn_model_uri, tmp_path):
    assert main(["evaluate", "--data", synth_uri, "--model", wrn_model_uri, "--out", str(tmp_path / "ev"), "--segment", "thr", "--no-tracking"]) == 0
    items = sorted(results_maps(str(tmp_path / "ev")))
    missing, nan_only, three_d, png = (items[i][0] for i in range(4))
    bad = {nan_only: encode_npy(np.full((128, 128), np.nan, np.float32)), three_d: encode_npy(np.zeros((2, 128, 128), np.float32))}
    buf = io.BytesIO()
    from PIL import Image

    Image.fromarray((np.load(io.BytesIO(items[3][1])).astype(np.float32) * 100).astype(np.uint16)).save(buf, format="PNG")
    bad[png] = buf.getvalue()  # a 16-bit PNG map is a valid map
    kept = [(i, bad.get(i, m), None) for i, m, _ in items if i != missing]
    maps = write_maps(tmp_path / "maps", kept)
    assert main(["segment", "--data", synth_uri, "--maps", maps, "--out", str(tmp_path / "seg"), *MODEL_FLAGS,
                 "--segment", "ttt4as,mebin", "--no-tracking"]) == 0  # fmt: skip
    rows = _rows(str(tmp_path / "seg"))
    errors = {k: r["error"] for k, r in rows.items() if r["error"]}
    assert set(errors) == {missing, nan_only, three_d}
    assert errors[missing].startswith("missing_map") and "no score map with this image_id" in errors[missing]
    assert errors[nan_only].startswith("invalid_map") and "no finite score" in errors[nan_only]
    assert errors[three_d].startswith("invalid_map") and "2D numeric array" in errors[three_d]
    m = json.loads((tmp_path / "seg" / "metrics.json").read_text())["pooled"]
    assert len(rows) == 30 == m["n_images"] + m["n_errors"] and m["n_errors"] == 3


def test_thr_without_nominal_val_maps_is_refused(synth_uri, wrn_model_uri, tmp_path, capsys):
    assert main(["evaluate", "--data", synth_uri, "--model", wrn_model_uri, "--out", str(tmp_path / "ev"), "--segment", "thr", "--no-tracking"]) == 0
    maps = write_maps(tmp_path / "maps", results_maps(str(tmp_path / "ev")))  # test maps only
    assert main(["segment", "--data", synth_uri, "--maps", maps, "--out", str(tmp_path / "seg"), *MODEL_FLAGS, "--no-tracking"]) == 2
    assert "THR needs nominal validation maps" in capsys.readouterr().err


def test_results_rebinarised_with_the_models_calibration(synth_uri, wrn_model_uri, tmp_path):
    """Last night's results, re-binarised without re-scoring: `segment --maps RESULTS/results --model
    MODEL` takes THR's statistics, the image threshold and the feature settings from the model that
    made the maps, so the masks (gate included), the image decision and every metric are evaluate's."""
    seg = ["--segment", "thr,ttt4as,rel", "--no-tracking"]
    ev, out = tmp_path / "ev", tmp_path / "seg"
    assert main(["evaluate", "--data", synth_uri, "--model", wrn_model_uri, "--out", str(ev), *seg]) == 0
    assert main(["segment", "--data", synth_uri, "--maps", str(ev / "results"), "--model", wrn_model_uri, "--out", str(out), *seg]) == 0
    a, b = _rows(str(ev)), _rows(str(out))
    assert a.keys() == b.keys() and len(a) == 30
    assert any(r["is_anomalous"] is False for r in a.values()) and any(r["is_anomalous"] for r in a.values())
    for k in a:
        for col in ("score_map", "image_score", "is_anomalous", "mask_thr", "mask_ttt4as", "mask_rel", "ttt4as_status", "error"):
            assert a[k][col] == b[k][col], (k, col)
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (ev, out))
    for block in ("mean", "pooled"):
        for key in ("i_auroc", "thr", "ttt4as", "rel", "image", "n_images"):
            assert ma[block][key] == mb[block][key], (block, key)
