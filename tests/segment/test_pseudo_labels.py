import numpy as np
import pytest

from raydist.errors import ConfigError
from raydist.segment.pseudo_labels import pseudo_labels
from raydist.segment.ttt4as_params import TTT4ASParams


def labels(m, thr_mask=None, **params):
    """pseudo_labels with the params object made of the fields given (validated on construction)."""
    return pseudo_labels(m, TTT4ASParams(**params), thr_mask)


def bump(shape, cy, cx, s, h):
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    return h * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))


def test_single_bump_gives_one_peak_and_its_disk():
    m = bump((96, 96), 40, 50, 5, 1.0)
    pl = labels(m, percentile=99, radius=4, nominal_stride=8, margin=8, neighbourhood="disk", positive_stride=1)
    assert pl.peaks.tolist() == [[40, 50]]
    assert len(pl.positives) == 49  # disk of radius 4: 49 pixels
    assert np.all(np.hypot(*(pl.positives - [40, 50]).T) <= 4)


def test_bump_below_percentile_is_suppressed():
    m = bump((100, 100), 30, 30, 4, 1.0) + bump((100, 100), 75, 75, 4, 0.05)
    m += 0.04  # background well above the weak bump's tail... but the weak bump stays a local max
    pl = labels(m, percentile=99, radius=3)
    assert pl.peaks.tolist() == [[30, 30]]


def test_nominals_avoid_positive_region_and_counts_follow_options():
    m = bump((64, 64), 20, 20, 3, 1.0)
    pl = labels(m, radius=4, nominal_stride=8, margin=10, neighbourhood="disk")
    d = np.hypot(*(pl.negatives[:, None, :] - pl.positives[None]).transpose(2, 0, 1)).min(axis=1)
    assert d.min() > 10
    assert np.all(pl.negatives % 8 == 4)  # a regular grid with stride 8, offset 4
    assert len(pl.negatives) == 64 - int(sum(1 for y in range(4, 64, 8) for x in range(4, 64, 8) if min(np.hypot(y - py, x - px) for py, px in pl.positives) <= 10))
    capped = labels(m, radius=4, nominal_stride=8, margin=10, max_nominal=5, neighbourhood="disk")
    assert len(capped.negatives) == 5


def test_flat_map_is_degenerate_not_an_error():
    pl = labels(np.ones((32, 32)))
    assert pl.reason is not None and "no local maximum" in pl.reason and len(pl.positives) == 0


def test_invalid_options():
    for kw in ({"percentile": 100}, {"percentile": -1}, {"radius": -1}, {"nominal_stride": 0}, {"grow_level": 1.0},
               {"neighbourhood": "box"}, {"positive_stride": 0}, {"peak_level": -0.1}, {"erode": -1}):  # fmt: skip
        with pytest.raises(ConfigError):
            labels(np.zeros((8, 8)), **kw)


def test_grown_neighbourhood_follows_the_defect_extent():
    """Same peak height, blobs of two widths: the grown region scales with the blob, the disk does not."""
    small = labels(bump((128, 128), 64, 64, 3, 1.0), neighbourhood="grow", grow_level=0.5, radius=32, positive_stride=1)
    large = labels(bump((128, 128), 64, 64, 12, 1.0), neighbourhood="grow", grow_level=0.5, radius=32, positive_stride=1)
    # level 0.5 of a Gaussian of width s (median ~0): radius s * sqrt(2 ln 2) = 1.18 s
    for pl, s in ((small, 3), (large, 12)):
        r = np.hypot(*(pl.positives - [64, 64]).T)
        assert r.max() == pytest.approx(1.18 * s, abs=1.0)
        assert len(pl.positives) == pytest.approx(np.pi * (1.18 * s) ** 2, rel=0.15)
    # the cap: a plateau wider than the radius stops at the radius
    capped = labels(bump((128, 128), 64, 64, 40, 1.0), neighbourhood="grow", grow_level=0.5, radius=10, positive_stride=1)
    assert np.hypot(*(capped.positives - [64, 64]).T).max() <= 10


def test_grown_region_stays_connected_to_its_peak():
    m = bump((96, 96), 30, 30, 4, 1.0) + bump((96, 96), 30, 52, 4, 0.8)  # two blobs, a valley between
    pl = labels(m, neighbourhood="grow", grow_level=0.7, radius=32, positive_stride=1, percentile=99.9)
    assert pl.peaks.tolist() == [[30, 30]]  # only the higher blob's peak passes the 99.9th percentile
    # the second blob rises above the level (0.8 > 0.7) inside the cap, but the valley cuts it off
    assert len(pl.positives) > 9 and np.all(pl.positives[:, 1] < 41)


def test_positive_stride_thins_but_keeps_peaks():
    m = bump((96, 96), 41, 47, 8, 1.0)
    full = labels(m, neighbourhood="grow", grow_level=0.5, radius=32, positive_stride=1)
    thin = labels(m, neighbourhood="grow", grow_level=0.5, radius=32, positive_stride=2)
    assert len(thin.positives) == pytest.approx(len(full.positives) / 4, rel=0.2)
    assert [41, 47] in thin.positives.tolist()
    assert set(map(tuple, thin.positives)) <= set(map(tuple, full.positives))


def test_peak_level_drops_secondary_peaks():
    m = bump((96, 96), 30, 30, 4, 1.0) + bump((96, 96), 70, 70, 4, 0.6)
    assert len(labels(m, percentile=95).peaks) == 2
    assert labels(m, percentile=95, peak_level=0.8).peaks.tolist() == [[30, 30]]


def _min_distance(points: np.ndarray, region: np.ndarray) -> float:
    from scipy import ndimage

    return float(ndimage.distance_transform_edt(~region)[points[:, 0], points[:, 1]].min())


def test_thr_region_is_left_unlabelled():
    m = bump((96, 96), 48, 48, 6, 1.0)
    thr = np.zeros((96, 96), bool)
    thr[28:70, 30:66] = True  # THR's mask: wider than the peak's neighbourhood
    pl = labels(m, thr_mask=thr)
    assert pl.unlabelled == "thr"
    assert np.all(np.hypot(*(pl.positives - [48, 48]).T) <= 2)  # positives: the peak and its 2-px neighbours only
    assert _min_distance(pl.negatives, thr) > 8  # no nominal inside THR's region or its margin
    assert len(pl.negatives) > 40  # the rest of the image still holds nominals


def test_without_thr_mask_the_blob_is_left_unlabelled():
    m = bump((128, 128), 64, 64, 12, 1.0) + 0.01
    pl = labels(m)  # no THR statistics (e.g. maps without validation rows)
    assert pl.unlabelled == "blob"
    blob = m >= np.median(m) + 0.5 * (m.max() - np.median(m))  # the half-height blob, radius ~14 px
    assert _min_distance(pl.negatives, blob) > 8
    none = labels(m, unlabelled="none")
    assert none.unlabelled == "none" and len(none.negatives) > len(pl.negatives)
    assert _min_distance(none.negatives, blob) < 8  # the paper's rule labels the blurred blob nominal


def test_thr_mask_must_match_the_map():
    with pytest.raises(ValueError, match="THR mask shape"):
        labels(bump((32, 32), 16, 16, 3, 1.0), thr_mask=np.zeros((16, 16), bool))
    with pytest.raises(ConfigError):
        labels(np.zeros((8, 8)), unlabelled="halo")
    with pytest.raises(ConfigError):
        labels(np.zeros((8, 8)), unlabelled_level=1.0)
