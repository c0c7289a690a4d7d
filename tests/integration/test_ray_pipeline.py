"""The Ray pipeline on an embedded local Ray (2 CPUs, 127.0.0.1): same answers as the core path."""

import json

import numpy as np
import pyarrow as pa
import pytest

ray = pytest.importorskip("ray")

from raydist.data.dataset import read_table, rows_to_table, write_table  # noqa: E402
from raydist.data.decode import decode_npy  # noqa: E402
from raydist.distributed import evaluate as dist  # noqa: E402
from raydist.pipeline import EvalOptions, evaluate  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    dist.init(num_cpus=2)
    yield
    ray.shutdown()


def results(uri):
    t = read_table(uri + "/results", columns=["image_id", "image_score", "score_map", "mask_thr", "mask_ttt4as", "error"])
    return {r["image_id"]: r for r in t.to_pylist()}


def test_ray_matches_core_path(local_ray, synth_uri, wrn_model_uri, tmp_path):
    core = evaluate(synth_uri, wrn_model_uri, str(tmp_path / "core"), EvalOptions())
    rep = dist.evaluate(synth_uri, wrn_model_uri, str(tmp_path / "ray"), EvalOptions(), num_actors=1)
    a, b = results(str(tmp_path / "core")), results(str(tmp_path / "ray"))
    assert sorted(a) == sorted(b) and len(a) == 30
    for k in a:
        assert a[k]["image_score"] == pytest.approx(b[k]["image_score"], rel=1e-5)
        np.testing.assert_allclose(decode_npy(a[k]["score_map"], k), decode_npy(b[k]["score_map"], k), rtol=1e-3)
        assert a[k]["mask_thr"] == b[k]["mask_thr"] and a[k]["mask_ttt4as"] == b[k]["mask_ttt4as"]
    for block in ("mean", "pooled"):
        for m in ("i_auroc", "i_ap"):
            assert rep[block][m] == pytest.approx(core[block][m], abs=1e-9)
        for m in ("p_auroc", "p_ap", "aupro_30", "aupro_1"):  # histogram aggregates vs exact
            assert rep[block][m] == pytest.approx(core[block][m], abs=1e-3), (block, m)
        assert rep[block]["ttt4as"]["f1"] == pytest.approx(core[block]["ttt4as"]["f1"], abs=1e-9)
    on_disk = json.loads((tmp_path / "ray" / "metrics.json").read_text())
    assert on_disk["pooled"]["n_images"] == 30


def test_nightly_resumes_and_never_duplicates(local_ray, synth_uri, wrn_model_uri, tmp_path):
    import shutil

    data = str(tmp_path / "data")
    shutil.copytree(synth_uri, data)
    out = str(tmp_path / "res")
    first = dist.evaluate(data, wrn_model_uri, out, EvalOptions(segment=("thr",)), resume=True)
    assert first["timing"]["images_evaluated"] == 30
    again = dist.evaluate(data, wrn_model_uri, out, EvalOptions(segment=("thr",)), resume=True)
    assert again["timing"]["images_evaluated"] == 0 and again["pooled"]["n_images"] == 30
    # new test images arrive as a new file: only they are evaluated
    extra = read_table(data, classes=["blobs"], splits=["test"]).to_pylist()[:3]
    for r in extra:
        r["image_id"] = r["image_id"] + "-new"
    write_table(rows_to_table(extra), data)
    third = dist.evaluate(data, wrn_model_uri, out, EvalOptions(segment=("thr",)), resume=True)
    assert third["timing"]["images_evaluated"] == 3
    # a run that died after writing a unit's results but before its summary: rerun repairs it
    parts = sorted((tmp_path / "res" / "_parts").iterdir())
    parts[0].unlink()
    fourth = dist.evaluate(data, wrn_model_uri, out, EvalOptions(segment=("thr",)), resume=True)
    assert fourth["timing"]["images_evaluated"] > 0
    ids = read_table(out + "/results", columns=["image_id"]).column("image_id").to_pylist()
    assert len(ids) == len(set(ids)) == 33


def test_corrupt_row_is_recorded_and_counts_reconcile(local_ray, synth_uri, wrn_model_uri, tmp_path):
    rows = read_table(synth_uri, classes=["stripes"]).to_pylist()
    bad = next(r for r in rows if r["split"] == "test" and r["label"] == 1)
    bad["image"] = b"\x89PNG\r\n\x1a\n truncated garbage"
    data = str(tmp_path / "data")
    write_table(pa.Table.from_pylist(rows, schema=rows_to_table(rows[:1]).schema), data)
    rep = dist.evaluate(data, wrn_model_uri, str(tmp_path / "res"), EvalOptions())
    res = results(str(tmp_path / "res"))
    n_in = sum(r["split"] == "test" for r in rows)
    assert len(res) == n_in == 10
    errs = {k: v["error"] for k, v in res.items() if v["error"]}
    assert list(errs) == [bad["image_id"]] and "corrupt_image" in errs[bad["image_id"]]
    assert rep["pooled"]["n_images"] + rep["pooled"]["n_errors"] == n_in


def test_ray_unified_aligned_maps_match_core(local_ray, synth_uri, tmp_path):
    """CADA-aligned maps are signed; the Ray path's histogram metrics must still match the core's."""
    from raydist.model_store import ModelConfig
    from raydist.unified import fit_unified

    model = str(tmp_path / "unified")
    fit_unified(synth_uri, model, ModelConfig(weights="none", resize=64, crop=64, image_score="top1"), route="clusters", k=3,
                cada_params={"iterations": 100}, log=lambda _: None)  # fmt: skip
    opts = EvalOptions(segment=("thr",), align="cada")
    core = evaluate(synth_uri, model, str(tmp_path / "core"), opts)
    rep = dist.evaluate(synth_uri, model, str(tmp_path / "ray"), opts)
    for block in ("mean", "pooled"):
        assert rep[block]["i_auroc"] == pytest.approx(core[block]["i_auroc"], abs=1e-9)
        for m in ("p_auroc", "p_ap", "aupro_30", "aupro_1"):
            assert rep[block][m] == pytest.approx(core[block][m], abs=1e-3), (block, m)
    assert rep["alignment"]["cada"]["i_auroc_pooled"] == pytest.approx(core["alignment"]["cada"]["i_auroc_pooled"])
