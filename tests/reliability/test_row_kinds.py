"""Every kind of row a real archive holds, end to end on the local and the Ray executor: each one
gets a result or a recorded typed error, and rows in == results + errors."""

import io

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from raydist.config import EvalConfig, ModelConfig
from raydist.data.dataset import read_table, write_table
from raydist.data.synth import SynthConfig, generate_rows
from raydist.engine.evaluate import evaluate
from raydist.engine.fit import fit


def encode(arr: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def rows_of_every_kind() -> list[dict]:
    rows = generate_rows(SynthConfig(n_classes=3, n_train=6, n_val=2, n_test_good=2, n_test_bad=2, size=64))
    names = {"stripes": "stripes ümlaut", "checker": "noval", "blobs": "notest"}  # unicode + space; a class without val; one without test
    out = []
    for r in rows:
        r = {**r, "class_name": names[r["class_name"]], "image_id": names[r["class_name"]] + "/" + r["image_id"].split("/", 1)[1] + " ✓"}
        if r["class_name"] == "noval" and r["split"] == "val":
            continue
        if r["class_name"] == "notest" and r["split"] == "test":
            continue
        out.append(r)
    test = [r for r in out if r["class_name"] == "stripes ümlaut" and r["split"] == "test"]
    rgb = np.asarray(Image.open(io.BytesIO(test[0]["image"])).convert("RGB"))
    kinds = {
        "jpeg": {"image": encode(rgb, "JPEG")},
        "bmp": {"image": encode(rgb, "BMP")},
        "tiff": {"image": encode(rgb, "TIFF")},
        "grey16": {"image": encode((rgb[..., 0].astype(np.uint16) * 257), "PNG")},
        "nonsquare": {"image": encode(np.asarray(Image.fromarray(rgb).resize((160, 64))), "PNG"), "width": 160},
        "missing_mask": {"label": 1, "defect_type": "spot", "mask": None},
    }
    for name, change in kinds.items():
        out.append({**test[0], **change, "image_id": f"stripes ümlaut/test/kinds/{name}"})
    return out


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """The rows above, written with an extra column (an operator's note) and without the xyz column."""
    d = tmp_path_factory.mktemp("kinds")
    rows = rows_of_every_kind()
    table = pa.Table.from_pylist([{k: v for k, v in r.items() if k != "xyz"} | {"operator": "night shift"} for r in rows])
    data = str(d / "data")
    write_table(table, data)
    model = str(d / "model")
    summary = fit(data, model, ModelConfig(weights="none", resize=64, crop=64))
    assert summary["units"] == ["notest", "stripes ümlaut"] and "no nominal val image" in summary["errors"]["noval"]
    n_test = sum(r["split"] == "test" for r in rows)
    return data, model, n_test


def check(out: str, rep: dict, n_test: int) -> None:
    res = {r["image_id"]: r for r in read_table(out + "/results", columns=["image_id", "error", "mask_thr"]).to_pylist()}
    assert len(res) == n_test == rep["pooled"]["n_images"] + rep["pooled"]["n_errors"]
    errors = {k: v["error"] for k, v in res.items() if v["error"]}
    for ok in ("jpeg", "bmp", "tiff", "grey16", "nonsquare"):
        assert f"stripes ümlaut/test/kinds/{ok}" not in errors, errors.get(f"stripes ümlaut/test/kinds/{ok}")
    assert errors.pop("stripes ümlaut/test/kinds/missing_mask").startswith("missing_mask")
    assert errors and all("no detector for class 'noval'" in e for e in errors.values())  # its fit was refused: no val rows
    assert rep["classes"]["stripes ümlaut"]["n_images"] == 4 + 5


def test_every_row_kind_locally(archive, tmp_path):
    data, model, n_test = archive
    check(str(tmp_path / "r"), evaluate(data, model, str(tmp_path / "r"), EvalConfig()), n_test)


def test_every_row_kind_on_ray(archive, tmp_path):
    ray = pytest.importorskip("ray")
    from raydist.distributed import evaluate as dist

    data, model, n_test = archive
    dist.init(num_cpus=2)
    try:
        check(str(tmp_path / "r"), dist.evaluate(data, model, str(tmp_path / "r"), EvalConfig(), log=lambda _: None), n_test)
    finally:
        ray.shutdown()
