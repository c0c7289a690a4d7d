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


def test_search_bank_on_an_explicit_device_and_float16_storage():
    """A SearchBank is what a scorer keeps resident on its device; on the CPU it is float32 and the
    search is exactly the plain one; stored as float16 (the accelerator layout) it stays within the
    float16 rounding of the bank (chunks are widened to float32 before the matmul)."""
    import torch

    from raydist.methods.patchcore.knn import SearchBank

    rng = np.random.default_rng(1)
    q = rng.standard_normal((300, 64)).astype(np.float32) * 5
    bank = (rng.standard_normal((1500, 64)) * 5).astype(np.float16)  # banks are stored as float16
    plain = nearest_distances(q, bank)
    cpu = SearchBank.build(bank, "cpu")
    assert cpu.rows.dtype == torch.float32 and cpu.device.type == "cpu"
    assert np.array_equal(nearest_distances(q, cpu, budget_mb=0.05), plain)
    half = SearchBank.build(bank, torch.device("cpu"), dtype=torch.float16)
    assert half.rows.dtype == torch.float16 and half.nbytes == 1500 * 64 * 2 + 1500 * 4
    # a float16 bank stored as float16 loses nothing: the same distances up to float32 summation order
    np.testing.assert_allclose(nearest_distances(q, half), plain, rtol=1e-5, atol=1e-4)
    if torch.cuda.is_available():  # pragma: no cover - only where a GPU exists
        gpu = SearchBank.build(bank, "cuda")
        assert gpu.rows.dtype == torch.float16 and gpu.device.type == "cuda"
        np.testing.assert_allclose(nearest_distances(torch.as_tensor(q, device="cuda"), gpu), plain, rtol=1e-4, atol=1e-3)


def test_bf16_search_finds_a_near_neighbour_and_reports_its_exact_distance():
    """--bank-search bf16: the row is found in bfloat16, its distance computed in float32. So every
    distance is a true distance to some bank row (never below the exact nearest one), equal to the
    exact answer where the right row was found, and otherwise within bfloat16's rounding of it.
    Margins from measurement (Gaussian clusters, seeds 2-3, where neighbours are nearly equidistant:
    recall 0.82-0.84, p99 relative excess 2.2-2.6%); on the bottle dev category's real patches
    recall 0.94, p99 excess 2.8%, P-AUROC unchanged to 1e-5."""
    import torch

    from raydist.methods.patchcore.knn import SearchBank

    x = clustered(n=6000, d=64, seed=2) + 20.0  # off-centre like real features: centring matters
    q, bank = x[:1500], x[1500:]
    q64, b64 = q.astype(np.float64), bank.astype(np.float64)
    d2 = (q64 * q64).sum(1)[:, None] + (b64 * b64).sum(1)[None] - 2 * q64 @ b64.T
    idx = d2.argmin(1)
    exact = np.linalg.norm(q64 - b64[idx], axis=1)
    sb = SearchBank.build(bank, "cpu", dtype=torch.bfloat16)
    assert sb.rows.dtype == torch.bfloat16 and sb.exact.dtype == torch.float32
    d, found = nearest_distances(q, sb, budget_mb=0.05, return_index=True)  # many blocks
    np.testing.assert_allclose(d, np.linalg.norm(q - bank[found], axis=1), rtol=1e-5)  # the found row's true distance
    assert (d >= exact * (1 - 1e-5)).all()
    excess = d / exact - 1
    assert np.mean(found == idx) > 0.75 and np.quantile(excess, 0.99) < 0.04


