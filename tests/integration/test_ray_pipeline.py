"""The Ray pipeline on an embedded local Ray (2 CPUs, 127.0.0.1): same answers as the core path."""

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

ray = pytest.importorskip("ray")

from raydist.config import EvalConfig, ModelConfig  # noqa: E402
from raydist.data.dataset import read_table, rows_to_table, write_table  # noqa: E402
from raydist.distributed import evaluate as dist  # noqa: E402
from raydist.engine.evaluate import evaluate  # noqa: E402
from raydist.engine.fit import fit as fit_model  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    dist.init(num_cpus=2)
    yield
    ray.shutdown()


def results(uri):
    t = read_table(uri + "/results", columns=["image_id", "image_score", "score_map", "mask_thr", "mask_ttt4as", "error"])
    return {r["image_id"]: r for r in t.to_pylist()}


def assert_same_run(a: str, b: str, same_model_files: bool = True) -> dict:
    """Two executors' outputs: identical metrics.json (all but timing and executor; and the run key,
    which fingerprints the model's files, when each run fitted its own copy) and identical result rows."""
    ma, mb = (json.loads((Path(x) / "metrics.json").read_text()) for x in (a, b))
    assert ma["executor"]["kind"] != mb["executor"]["kind"]
    for m in (ma, mb):
        del m["timing"], m["executor"]
        if not same_model_files:
            del m["run_key"]
    assert ma == mb
    ra, rb = (read_table(x + "/results").sort_by("image_id").to_pylist() for x in (a, b))
    assert len(ra) == ma["pooled"]["n_images"] + ma["pooled"]["n_errors"] and ra == rb
    return ma


@pytest.mark.parametrize("segment_in", ["actor", "tasks"])
def test_local_and_ray_give_identical_metrics_and_rows(segment_in, local_ray, synth_uri, wrn_model_uri, tmp_path):
    cfg = EvalConfig(segment=("thr", "ttt4as", "arel", "ttpix", "mebin"))
    local = evaluate(synth_uri, wrn_model_uri, str(tmp_path / "local"), cfg)
    on_ray = dist.evaluate(synth_uri, wrn_model_uri, str(tmp_path / "ray"), cfg, dist.Resources(segment_in=segment_in))
    m = assert_same_run(str(tmp_path / "local"), str(tmp_path / "ray"))
    # the same stages are timed by both executors (Ray: summed over the actors' threads, or the actor and the tasks)
    assert set(on_ray["timing"]["stages_s"]) == set(local["timing"]["stages_s"]) and on_ray["timing"]["stages_s"]["ttt4as"] > 0
    assert on_ray["timing"]["workers"] == 2
    ex = on_ray["executor"]
    # the default fills the 2 CPUs: two binarising actors, or one scoring actor beside 1-CPU segment tasks
    assert (ex["segment_in"], ex["num_actors"], ex["cpus_per_task"]) == {"actor": ("actor", 2, None), "tasks": ("tasks", 1, 1.0)}[segment_in]
    assert len(ex["placement"]["scoring_actors"]) == ex["num_actors"]
    assert m["pooled"]["n_images"] == 30 and m["pooled"]["ttt4as"]["f1"] > 0 and m["pooled"]["ttpix"]["f1"] > 0  # the image reached the tasks


def test_local_and_ray_identical_for_cfm(local_ray, tmp_path):
    from raydist.data.synth import SynthConfig, write_synth

    data, model = str(tmp_path / "xyz"), str(tmp_path / "cfm")
    write_synth(data, SynthConfig(n_classes=2, n_train=6, n_val=2, n_test_good=2, n_test_bad=3, size=64, with_xyz=True))
    fit_model(data, model, ModelConfig(method="cfm", weights="none", resize=64, crop=64, cfm_epochs=5))
    evaluate(data, model, str(tmp_path / "local"), EvalConfig())
    dist.evaluate(data, model, str(tmp_path / "ray"), EvalConfig())
    m = assert_same_run(str(tmp_path / "local"), str(tmp_path / "ray"))
    assert m["pooled"]["n_images"] == 10 and m["config"]["model"]["method"] == "cfm"


