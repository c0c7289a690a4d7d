"""The bound-pruned bank search must return what a float64 brute force returns, on any bank."""

import numpy as np
import pytest
import torch

from raydist.methods.patchcore.bound_search import DENSE_FRACTION, BoundIndex
from raydist.methods.patchcore.knn import SearchBank, nearest_distances


def low_rank(n, d=96, rank=12, seed=0, offset=20.0):
    """Features like a backbone's: most spread in a few directions, off-centre, clustered."""
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((rank, d))
    centres = rng.standard_normal((40, rank)) * 4
    z = centres[rng.integers(0, 40, n)] + rng.standard_normal((n, rank))
    return (z @ mix + 0.3 * rng.standard_normal((n, d)) + offset).astype(np.float32)


def brute_force(q, bank):
    """Squared distances in float64 and the lowest index among the nearest rows."""
    q64, b64 = q.astype(np.float64), bank.astype(np.float64)
    d2 = ((q64[:, None, :] - b64[None]) ** 2).sum(-1)
    return d2.min(1), d2.argmin(1)


def test_equals_float64_brute_force_and_prunes():
    x = low_rank(4500)
    bank, q = x[:3000], x[3000:]
    q[::7] += np.random.default_rng(1).standard_normal((len(q[::7]), q.shape[1])).astype(np.float32) * 3  # some far queries
    sb = SearchBank.build(bank, "cpu", index=True)
    assert sb.bound is not None
    ref_d2, ref_idx = brute_force(q, bank)
    d, idx = nearest_distances(q, sb, return_index=True)
    assert np.array_equal(idx, ref_idx)
    np.testing.assert_allclose(d, np.sqrt(ref_d2), rtol=1e-6)
    _, _, visited = sb.bound.search(q, dense=None)
    assert visited.mean() < 0.1 * len(bank)  # measured 2.2 of 3,000 here: the bound does the work


def test_independent_of_block_size_and_threads():
    x = low_rank(3500, seed=3)
    sb = SearchBank.build(x[:2500], "cpu", index=True)
    want = nearest_distances(x[2500:], sb, return_index=True)
    threads = torch.get_num_threads()
    try:
        for n_threads, budget in ((1, None), (2, 0.01), (1, 0.3)):
            torch.set_num_threads(n_threads)
            got = nearest_distances(x[2500:], sb, budget_mb=budget, return_index=True)
            assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    finally:
        torch.set_num_threads(threads)


def test_ties_go_to_the_lowest_index_and_nan_stays_nan():
    x = low_rank(2000, seed=4)
    bank = np.concatenate([x[:1500], x[:100]])  # rows 1500.. duplicate rows 0..99
    q = x[:200].copy()  # queries at bank rows: distance 0, twice for the first 100
    q[5] = np.nan
    d, idx = nearest_distances(q, SearchBank.build(bank, "cpu", index=True), return_index=True)
    assert np.isnan(d[5]) and np.isfinite(np.delete(d, 5)).all()
    keep = np.arange(200) != 5
    assert np.array_equal(idx[keep], np.arange(200)[keep]) and (d[keep] == 0).all()


def test_falls_back_to_the_dense_product_where_the_bound_cannot_prune():
    """Isotropic noise has no dominant directions: after one block the search goes dense and is still exact."""
    rng = np.random.default_rng(5)
    bank = rng.standard_normal((2048, 80)).astype(np.float32)
    q = rng.standard_normal((600, 80)).astype(np.float32)
    index = BoundIndex.build(bank)
    calls = []

    def dense(rows):
        calls.append(len(rows))
        return nearest_distances(rows, SearchBank(torch.from_numpy(bank), torch.from_numpy((bank * bank).sum(1))), return_index=True)[1]

    d2, idx, visited = index.search(q, dense)
    ref_d2, ref_idx = brute_force(q, bank)
    assert len(calls) == 1 and 0 < calls[0] < len(q) and visited[0] > DENSE_FRACTION * len(bank)
    assert np.array_equal(idx, ref_idx)
    np.testing.assert_allclose(d2, ref_d2, rtol=1e-9)


def test_used_only_for_large_wide_float32_cpu_banks():
    assert SearchBank.build(low_rank(1500), "cpu", index=True).bound is not None
    assert SearchBank.build(low_rank(1500), "cpu").bound is None  # not asked for: a one-off search
    assert SearchBank.build(low_rank(1000), "cpu", index=True).bound is None  # below BOUND_MIN_ROWS
    assert SearchBank.build(low_rank(1500, d=64), "cpu", index=True).bound is None  # narrower than BOUND_MIN_WIDTH
    assert SearchBank.build(low_rank(1500), "cpu", dtype=torch.bfloat16, index=True).bound is None
    assert SearchBank.build(low_rank(1500), "cpu", dtype=torch.float16, index=True).bound is None


def test_a_scorers_banks_are_indexed_and_a_fits_are_not(wrn_model_uri):
    """The scorer prepares each detector's bank once, with the index (resident, searched per batch);
    PatchCore's own fit-time search stays dense (one-off: not worth the kernels' RSS)."""
    from raydist.engine.scoring import Scorer
    from raydist.methods.patchcore.patchcore import PatchCore

    sc = Scorer(wrn_model_uri)
    det = sc.detector(sorted(sc.meta["units"])[0])
    assert det.model.indexed and det.model._cache is not None  # prepared at load, not in the first batch
    pc = PatchCore(coreset_ratio=0.5).fit(np.random.default_rng(0).standard_normal((40, 96, 8, 8)).astype(np.float32))
    assert len(pc.bank) >= 1024 and pc.search_bank().bound is None


@pytest.mark.parametrize("rows", [1024, 1031])  # a whole number of groups, and padding
def test_padding_rows_are_never_returned(rows):
    x = low_rank(rows + 300, seed=6)
    d, idx = nearest_distances(x[rows:], SearchBank.build(x[:rows], "cpu", index=True), return_index=True)
    ref_d2, ref_idx = brute_force(x[rows:], x[:rows])
    assert idx.max() < rows and np.array_equal(idx, ref_idx)
