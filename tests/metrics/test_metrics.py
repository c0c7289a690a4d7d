import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import average_precision_score, roc_auc_score

from raydist.metrics import aupro, i_ap, i_auroc, mask_prf, p_ap, p_auroc
from raydist.metrics.report import BINARY_METRICS, EvalRecord, build_report


def test_perfect_and_inverted_maps():
    gt = np.zeros((2, 10, 10), bool)
    gt[0, 2:4, 2:4] = True
    maps = gt.astype(float) + 0.01 * np.arange(100).reshape(10, 10) / 100
    assert p_auroc(gt, maps) == 1.0 and p_ap(gt, maps) == pytest.approx(1.0)
    assert aupro(gt, maps, 0.3) == pytest.approx(1.0)
    assert p_auroc(gt, -maps) == 0.0
    assert aupro(gt, -maps, 0.3) == pytest.approx(0.0, abs=1e-12)
    assert i_auroc([0, 1, 1], [0.1, 0.5, 0.9]) == 1.0 and i_auroc([0, 1], [0.9, 0.1]) == 0.0
    assert np.isnan(i_auroc([1, 1], [0.1, 0.2]))


def test_against_sklearn_on_random_data():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = rng.random(200) + 0.3 * labels
    assert i_auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))
    assert i_ap(labels, scores) == pytest.approx(average_precision_score(labels, scores))


def brute_aupro(masks, maps, limit, n_thr=4000):
    """Reference: MVTec's definition evaluated threshold by threshold."""
    masks = np.asarray(masks, bool)
    maps = np.asarray(maps, float)
    comps = []
    for m in masks:
        lab, n = ndimage.label(m, structure=np.ones((3, 3)))
        comps += [(len(comps), lab == k) for k in range(1, n + 1)]
    thr = np.linspace(maps.max(), maps.min() - 1e-9, n_thr)
    fprs, pros = [], []
    img_of = []
    for i, m in enumerate(masks):
        lab, n = ndimage.label(m, structure=np.ones((3, 3)))
        img_of += [i] * n
    for t in thr:
        pred = maps > t
        fprs.append((pred & ~masks).sum() / (~masks).sum())
        pros.append(np.mean([pred[img_of[j]][c].mean() for j, c in comps]))
    fprs, pros = np.array(fprs), np.array(pros)
    keep = fprs <= limit
    x = np.r_[fprs[keep], limit]
    y = np.r_[pros[keep], np.interp(limit, fprs, pros)]
    return np.trapezoid(y, x) / limit


def test_aupro_matches_bruteforce_and_differs_from_pauroc():
    rng = np.random.default_rng(1)
    gt = np.zeros((2, 32, 32), bool)
    gt[0, 2:6, 2:6] = True  # small region: well detected
    gt[0, 10:30, 10:30] = True  # large region: poorly detected
    gt[1, 20:24, 5:9] = True
    maps = rng.random(gt.shape) * 0.5
    maps[0, 2:6, 2:6] += 1.0
    maps[0, 10:30, 10:30] += 0.15
    maps[1, 20:24, 5:9] += 0.6
    for limit in (0.3, 0.01):
        assert aupro(gt, maps, limit) == pytest.approx(brute_aupro(gt, maps, limit), abs=2e-3)
    # the big region dominates pixel AUROC but counts once in PRO: the two must disagree
    assert abs(aupro(gt, maps, 1.0) - p_auroc(gt, maps)) > 0.05


def test_per_image_mean_f1_differs_from_pooled():
    gts = [np.zeros((10, 10), bool), np.zeros((10, 10), bool)]
    gts[0][:5] = True  # 50 defect pixels
    gts[1][0, 0] = True  # 1 defect pixel
    preds = [gts[0].copy(), np.zeros((10, 10), bool)]  # perfect on big, misses small
    r = mask_prf(gts, preds)
    assert r["f1"] == pytest.approx(0.5)  # (1 + 0) / 2
    assert r["f1_pooled"] == pytest.approx(2 * 50 / (2 * 50 + 0 + 1))  # tp=50 fp=0 fn=1
    assert r["precision"] == pytest.approx(0.5) and r["recall"] == pytest.approx(0.5)


def test_nominal_images_do_not_count_in_prf():
    gts = [np.zeros((4, 4), bool), np.eye(4, dtype=bool)]
    preds = [np.ones((4, 4), bool), np.eye(4, dtype=bool)]
    assert mask_prf(gts, preds)["f1"] == 1.0


def test_report_shape_per_class_mean_and_pooled():
    rng = np.random.default_rng(0)
    recs = []
    for cls, offset in (("a", 0.0), ("b", 5.0)):
        for lab in (0, 0, 1, 1):
            gt = np.zeros((8, 8), bool)
            if lab:
                gt[2:4, 2:4] = True
            m = rng.random((8, 8)) + offset + 2 * gt
            recs.append(EvalRecord(cls, lab, float(m.max()), m, gt, {"thr": m > offset + 1.5}))
    rep = build_report(recs, {"b": 1}, ["thr"])
    assert set(rep) == {"classes", "mean", "pooled"}
    assert rep["classes"]["a"]["i_auroc"] == 1.0 and rep["classes"]["b"]["i_auroc"] == 1.0
    # one threshold across classes with shifted scores: pooled detection is worse than per class
    assert rep["pooled"]["i_auroc"] < 1.0
    assert rep["mean"]["n_images"] == 8 and rep["pooled"]["n_errors"] == 1 and rep["classes"]["b"]["n_errors"] == 1
    assert rep["classes"]["a"]["thr"]["f1"] == 1.0
    assert set(rep["mean"]["thr"]) == set(BINARY_METRICS)
