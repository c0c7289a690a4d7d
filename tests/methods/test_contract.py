"""The Detector contract, checked on every registered method (in the spirit of scikit-learn's
``check_estimator``): a new method in the registry runs through all of these. That both executors
give identical results for each method is tests/integration/test_ray_pipeline.py's (it names them all)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from raydist.calibration import Calibration
from raydist.config import METHODS, ModelConfig
from raydist.contracts import ScoreBatch
from raydist.data.dataset import read_table
from raydist.data.decode import encode_npy
from raydist.engine.fit import calibrate
from raydist.engine.rows import INPUT_COLUMNS, cloud_step, decode_row
from raydist.features.encoder import Encoder
from raydist.methods import DETECTORS, Detector, detector_class

SIZE = 64


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, str]:
    """Tiny generated data: 2D classes, one 3D scene class, and another detector's maps for the 2D rows."""
    from raydist.data.synth import SynthConfig, write_synth
    from raydist.data.synth3d import Synth3DConfig, write_synth3d

    root = tmp_path_factory.mktemp("contract")
    rgb, xyz = str(root / "rgb"), str(root / "xyz")
    write_synth(rgb, SynthConfig(n_train=6, n_val=2, n_test_good=2, n_test_bad=2, size=SIZE, seed=0))
    write_synth3d(xyz, Synth3DConfig(n_train=6, n_val=2, n_test_good=1, n_test_bad=3, size=SIZE))
    rng = np.random.default_rng(0)
    ids = read_table(rgb, columns=["image_id"]).column("image_id").to_pylist()
    maps = [encode_npy(rng.random((SIZE, SIZE)).astype(np.float32)) for _ in ids]
    (root / "maps").mkdir()
    pq.write_table(pa.table({"image_id": ids, "score_map": pa.array(maps, pa.binary())}), root / "maps" / "maps.parquet")
    return {"rgb": rgb, "xyz": xyz, "maps": str(root / "maps")}


def setup(method: str, tiny: dict[str, str]) -> tuple[ModelConfig, str]:
    extra = {"cfm": {"cfm_epochs": 5}, "maps": {"maps": tiny["maps"]}, "unified": {"cada_iterations": 50}}.get(method, {})
    cfg = ModelConfig(method=method, resize=SIZE, crop=SIZE, **extra)
    return cfg, tiny["xyz"] if method == "cfm" else tiny["rgb"]


def rows(cfg: ModelConfig, data: str, enc: Encoder, split: str, cls: type[Detector]) -> list:
    cols = INPUT_COLUMNS if cls.needs_xyz else [c for c in INPUT_COLUMNS if c != "xyz"]
    table = read_table(data, splits=[split], columns=cols).to_pylist()
    first = sorted({r["class_name"] for r in table})[0]
    picked = [r for r in table if cls.scope == "archive" or r["class_name"] == first]
    return [decode_row(r, enc.prep, cloud=cloud_step(cls, cfg, enc.prep)) for r in picked if split == "test" or r["label"] == 0]


def test_registry_matches_the_config():
    assert tuple(DETECTORS) == METHODS
    assert all(detector_class(m) is not None for m in METHODS)


@pytest.mark.parametrize("method", METHODS)
def test_detector_contract(method, tiny):
    cfg, data = setup(method, tiny)
    cls = detector_class(method)
    for attr, kind in (("scope", str), ("needs_xyz", bool), ("aligns", tuple), ("signed_maps", bool), ("fit_splits", tuple), ("has_bank", bool),
                       ("needs_calibration", bool), ("report_fields", tuple)):  # fmt: skip
        assert isinstance(getattr(cls, attr), kind), attr
    assert cls.report_blocks([]) == {}  # nothing to report on no images
    assert cls.scope in ("class", "archive") and cls.aligns and set(cls.fit_splits) <= {"train"}
    enc = Encoder(cfg)
    train, val, test = (rows(cfg, data, enc, s, cls) for s in ("train", "val", "test"))
    det = cls(cfg).fit(enc, train)
    assert isinstance(det.describe(), str)

    # calibration: the engine's, from the detector's own maps of the val rows, one per alignment
    skipped: list[str] = []
    cal = calibrate(det, enc, val, cfg, skipped)
    assert set(cal) == set(cls.aligns) and not skipped
    for a, c in cal.items():
        assert np.isfinite([c.mu, c.sigma, c.image_threshold]).all() and c.sigma >= 0 and c.n_val == len(val), (a, c)
        assert Calibration.from_dict(json.loads(json.dumps(c.to_dict()))) == c
        assert det.aligned(a).score(enc, test[:1]).maps.shape == (1, *enc.size)

    # score: shapes and dtypes
    sb = det.score(enc, test)
    n, (h, w) = len(test), enc.size
    assert isinstance(sb, ScoreBatch)
    assert sb.maps.shape == (n, h, w) and sb.maps.dtype == np.float32 and np.isfinite(sb.maps).all()
    assert sb.image_scores.shape == (n,) and np.isfinite(sb.image_scores).all()
    assert sb.features.shape[0] == n and sb.features.ndim == 4 and len(sb.extras) == n
    assert sb.errors is None or len(sb.errors) == n
    if sb.feature_blocks:
        assert sum(sb.feature_blocks) == sb.features.shape[1]

    # the same output twice
    again = det.score(enc, test)
    assert np.array_equal(sb.maps, again.maps) and np.array_equal(sb.image_scores, again.image_scores)

    # state: JSON info + numeric arrays, stored without pickle (safetensors), restored to the same maps
    info, tensors = det.state()
    info = json.loads(json.dumps(info))
    assert all(isinstance(t, np.ndarray) and t.dtype.kind in "fiub" for t in tensors.values())
    restored_tensors = st_load(st_save({k: np.ascontiguousarray(v) for k, v in tensors.items()})) if tensors else {}
    back = cls.from_state(cfg, info, restored_tensors)
    sb2 = back.score(enc, test)
    assert np.allclose(sb2.maps, sb.maps, rtol=1e-3, atol=1e-4 * float(np.abs(sb.maps).max() + 1e-12)), float(np.abs(sb2.maps - sb.maps).max())
    assert np.array_equal(sb2.image_scores, sb.image_scores) or np.allclose(sb2.image_scores, sb.image_scores, rtol=1e-3)
