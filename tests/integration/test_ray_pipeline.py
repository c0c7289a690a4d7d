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


def _ids(out: str) -> list[str]:
    return read_table(out + "/results", columns=["image_id"]).column("image_id").to_pylist()


def _comparable(rep: dict) -> dict:
    return {k: rep[k] for k in ("classes", "mean", "pooled")}


def test_nightly_redoes_everything_when_model_or_options_change(local_ray, synth_uri, tmp_path, capsys):
    """(a) a refit with another coreset ratio and (b) another --percentile: every unit is redone
    and the metrics equal a fresh evaluation's, never the stale ones."""
    from raydist.model_store import ModelConfig
    from raydist.pipeline import fit_model

    model = str(tmp_path / "model")
    cfg = dict(backbone="wrn50", weights="none", resize=64, crop=64)
    fit_model(synth_uri, model, ModelConfig(**cfg, coreset_ratio=0.1))
    out = str(tmp_path / "nightly")
    first = dist.evaluate(synth_uri, model, out, EvalOptions(), resume=True)
    assert first["timing"]["images_evaluated"] == 30
    # (a) refit in place with another coreset ratio
    fit_model(synth_uri, model, ModelConfig(**cfg, coreset_ratio=0.5))
    second = dist.evaluate(synth_uri, model, out, EvalOptions(), resume=True)
    assert second["timing"]["images_evaluated"] == 30
    assert "model or options changed since the last run" in capsys.readouterr().out
    fresh = dist.evaluate(synth_uri, model, str(tmp_path / "fresh"), EvalOptions())
    assert _comparable(second) == _comparable(fresh)
    assert _comparable(second) != _comparable(first)
    # (b) other TTT4AS options
    opts = EvalOptions(ttt4as={"percentile": 95.0})
    third = dist.evaluate(synth_uri, model, out, opts, resume=True)
    assert third["timing"]["images_evaluated"] == 30
    assert _comparable(third) == _comparable(dist.evaluate(synth_uri, model, str(tmp_path / "fresh95"), opts))
    assert sorted(_ids(out)) == sorted(_ids(str(tmp_path / "fresh")))  # one row per image, no leftovers


def test_nightly_follows_files_renamed_deleted_and_ignores_temporaries(local_ray, synth_uri, wrn_model_uri, tmp_path):
    """(c) a file rewritten under a new name is not double counted; (d) a deleted file's rows
    leave results and metrics; (e) a dot- or underscore-prefixed temporary is never read."""
    import shutil
    from pathlib import Path

    data = tmp_path / "data"
    shutil.copytree(synth_uri, data)
    out = str(tmp_path / "res")
    opts = EvalOptions(segment=("thr",))
    dist.evaluate(str(data), wrn_model_uri, out, opts, resume=True)
    files = sorted((data / "class_name=blobs" / "split=test").glob("*.parquet"))
    assert files
    # (c) compaction / re-ingest: same rows, new file name
    files[0].rename(files[0].with_name("compacted-" + files[0].name))
    rep = dist.evaluate(str(data), wrn_model_uri, out, opts, resume=True)
    ids = _ids(out)
    assert len(ids) == len(set(ids)) == rep["pooled"]["n_images"] == 30
    # (d) a file deleted: its rows leave results and metrics
    gone = sorted((data / "class_name=stripes" / "split=test").glob("*.parquet"))
    n_gone = read_table(str(data), classes=["stripes"], splits=["test"]).num_rows
    for f in gone:
        f.unlink()
    rep = dist.evaluate(str(data), wrn_model_uri, out, opts, resume=True)
    assert rep["pooled"]["n_images"] == len(_ids(out)) == 30 - n_gone
    assert "stripes" not in rep["classes"] and not any(i.startswith("stripes/") for i in _ids(out))
    # (e) what a crash between write and move leaves behind is never read as results
    part = next(Path(out, "results").rglob("part-*.parquet"))
    for name in (f".{part.name}.tmp-deadbeef", f"_{part.name}.tmp"):
        shutil.copy(part, part.with_name(name))
    rep = dist.evaluate(str(data), wrn_model_uri, out, opts, resume=True)
    assert rep["timing"]["images_evaluated"] == 0 and len(_ids(out)) == rep["pooled"]["n_images"] == 30 - n_gone


def test_atomic_writes_leave_no_readable_temporary(tmp_path, monkeypatch):
    """A crash between the temporary write and the move: only a dot-named file is left."""
    from raydist import storage

    def crash(*_a, **_k):
        raise OSError("killed")

    fs, _ = storage.filesystem(str(tmp_path))
    monkeypatch.setattr(type(fs), "mv", crash)
    with pytest.raises(OSError):
        storage.write_bytes(str(tmp_path / "results" / "part-x.parquet"), b"data")
    left = [p.name for p in (tmp_path / "results").iterdir()]
    assert len(left) == 1 and left[0].startswith(".part-x.parquet.tmp-")


def test_ray_fit_of_each_method_equals_the_local_fit(local_ray, tmp_path):
    """PatchCore and CFM fit as Ray tasks (CFM used to crash reading a bank it does not have)."""
    from raydist.data.synth import SynthConfig, write_synth
    from raydist.distributed.fit import fit_model as ray_fit
    from raydist.model_store import ModelConfig, load_class, load_meta
    from raydist.pipeline import fit_model

    data = str(tmp_path / "xyz")
    write_synth(data, SynthConfig(n_classes=2, n_train=6, n_val=2, n_test_good=1, n_test_bad=2, size=64, with_xyz=True))
    for method in ("patchcore", "cfm"):
        cfg = dict(method=method, backbone="efficientnet_lite0", weights="none", resize=64, crop=64, cfm_epochs=5)
        on_ray, local = str(tmp_path / f"ray-{method}"), str(tmp_path / f"local-{method}")
        ray_fit(data, on_ray, ModelConfig(**cfg), log=lambda _: None)
        fit_model(data, local, ModelConfig(**cfg))
        a, b = load_meta(on_ray), load_meta(local)
        assert a["classes"].keys() == b["classes"].keys() == {"stripes", "checker"}
        for cls in a["classes"]:
            ca, cb = load_class(on_ray, a, cls), load_class(local, b, cls)
            assert ca.thr_mu == pytest.approx(cb.thr_mu, rel=1e-4) and ca.thr_sigma == pytest.approx(cb.thr_sigma, rel=1e-3)
            if method == "cfm":
                assert ca.bank is None and ca.dims == cb.dims
            else:  # same rows selected; a Ray task runs torch on 1 thread, the driver on 2: float16 ulps differ
                assert ca.bank.shape == cb.bank.shape
                np.testing.assert_allclose(ca.bank.astype(np.float32), cb.bank.astype(np.float32), rtol=5e-3, atol=2e-3)
