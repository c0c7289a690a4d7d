"""TTPix: pixel features, the LDA step, and the mask it refines from AREL's level."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from raydist.segment.pixel_features import pixel_features
from raydist.segment.relative import AdaptiveRelative
from raydist.segment.ttpix import TTPix, fit_lda
from tests.segment.test_contract import Image


def f1(mask: np.ndarray, gt: np.ndarray) -> float:
    return 2 * float((mask & gt).sum()) / max(float(mask.sum() + gt.sum()), 1.0)


def scratch(seed: int = 0, size: int = 128) -> tuple[Image, np.ndarray]:
    """A 3-px dark scratch on textured grey, and the map a patch detector makes of it: a blob
    ~10 px wide around the scratch (the backbone's stride and the map's smoothing)."""
    rng = np.random.default_rng(seed)
    gt = np.zeros((size, size), bool)
    gt[40:43, 30:90] = True
    img = np.clip(140 + 8 * rng.standard_normal((size, size, 3)), 0, 255)
    img[gt] = (60, 55, 50)
    score = ndimage.gaussian_filter(gt.astype(np.float64), 6) + 0.002 * rng.random((size, size))
    thr = score > 0.3 * score.max()  # THR's region: the blob, much wider than the scratch
    return Image(score.astype(np.float32), thr, None, img.astype(np.uint8)), gt


def test_pixel_features_are_centred_per_image_and_feature_major():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (20, 30, 3)).astype(np.uint8)
    f = pixel_features(img)
    n = 2 * 3
    assert f.shape == (2 * n, 20 * 30) and f.dtype == np.float32
    np.testing.assert_allclose(f[:n].mean(axis=1), 0, atol=1e-3)
    np.testing.assert_array_equal(f[n:], np.abs(f[:n]))
    smooth = ndimage.gaussian_filter(img[..., 1].astype(np.float32), 2.0)
    np.testing.assert_allclose(f[1].reshape(20, 30), smooth - smooth.mean(), atol=1e-3)
    edge = np.zeros((20, 30, 3), np.uint8)
    edge[:, 15:] = 200
    g = pixel_features(edge)[3].reshape(20, 30)  # channel 0's gradient magnitude: highest on the edge
    assert g[:, 14:16].mean() > g[:, :5].mean() + 10 and g[:, 14:16].mean() > g[:, -5:].mean() + 10


def test_grey_stored_as_rgb_counts_one_channel():
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 255, (16, 16)).astype(np.uint8)
    as_rgb = pixel_features(np.repeat(grey[..., None], 3, axis=-1))
    np.testing.assert_array_equal(as_rgb, pixel_features(grey))
    assert as_rgb.shape[0] == 2 * 2
    with pytest.raises(ValueError, match="shape"):
        pixel_features(np.zeros((2, 3, 4, 5)))


def test_lda_is_scikit_learns():
    """fit_lda's decision is LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")'s, a
    constant feature included."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    rng = np.random.default_rng(2)
    pos, neg = rng.standard_normal((300, 7)) + 0.4, 1.3 * rng.standard_normal((700, 7))
    neg[:, 3] = pos[:, 3] = 2.0
    lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(
        np.r_[pos, neg], np.r_[np.ones(300), np.zeros(700)]
    )
    w, b = fit_lda(pos, neg)
    np.testing.assert_allclose(w, lda.coef_[0], rtol=1e-9, atol=1e-12)
    assert b == pytest.approx(float(lda.intercept_[0]), rel=1e-9, abs=1e-12)


def test_sharper_than_arel_on_a_thin_scratch():
    """The map's blob is wider than the scratch at any level; the pixels are not. Measured over
    seeds 0-4: AREL F1 0.486-0.495 (463-473 px for 180), TTPix 0.605-0.611 (409-415 px): the
    map's value still weighs in the classifier, so the mask stays wider than the scratch."""
    for seed in range(3):
        im, gt = scratch(seed)
        mask, info = TTPix().binarise(im)
        arel, _ = AdaptiveRelative().binarise(im)
        assert info["status"] == "ok", info
        assert f1(mask, gt) > f1(arel, gt) + 0.05, (seed, f1(mask, gt), f1(arel, gt))
        assert mask.sum() < 0.95 * arel.sum()  # measured 0.87-0.89
        assert not (mask & ~im.thr_mask).any()  # inside THR's region


def test_too_few_pseudo_labels_give_arels_mask():
    im, _ = scratch()
    im.thr_mask = np.zeros_like(im.thr_mask)
    im.thr_mask[0, 0] = True  # a region of one pixel: no core to learn from
    mask, info = TTPix().binarise(im)
    assert info["status"] == "fallback" and "core" in info["reason"]
    np.testing.assert_array_equal(mask, AdaptiveRelative().binarise(im)[0])


def test_needs_the_image_at_the_maps_size():
    im, _ = scratch()
    with pytest.raises(ValueError, match="differs"):
        TTPix().binarise(Image(im.score_map, im.thr_mask, None, im.image[:64]))
    with pytest.raises(ValueError, match="needs the image"):
        TTPix().binarise(Image(im.score_map, im.thr_mask, None, None))


def test_margins_are_validated():
    from raydist.errors import ConfigError

    with pytest.raises(ConfigError, match="core_margin"):
        TTPix(core_margin=0.7)
    with pytest.raises(ConfigError, match="max_samples"):
        TTPix(max_samples=0)
