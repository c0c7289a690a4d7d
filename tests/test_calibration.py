"""What a unit learns from its nominal val images (raydist/calibration.py)."""

import numpy as np
import pytest

from raydist.calibration import Calibration, calibrate, image_threshold, nominal_stats, thr_mask


def test_pixel_statistics_stream_like_one_array():
    rng = np.random.default_rng(0)
    maps = [rng.normal(3.0, 2.0, (32, 32)) for _ in range(5)]
    s = nominal_stats(iter(maps))
    assert s["mu"] == pytest.approx(np.mean(maps), abs=1e-12) and s["sigma"] == pytest.approx(np.std(maps), abs=1e-12)
    with pytest.raises(ValueError):
        nominal_stats([])


def test_image_threshold_is_mean_plus_k_std_not_the_max():
    scores = [1.0, 2.0, 3.0, 10.0]  # one outlying nominal val image
    t = image_threshold(scores, 1.0)
    assert t == pytest.approx(np.mean(scores) + np.std(scores)) and t < 10.0
    assert image_threshold(scores, 0.0) == pytest.approx(4.0)
    with pytest.raises(ValueError):
        image_threshold([], 3.0)


def test_calibrate_and_round_trip():
    maps = [np.full((4, 4), 1.0), np.full((4, 4), 3.0)]
    c = calibrate(zip(maps, [1.5, 3.5], strict=True), image_k=3.0)
    assert (c.mu, c.sigma, c.n_val) == (2.0, 1.0, 2) and c.image_threshold == pytest.approx(2.5 + 3 * 1.0)
    assert Calibration.from_dict(c.to_dict()) == c and "image threshold" in c.describe()
    with pytest.raises(ValueError):
        calibrate(zip(maps, [1.0], strict=True), 3.0)  # a map without its score
    assert calibrate([], 3.0) is None  # no val image: no calibration


def test_thr_mask_without_statistics_marks_nothing():
    m = np.array([[0.0, 5.0]])
    assert thr_mask(m, 1.0, 1.0, 3.0).tolist() == [[False, True]]
    assert not thr_mask(m, float("nan"), float("nan"), 3.0).any()