def test_nightly_resumes_and_never_duplicates(local_ray, synth_uri, wrn_model_uri, tmp_path):
    import shutil

    data = str(tmp_path / "data")
    shutil.copytree(synth_uri, data)
    out = str(tmp_path / "res")
    first = dist.evaluate(data, wrn_model_uri, out, EvalConfig(segment=("thr",)), resume=True)
    assert first["timing"]["images_evaluated"] == 30
    again = dist.evaluate(data, wrn_model_uri, out, EvalConfig(segment=("thr",)), resume=True)
    assert again["timing"]["images_evaluated"] == 0 and again["pooled"]["n_images"] == 30
    # new test images arrive as a new file: only they are evaluated
    extra = read_table(data, classes=["blobs"], splits=["test"]).to_pylist()[:3]
    for r in extra:
        r["image_id"] = r["image_id"] + "-new"
    write_table(rows_to_table(extra), data)
    third = dist.evaluate(data, wrn_model_uri, out, EvalConfig(segment=("thr",)), resume=True)
    assert third["timing"]["images_evaluated"] == 3
    # a run that died after writing a unit's results but before its summary: rerun repairs it
    parts = sorted((tmp_path / "res" / "_parts").iterdir())
    parts[0].unlink()
    fourth = dist.evaluate(data, wrn_model_uri, out, EvalConfig(segment=("thr",)), resume=True)
    assert fourth["timing"]["images_evaluated"] > 0
    ids = read_table(out + "/results", columns=["image_id"]).column("image_id").to_pylist()
    assert len(ids) == len(set(ids)) == 33


def test_corrupt_row_is_recorded_and_counts_reconcile(local_ray, synth_uri, wrn_model_uri, tmp_path):
    rows = read_table(synth_uri, classes=["stripes"]).to_pylist()
    bad = next(r for r in rows if r["split"] == "test" and r["label"] == 1)
    bad["image"] = b"\x89PNG\r\n\x1a\n truncated garbage"
    data = str(tmp_path / "data")
    write_table(pa.Table.from_pylist(rows, schema=rows_to_table(rows[:1]).schema), data)
    rep = dist.evaluate(data, wrn_model_uri, str(tmp_path / "res"), EvalConfig())
    res = results(str(tmp_path / "res"))
    n_in = sum(r["split"] == "test" for r in rows)
    assert len(res) == n_in == 10
    errs = {k: v["error"] for k, v in res.items() if v["error"]}
    assert list(errs) == [bad["image_id"]] and "corrupt_image" in errs[bad["image_id"]]
    assert rep["pooled"]["n_images"] + rep["pooled"]["n_errors"] == n_in


def test_local_and_ray_identical_for_unified_cada(local_ray, synth_uri, tmp_path):
    """CADA-aligned maps are signed (offset histogram bins); both executors still agree to the bit."""
    model = str(tmp_path / "unified")
    fit_model(synth_uri, model, ModelConfig(method="unified", weights="none", resize=64, crop=64, route="clusters", k=3, cada_iterations=100))
    cfg = EvalConfig(segment=("thr", "ttt4as"), align="cada")
    evaluate(synth_uri, model, str(tmp_path / "local"), cfg)
    dist.evaluate(synth_uri, model, str(tmp_path / "ray"), cfg)
    m = assert_same_run(str(tmp_path / "local"), str(tmp_path / "ray"))
    assert set(m["alignment"]) == {"none", "cada", "class"} and m["pooled"]["n_images"] == 30


def _ids(out: str) -> list[str]:
    return read_table(out + "/results", columns=["image_id"]).column("image_id").to_pylist()