def test_bank_search_option_reaches_the_search_and_is_refused_without_a_bank(wrn_model_uri, synth_uri, tmp_path):
    from raydist.config import EvalConfig
    from raydist.engine.scoring import Scorer
    from raydist.errors import ConfigError

    sc = Scorer(wrn_model_uri, EvalConfig(bank_search="bf16"))
    unit = sc.meta["units"] and sorted(sc.meta["units"])[0]
    assert sc.detector(unit).model.search_bank().rows.dtype == __import__("torch").bfloat16
    assert Scorer(wrn_model_uri).detector(unit).model.search_bank().rows.dtype == __import__("torch").float32
    with pytest.raises(ConfigError, match="bank-search"):
        EvalConfig(bank_search="faiss")


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA: no GPU on this machine")
def test_patchcore_scores_on_cuda_equal_cpu_scores():
    """Stated tolerance: 1e-3 relative on maps of distances ~10 (float32 matmul on both devices,
    only the summation order differs)."""
    from raydist.methods.patchcore.patchcore import PatchCore

    rng = np.random.default_rng(0)
    pc = PatchCore(coreset_ratio=0.2).fit(rng.standard_normal((6, 32, 12, 12)).astype(np.float32))
    test = rng.standard_normal((3, 32, 12, 12)).astype(np.float32)
    cpu_maps, cpu_scores = pc.score(test, 48)
    gpu_maps, gpu_scores = pc.to("cuda").score(test, 48)
    assert pc.search_bank().device.type == "cuda"
    np.testing.assert_allclose(gpu_maps, cpu_maps, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(gpu_scores, cpu_scores, rtol=1e-3)


def test_patchcore_search_bank_follows_its_device_and_bank():
    import torch

    from raydist.methods.patchcore.patchcore import PatchCore

    rng = np.random.default_rng(0)
    pc = PatchCore(coreset_ratio=0.5).fit(rng.standard_normal((2, 8, 4, 4)).astype(np.float32))
    first = pc.search_bank()
    assert pc.search_bank() is first  # cached while nothing changes
    assert pc.to(torch.device("cpu")).search_bank() is first
    pc.bank = pc.bank.copy()
    assert pc.search_bank() is not first  # a new bank is prepared again


def test_chunked_coreset_is_exact_below_the_chunk_and_covers_above_it():
    """Below the chunk size it is the exact greedy; above it, the bank has the size asked for, is
    deterministic, and covers every point nearly as well (these data, seeds 0-4: radius 9.07-9.27
    vs the exact greedy's 8.64-8.66, 1.05-1.07x; bound 1.2x)."""
    from raydist.methods.patchcore.coreset import chunked_coreset

    x = clustered(n=6000, d=32)
    assert np.array_equal(chunked_coreset(x, 300, None, seed=0), greedy_coreset(x, 300, seed=0))
    assert np.array_equal(chunked_coreset(x, 300, 6000, seed=0), greedy_coreset(x, 300, seed=0))
    for seed in (0, 1, 2):
        sel = chunked_coreset(x, 301, 2000, seed=seed)  # 301: the chunks' shares are rounded to sum to it
        assert len(sel) == len(set(sel.tolist())) == 301 and sel.min() >= 0 and sel.max() < len(x)
        assert np.array_equal(sel, chunked_coreset(x, 301, 2000, seed=seed))
        exact = coverage_radius(x, greedy_coreset(x, 301, seed=seed))
        assert coverage_radius(x, sel) < 1.2 * exact


def test_coreset_chunk_option():
    """200,000 patches per greedy by default (~255 train images at 224 px); 0 = one exact greedy;
    models stored before the option read as 0 (what they ran)."""
    from raydist.config import ModelConfig
    from raydist.errors import ConfigError
    from raydist.methods.patchcore.coreset import chunked_coreset
    from raydist.methods.patchcore.patchcore import PatchCore, grid_to_patches

    assert ModelConfig().coreset_chunk == 200_000
    assert ModelConfig.from_dict({k: v for k, v in ModelConfig().to_dict().items() if k != "coreset_chunk"}).coreset_chunk == 0
    with pytest.raises(ConfigError, match="coreset-chunk"):
        ModelConfig(coreset_chunk=10)
    grids = np.random.default_rng(0).standard_normal((12, 16, 10, 10)).astype(np.float32)  # 1,200 patches
    chunked = PatchCore(coreset_ratio=0.1, coreset_chunk=1000).fit(grids)
    exact = PatchCore(coreset_ratio=0.1, coreset_chunk=0).fit(grids)
    patches = grid_to_patches(grids)
    assert np.array_equal(chunked.bank, patches[chunked_coreset(patches, 120, 1000)].astype(np.float16))
    assert np.array_equal(exact.bank, patches[greedy_coreset(patches, 120)].astype(np.float16))
    assert not np.array_equal(chunked.bank, exact.bank)
