import numpy as np
import pytest
from scipy import ndimage

from raydist.errors import ConfigError
from raydist.metrics.report import BINARY_METRICS
from raydist.segment.mebin import MEBin


def blobs(centres, shape=(128, 128), sigma=5.0, heights=None, noise=0.02, seed=0):
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    m = np.random.default_rng(seed).random(shape) * noise
    for k, (cy, cx) in enumerate(centres):
        h = 1.0 if heights is None else heights[k]
        m += h * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
    return m


@pytest.mark.parametrize("centres", [[(64, 64)], [(30, 30), (30, 96), (96, 64)]])
def test_components_match_the_blobs(centres):
    mask, info = MEBin().predict(blobs(centres, heights=[1.0, 0.9, 0.8][: len(centres)]))
    assert info["status"] == "ok" and info["components"] == len(centres)
    lab, n = ndimage.label(mask)
    assert n == len(centres)
    for cy, cx in centres:  # each blob's centre is inside a component
        assert mask[cy, cx]


def test_no_blob_gives_no_stable_component():
    mask, info = MEBin().predict(np.zeros((64, 64)))
    assert info["status"] == "degenerate" and not mask.any()
    mask, info = MEBin().predict(np.full((64, 64), np.nan))
    assert info["status"] == "degenerate" and not mask.any()


def test_mask_depends_on_the_image_alone_and_not_on_score_units():
    """The sweep range is the image's own [median, max]: any affine rescaling of a map (another
    detector's units, a CADA alignment) gives the same mask."""
    a = blobs([(40, 40), (90, 90)], heights=[1.0, 0.7])
    ref, info = MEBin().predict(a)
    assert info["components"] == 2
    for scaled in (a * 37.0 + 5.0, a * 0.01 - 3.0):
        assert np.array_equal(MEBin().predict(scaled)[0], ref)


def test_invalid_parameters():
    with pytest.raises(ConfigError):
        MEBin(sample_rate=0)


def test_mebin_through_evaluate_local_and_ray(synth_uri, wrn_model_uri, tmp_path):
    """`--segment thr,ttt4as,mebin`: a mask_mebin column and a mebin block in metrics.json, the
    same on the local and the Ray executor."""
    import json

    from raydist.cli import main
    from raydist.data.dataset import read_table

    base = ["--data", synth_uri, "--model", wrn_model_uri, "--segment", "thr,ttt4as,mebin", "--no-tracking"]
    assert main(["evaluate", *base, "--out", str(tmp_path / "local")]) == 0
    import ray

    try:
        assert main(["evaluate", *base, "--out", str(tmp_path / "ray"), "--executor", "ray", "--num-cpus", "2"]) == 0
    finally:
        ray.shutdown()  # the embedded Ray this test started
    reps = [json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("local", "ray")]
    for rep in reps:
        assert set(rep["mean"]["mebin"]) == set(BINARY_METRICS)
    assert reps[0]["pooled"]["mebin"]["f1"] == pytest.approx(reps[1]["pooled"]["mebin"]["f1"], abs=1e-9)
    rows = read_table(str(tmp_path / "ray" / "results"), columns=["mask_mebin", "error"]).to_pylist()
    assert len(rows) == 30 and all(r["mask_mebin"] for r in rows if r["error"] is None)
