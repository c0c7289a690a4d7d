"""Item 1: every kind of bad row mixed into good rows; rows in == results + recorded errors."""

import io

import numpy as np
import pytest
from PIL import Image

from raydist.config import EvalConfig
from raydist.data.dataset import read_table, rows_to_table, write_table
from raydist.data.decode import encode_npy
from raydist.engine.evaluate import evaluate


def png(arr):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def hostile(synth_uri, tmp_path_factory):
    rows = read_table(synth_uri, classes=["stripes"]).to_pylist()
    test = [r for r in rows if r["split"] == "test"]
    good_png = test[0]["image"]
    bad = {
        "corrupt": {"image": b"\x89PNG\r\n\x1a\nnot really"},
        "empty": {"image": b""},
        "truncated": {"image": good_png[: len(good_png) // 3]},
        "mask_size": {"label": 1, "defect_type": "spot", "mask": png(np.full((10, 10), 255, np.uint8))},
        "bomb": {"image": png(np.zeros((3000, 3000, 3), np.uint8))},  # 9 Mpx > the 4 Mpx limit used below
        "xyz_nan": {"xyz": encode_npy(np.full((128, 128, 3), np.nan, np.float32))},  # RGB model: xyz unused
        "gray": {"image": png(np.asarray(Image.open(io.BytesIO(good_png)).convert("L")))},
        "rgba": {"image": png(np.asarray(Image.open(io.BytesIO(good_png)).convert("RGBA")))},
    }
    extra = []
    for name, change in bad.items():
        r = {**test[1], **change, "image_id": f"stripes/test/hostile/{name}"}
        extra.append(r)
    extra.append({**test[2]})  # a duplicate image_id
    data = str(tmp_path_factory.mktemp("hostile") / "data")
    write_table(rows_to_table(rows + extra), data)
    return data, len(test) + len(extra)


def check(res_rows, n_in):
    errors = {r["image_id"]: r["error"] for r in res_rows if r["error"]}
    assert len(res_rows) == n_in  # nothing lost, nothing invented
    assert errors["stripes/test/hostile/corrupt"].startswith("corrupt_image")
    assert errors["stripes/test/hostile/empty"].startswith("corrupt_image") and "0 bytes" in errors["stripes/test/hostile/empty"]
    assert errors["stripes/test/hostile/truncated"].startswith("corrupt_image")
    assert errors["stripes/test/hostile/mask_size"].startswith("shape_mismatch")
    assert errors["stripes/test/hostile/bomb"].startswith("image_too_large")
    dup = [r["image_id"] for r in res_rows if (r["error"] or "").startswith("duplicate_image_id")]
    assert len(dup) == 2 and len(set(dup)) == 1  # both occurrences refused and reported
    for ok in ("gray", "rgba", "xyz_nan"):  # converted / unused, not failed
        assert f"stripes/test/hostile/{ok}" not in errors
    return errors


def test_core_path(hostile, wrn_model_uri, tmp_path):
    data, n_in = hostile
    rep = evaluate(data, wrn_model_uri, str(tmp_path / "r"), EvalConfig(max_pixels=4_000_000))
    res = read_table(str(tmp_path / "r" / "results"), columns=["image_id", "error", "mask_ttt4as"]).to_pylist()
    errors = check(res, n_in)
    assert rep["pooled"]["n_images"] + rep["pooled"]["n_errors"] == n_in
    assert rep["pooled"]["n_errors"] == sum(r["error"] is not None for r in res) == 7
    assert rep["duplicates"] == {dup: 2 for dup in {k for k, v in errors.items() if v.startswith("duplicate")}}


def test_ray_path(hostile, wrn_model_uri, tmp_path):
    ray = pytest.importorskip("ray")
    from raydist.distributed import evaluate as dist

    data, n_in = hostile
    dist.init(num_cpus=2)
    try:
        rep = dist.evaluate(data, wrn_model_uri, str(tmp_path / "r"), EvalConfig(max_pixels=4_000_000))
    finally:
        ray.shutdown()
    res = read_table(str(tmp_path / "r" / "results"), columns=["image_id", "error"]).to_pylist()
    check(res, n_in)
    assert rep["pooled"]["n_images"] + rep["pooled"]["n_errors"] == n_in


def test_a_run_where_every_row_failed_exits_non_zero(synth_uri, wrn_model_uri, tmp_path, capsys):
    """Not a table of nulls and exit 0: the reason on one line and exit code 4."""
    from raydist.cli import main

    rows = read_table(synth_uri, classes=["stripes"]).to_pylist()
    for r in rows:
        if r["split"] == "test":
            r["image"] = b"\x89PNG\r\n\x1a\nnot really"
    data = str(tmp_path / "data")
    write_table(rows_to_table(rows), data)
    rc = main(["evaluate", "--data", data, "--model", wrn_model_uri, "--out", str(tmp_path / "r"), "--segment", "thr", "--no-tracking"])
    err = capsys.readouterr().err
    assert rc == 4 and "no row could be evaluated: 10 of 10 failed" in err


def test_embedded_ray_ignores_a_leftover_cluster_address_file(tmp_path, monkeypatch):
    """Without an address raydist starts its own local Ray, even if an earlier `ray start` left
    /tmp/ray/ray_current_cluster behind (it used to try to attach to that dead cluster)."""
    ray = pytest.importorskip("ray")
    from raydist.distributed import evaluate as dist

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    marker = __import__("pathlib").Path("/tmp/ray/ray_current_cluster")
    if marker.exists():
        pytest.skip("a real cluster address file exists on this machine; not touching it")
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("127.0.0.1:1")  # a dead cluster
    try:
        dist.init(num_cpus=1)
        assert ray.is_initialized() and ray.cluster_resources().get("CPU") == 1
    finally:
        ray.shutdown()
        marker.unlink()
