import numpy as np
import pytest

from raydist.metrics import aupro, p_ap, p_auroc
from raydist.metrics.aggregates import PixelAggregate


def sample(seed):
    rng = np.random.default_rng(seed)
    gts, maps = [], []
    for i in range(6):
        gt = np.zeros((48, 48), bool)
        if i % 2:
            y, x = rng.integers(5, 35, 2)
            gt[y : y + rng.integers(3, 12), x : x + rng.integers(3, 12)] = True
        m = rng.gamma(4.0, 0.5, gt.shape) + 2.0 * gt * rng.random(gt.shape)
        gts.append(gt)
        maps.append(m)
    return gts, maps


def test_merged_partial_aggregates_match_exact_metrics():
    gts, maps = sample(0)
    parts = []
    for lo in (0, 3):  # two "workers", merged afterwards
        agg = PixelAggregate.around(2.0)
        for g, m in zip(gts[lo : lo + 3], maps[lo : lo + 3]):
            agg.add(g, m)
        parts.append(PixelAggregate.from_dict(agg.to_dict()))  # through JSON, as workers hand them over
    agg = parts[0].merge(parts[1])
    assert agg.p_auroc() == pytest.approx(p_auroc(gts, maps), abs=1e-3)
    assert agg.p_ap() == pytest.approx(p_ap(gts, maps), abs=1e-3)
    assert agg.aupro(0.3) == pytest.approx(aupro(gts, maps, 0.3), abs=1e-3)
    assert agg.aupro(0.01) == pytest.approx(aupro(gts, maps, 0.01), abs=1e-3)


def test_merge_requires_same_bins():
    with pytest.raises(ValueError):
        PixelAggregate.around(1.0).merge(PixelAggregate.around(2.0))
