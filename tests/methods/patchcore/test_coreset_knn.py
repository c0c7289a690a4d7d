import numpy as np
import pytest

from raydist.methods.patchcore.coreset import coverage_radius, greedy_coreset
from raydist.methods.patchcore.knn import nearest_distances


def naive_greedy(x, k, first):
    sel = [first]
    d = ((x - x[first]) ** 2).sum(1)
    for _ in range(k - 1):
        i = int(np.argmax(d))
        sel.append(i)
        d = np.minimum(d, ((x - x[i]) ** 2).sum(1))
    return np.array(sel)


def clustered(n=3000, d=24, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((30, d)) * 3
    return (centres[rng.integers(0, 30, n)] + rng.standard_normal((n, d))).astype(np.float32)


def test_pruned_greedy_equals_naive_greedy_exactly():
    x = clustered()
    sel = greedy_coreset(x, 300, proj_dim=None, seed=0)
    ref = naive_greedy(x.astype(np.float64), 300, sel[0])
    assert len(sel) == len(set(sel.tolist())) == 300
    assert np.array_equal(sel, ref)


def test_projected_coverage_close_to_exact_and_deterministic():
    x = clustered(d=400)
    exact = coverage_radius(x, greedy_coreset(x, 300, proj_dim=None))
    proj = greedy_coreset(x, 300, proj_dim=128, seed=5)
    assert np.array_equal(proj, greedy_coreset(x, 300, proj_dim=128, seed=5))
    assert coverage_radius(x, proj) <= 1.15 * exact
    rand = np.random.default_rng(0).choice(len(x), 300, replace=False)
    assert coverage_radius(x, rand) > coverage_radius(x, proj)


def test_size_validation():
    with pytest.raises(ValueError):
        greedy_coreset(np.zeros((5, 2), np.float32), 6)


def test_knn_matches_numpy_bruteforce_with_tiny_budget():
    rng = np.random.default_rng(0)
    q = rng.standard_normal((500, 32)).astype(np.float32)
    bank = rng.standard_normal((2000, 32)).astype(np.float32)
    ref = np.sqrt(((q[:, None, :].astype(np.float64) - bank[None]) ** 2).sum(-1)).min(1)
    d, idx = nearest_distances(q, bank, budget_mb=0.05, return_index=True)  # forces many chunks
    np.testing.assert_allclose(d, ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(q - bank[idx], axis=1), ref, rtol=1e-4, atol=1e-4)
    # float16 bank (as stored on disk): distances within 1e-2 relative of the float32 answer
    d16 = nearest_distances(q, bank.astype(np.float16))
    np.testing.assert_allclose(d16, ref, rtol=1e-2)
