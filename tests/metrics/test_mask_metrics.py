"""Mask metrics over every image: SegF1, nominal_marked, IoU, and the image decision's P/R/F1."""

import numpy as np
import pytest

from raydist.metrics.binary import decision_prf, mask_metrics, mask_prf


def test_segf1_pools_every_image_and_nominal_marks_count():
    anomalous = [(8, 2, 2), (0, 0, 10)]  # a good mask, and a missed defect
    nominal = [(0, 0, 0), (0, 5, 0), (0, 0, 0), (0, 0, 0)]  # one good part marked with 5 px
    m = mask_metrics(anomalous, nominal)
    assert m["f1"] == pytest.approx((0.8 + 0.0) / 2)
    assert m["iou"] == pytest.approx((8 / 12 + 0.0) / 2)
    assert m["segf1"] == pytest.approx(2 * 8 / (2 * 8 + 7 + 12))  # tp 8, fp 2 + 5, fn 2 + 10
    assert m["nominal_marked"] == pytest.approx(0.25)
    # the nominal images' false positives cost SegF1, never F1
    clean = mask_metrics(anomalous, [(0, 0, 0)] * 4)
    assert clean["f1"] == m["f1"] and clean["segf1"] > m["segf1"] and clean["nominal_marked"] == 0.0


def test_no_images_of_a_kind_is_nan_not_zero():
    m = mask_metrics([], [(0, 1, 0)])
    assert np.isnan(m["f1"]) and np.isnan(m["iou"]) and m["segf1"] == 0.0 and m["nominal_marked"] == 1.0
    assert np.isnan(mask_metrics([(1, 0, 0)], [])["nominal_marked"])


def test_mask_prf_from_arrays_splits_by_ground_truth():
    gt = [np.array([[1, 0]], bool), np.zeros((1, 2), bool)]
    pred = [np.array([[1, 0]], bool), np.array([[0, 1]], bool)]
    m = mask_prf(gt, pred)
    assert m["f1"] == 1.0 and m["nominal_marked"] == 1.0 and m["segf1"] == pytest.approx(2 / 3)


def test_image_decision():
    d = decision_prf([1, 1, 0, 0, 0], [True, False, True, False, False])
    assert d == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "nominal_marked": 1 / 3})
    assert np.isnan(decision_prf([], [])["f1"])
