import numpy as np
import pytest

from raydist.errors import ConfigError
from raydist.segment.pseudo_labels import pseudo_labels


def bump(shape, cy, cx, s, h):
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    return h * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))


def test_single_bump_gives_one_peak_and_its_disk():
    m = bump((96, 96), 40, 50, 5, 1.0)
    pl = pseudo_labels(m, percentile=99, radius=4, nominal_stride=8, margin=8)
    assert pl.peaks.tolist() == [[40, 50]]
    assert len(pl.positives) == 49  # disk of radius 4: 49 pixels
    assert np.all(np.hypot(*(pl.positives - [40, 50]).T) <= 4)


def test_bump_below_percentile_is_suppressed():
    m = bump((100, 100), 30, 30, 4, 1.0) + bump((100, 100), 75, 75, 4, 0.05)
    m += 0.04  # background well above the weak bump's tail... but the weak bump stays a local max
    pl = pseudo_labels(m, percentile=99, radius=3)
    assert pl.peaks.tolist() == [[30, 30]]


def test_nominals_avoid_positive_region_and_counts_follow_options():
    m = bump((64, 64), 20, 20, 3, 1.0)
    pl = pseudo_labels(m, radius=4, nominal_stride=8, margin=10)
    d = np.hypot(*(pl.negatives[:, None, :] - pl.positives[None]).transpose(2, 0, 1)).min(axis=1)
    assert d.min() > 10
    assert np.all(pl.negatives % 8 == 4)  # a regular grid with stride 8, offset 4
    assert len(pl.negatives) == 64 - int(sum(1 for y in range(4, 64, 8) for x in range(4, 64, 8) if min(np.hypot(y - py, x - px) for py, px in pl.positives) <= 10))
    capped = pseudo_labels(m, radius=4, nominal_stride=8, margin=10, max_nominal=5)
    assert len(capped.negatives) == 5


def test_flat_map_is_degenerate_not_an_error():
    pl = pseudo_labels(np.ones((32, 32)))
    assert pl.reason is not None and "no local maximum" in pl.reason and len(pl.positives) == 0


def test_invalid_options():
    for kw in ({"percentile": 100}, {"percentile": -1}, {"radius": -1}, {"nominal_stride": 0}):
        with pytest.raises(ConfigError):
            pseudo_labels(np.zeros((8, 8)), **kw)