def _comparable(rep: dict) -> dict:
    return {k: rep[k] for k in ("classes", "mean", "pooled")}


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_nightly_redoes_everything_when_model_or_options_change(executor, local_ray, synth_uri, tmp_path, capsys):
    """(a) a refit with another coreset ratio and (b) another --percentile: every unit is redone
    and the metrics equal a fresh evaluation's (by the other executor), never the stale ones."""
    run = dist.evaluate if executor == "ray" else lambda *a, **k: evaluate(*a, log=print, **k)
    fresh_run = evaluate if executor == "ray" else dist.evaluate

    model = str(tmp_path / "model")
    cfg = dict(backbone="wrn50", weights="none", resize=64, crop=64)
    fit_model(synth_uri, model, ModelConfig(**cfg, coreset_ratio=0.1))
    out = str(tmp_path / "nightly")
    first = run(synth_uri, model, out, EvalConfig(), resume=True)
    assert first["timing"]["images_evaluated"] == 30
    # (a) refit in place with another coreset ratio
    fit_model(synth_uri, model, ModelConfig(**cfg, coreset_ratio=0.5))
    second = run(synth_uri, model, out, EvalConfig(), resume=True)
    assert second["timing"]["images_evaluated"] == 30
    assert "model or options changed since the last run" in capsys.readouterr().out
    fresh = fresh_run(synth_uri, model, str(tmp_path / "fresh"), EvalConfig())
    assert _comparable(second) == _comparable(fresh)
    assert _comparable(second) != _comparable(first)
    # (b) other TTT4AS options
    opts = EvalConfig(params={"ttt4as": {"percentile": 95.0}})
    third = run(synth_uri, model, out, opts, resume=True)
    assert third["timing"]["images_evaluated"] == 30
    assert _comparable(third) == _comparable(fresh_run(synth_uri, model, str(tmp_path / "fresh95"), opts))
    assert sorted(_ids(out)) == sorted(_ids(str(tmp_path / "fresh")))  # one row per image, no leftovers


def test_nightly_follows_files_renamed_deleted_and_ignores_temporaries(local_ray, synth_uri, wrn_model_uri, tmp_path):
    """(c) a file rewritten under a new name is not double counted; (d) a deleted file's rows
    leave results and metrics; (e) a dot- or underscore-prefixed temporary is never read."""
    import shutil
    from pathlib import Path

    data = tmp_path / "data"
    shutil.copytree(synth_uri, data)
    out = str(tmp_path / "res")
    opts = EvalConfig(segment=("thr",))
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
    """PatchCore, CFM and unified/CADA fit as Ray tasks; each unit's saved tensors equal a local fit's."""
    from safetensors.numpy import load_file

    from raydist.data.synth import SynthConfig, write_synth
    from raydist.distributed.fit import fit as ray_fit
    from raydist.model_store import load_meta

    data = str(tmp_path / "xyz")
    write_synth(data, SynthConfig(n_classes=2, n_train=6, n_val=2, n_test_good=1, n_test_bad=2, size=64, with_xyz=True))
    for method, extra in (("patchcore", {}), ("cfm", {"cfm_epochs": 5}), ("unified", {"cada_iterations": 50})):
        cfg = ModelConfig(method=method, weights="none", resize=64, crop=64, **extra)
        on_ray, local = str(tmp_path / f"ray-{method}"), str(tmp_path / f"local-{method}")
        ray_fit(data, on_ray, cfg, log=lambda _: None)
        fit_model(data, local, cfg)
        a, b = load_meta(on_ray), load_meta(local)
        assert a == b and set(a["units"]) == ({"*"} if method == "unified" else {"stripes", "checker"})
        for rec in a["units"].values():
            ta, tb = load_file(f"{on_ray}/{rec['state']}"), load_file(f"{local}/{rec['state']}")
            assert ta.keys() == tb.keys() and all(np.array_equal(ta[k], tb[k]) for k in ta), method


def test_segment_of_brought_maps_is_identical_on_ray(local_ray, synth_uri, wrn_model_uri, tmp_path):
    """`raydist segment` on Ray gives the same results as locally (identical metrics.json)."""
    from raydist.cli import main

    assert main(["evaluate", "--data", synth_uri, "--model", wrn_model_uri, "--out", str(tmp_path / "ev"), "--segment", "thr", "--no-tracking"]) == 0
    maps = str(tmp_path / "ev" / "results")
    common = ["--data", synth_uri, "--maps", maps, "--backbone", "wrn50", "--weights", "none", "--resize", "128", "--crop", "128",
              "--segment", "ttt4as,mebin", "--no-tracking"]  # fmt: skip
    assert main(["segment", *common, "--out", str(tmp_path / "local"), "--executor", "local"]) == 0
    assert main(["segment", *common, "--out", str(tmp_path / "ray"), "--executor", "ray"]) == 0
    m = assert_same_run(str(tmp_path / "local"), str(tmp_path / "ray"), same_model_files=False)
    assert m["pooled"]["n_images"] == 30 and m["config"]["model"]["method"] == "maps"
