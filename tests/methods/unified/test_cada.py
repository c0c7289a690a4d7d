import numpy as np
import pytest
import torch

from raydist.errors import ConfigError
from raydist.methods.unified.cada import CADA, Regressor, align_maps


def class_data(n_per=24, seed=0):
    """Each class: its own feature pattern and its own normal-score level (u, gamma)."""
    rng = np.random.default_rng(seed)
    grids, maps, stats = [], [], []
    for u, gamma in ((1.0, 2.0), (3.0, 5.0), (6.0, 7.5)):
        pattern = rng.standard_normal((16, 1, 1)) * 2
        for _ in range(n_per):
            grids.append(pattern + 0.3 * rng.standard_normal((16, 7, 7)))
            m = u + (gamma - u) * rng.beta(2, 8, size=(20, 20))
            m.flat[rng.integers(400)] = gamma  # the max is gamma
            m += u - m.mean()  # and the mean is u
            maps.append(m)
            stats.append((u, gamma))
    return np.array(grids, np.float32), np.array(maps), np.array(stats)


def test_regressor_learns_class_statistics():
    g, m, stats = class_data()
    idx = np.arange(len(g))
    test = idx % 6 == 0  # held-out nominal images
    cada = CADA(iterations=600).fit(g[~test], m[~test])
    pred = cada.predict(g[test])
    np.testing.assert_allclose(pred[:, 0], m[test].mean(axis=(1, 2)), rtol=0.15)
    np.testing.assert_allclose(pred[:, 1], m[test].max(axis=(1, 2)), rtol=0.15)


def test_dropout_active_in_train_mode_only():
    net = Regressor(8, dropout=0.5)
    x = torch.randn(4, 8, 5, 5)
    net.train()
    assert not torch.allclose(net(x), net(x))
    net.eval()
    assert torch.equal(net(x), net(x))


def test_alignment_formula_and_floor():
    m = np.array([[[1.0, 2.0], [3.0, 5.0]]])
    out = align_maps(m, np.array([[1.0, 5.0]]), floor=0.1)
    np.testing.assert_allclose(out[0], [[0.0, 0.25], [0.5, 1.0]])
    # gamma_hat <= u_hat: the documented floor replaces the spread, no division by ~0
    out = align_maps(m, np.array([[2.0, 1.0]]), floor=0.5)
    np.testing.assert_allclose(out[0], (m[0] - 2.0) / 0.5)
    assert np.isfinite(out).all()


def test_state_roundtrip():
    g, m, _ = class_data(n_per=4)
    a = CADA(iterations=20).fit(g, m)
    b = CADA().load(a.state())
    np.testing.assert_allclose(a.predict(g), b.predict(g), rtol=1e-6)
    with pytest.raises(ConfigError):
        CADA(dropout=1.5)
