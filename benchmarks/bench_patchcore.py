"""PatchCore figures on this machine, all in one run (prints, asserts nothing).

- coreset selection: naive greedy (fresh temporaries each step, as anomalib does) vs raydist's
  pruned greedy, at the anchor size 94,080 x 152 -> 9,408, and the coverage of each;
- bank search: brute force (full distance matrix) vs chunked search for 10k / 50k / 200k banks;
- per-image time split: feature extraction, bank search, post-processing (EfficientNet-Lite0, WRN50).
Run: .venv/bin/python benchmarks/bench_patchcore.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from raydist.features.backbones import Backbone
from raydist.methods.patchcore.coreset import greedy_coreset
from raydist.methods.patchcore.knn import nearest_distances
from raydist.methods.patchcore.patchcore import PatchCore, upsample_map


def naive_greedy(x: torch.Tensor, k: int) -> np.ndarray:
    sel = [0]
    d = torch.linalg.norm(x - x[0], dim=1)
    for _ in range(k - 1):
        i = int(torch.argmax(d))
        sel.append(i)
        d = torch.minimum(d, torch.linalg.norm(x - x[i], dim=1))
    return np.array(sel)


def clustered(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((300, d)).astype(np.float32)
    return (centres[rng.integers(0, 300, n)] + 0.4 * rng.standard_normal((n, d))).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller sizes")
    ap.add_argument("--anchor-only", action="store_true", help="only the anchor-size throughput figures")
    a = ap.parse_args()
    torch.set_num_threads(2)
    anchor_throughput()
    if a.anchor_only:
        return
    n = 20_000 if a.quick else 94_080
    x = clustered(n, 152)
    k = n // 10
    t = time.perf_counter()
    ref = naive_greedy(torch.from_numpy(x), k)
    t_naive = time.perf_counter() - t
    t = time.perf_counter()
    ours = greedy_coreset(x, k, proj_dim=None)
    t_ours = time.perf_counter() - t
    cov_ref = nearest_distances(x, x[ref]).max()
    cov_ours = nearest_distances(x, x[ours]).max()
    print(f"coreset {n}x152 -> {k}: naive {t_naive:.1f}s  raydist {t_ours:.1f}s  speed-up {t_naive / t_ours:.1f}x")
    print(f"  coverage (max distance to coreset): naive {cov_ref:.4f}  raydist {cov_ours:.4f}  ratio {cov_ours / cov_ref:.3f}")
    print(f"  vs anomalib's 367 s anchor on the same problem size: {367 / t_ours:.1f}x")

    q = clustered(784 * 4, 152, seed=1)
    for m in (10_000, 50_000, 200_000):
        bank = clustered(m, 152, seed=2).astype(np.float16)
        t = time.perf_counter()
        bf = torch.cdist(torch.from_numpy(q), torch.from_numpy(bank.astype(np.float32))).min(1).values.numpy()
        t_bf = time.perf_counter() - t
        t = time.perf_counter()
        ch = nearest_distances(q, bank, budget_mb=64)
        t_ch = time.perf_counter() - t
        print(f"bank search {len(q)} queries x {m} bank: brute force {t_bf * 1000:.0f} ms (peak matrix {len(q) * m * 4 / 2**20:.0f} MB), chunked {t_ch * 1000:.0f} ms (<= 64 MB), max |diff| {np.abs(bf - ch).max():.2e}")

    for name in ("efficientnet_lite0", "wrn50"):
        bb = Backbone(name, weights="packaged" if name == "efficientnet_lite0" else "none")
        img = torch.randn(1, 3, 224, 224)
        bb.extract(img)
        grids = torch.cat([bb.extract(torch.randn(1, 3, 224, 224)).features for _ in range(4)])
        pc = PatchCore().fit(grids.repeat(10, 1, 1, 1) + 0.01 * torch.randn(40, *grids.shape[1:]))
        reps = 10
        t_f = t_s = t_p = 0.0
        for _ in range(reps):
            t = time.perf_counter()
            g = bb.extract(img).features
            t_f += time.perf_counter() - t
            t = time.perf_counter()
            s = pc.patch_scores(g)
            t_s += time.perf_counter() - t
            t = time.perf_counter()
            upsample_map(s, 224, 4.0)
            t_p += time.perf_counter() - t
        tot = (t_f + t_s + t_p) / reps
        print(f"{name}: per image (batch 1) features {t_f / reps * 1000:.1f} ms, bank search {t_s / reps * 1000:.1f} ms "
              f"(bank {pc.bank.shape[0]}), post {t_p / reps * 1000:.1f} ms -> {1 / tot:.1f} img/s")


def anchor_throughput() -> None:
    """EfficientNet-Lite0 with a bank of the anchor's size (9,408 x 152), batch 1 and batch 8."""
    bb = Backbone("efficientnet_lite0")
    pc = PatchCore()
    pc.bank = clustered(9408, 152, seed=3).astype(np.float16)
    for batch in (1, 8):
        x = torch.randn(batch, 3, 224, 224)
        bb.extract(x)
        n = 0
        t = time.perf_counter()
        while time.perf_counter() - t < 5.0:
            maps, _ = pc.score(bb.extract(x).features, 224)
            n += batch
        dt = (time.perf_counter() - t) / n
        print(f"efficientnet_lite0, bank 9408, batch {batch}: {dt * 1000:.1f} ms/img = {1 / dt:.1f} img/s "
              f"(anomalib anchor 55.9 ms/img = 17.9 img/s at batch 1 -> {55.9 / (dt * 1000):.2f}x)")


if __name__ == "__main__":
    main()
