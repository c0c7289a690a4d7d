"""TTT4AS time per image against scoring time, measured side by side in one run, with the F1 it buys.

Run: .venv/bin/python benchmarks/bench_ttt4as.py [--work /tmp/raydist-fidelity]   (prints, asserts nothing)

1. On the MVTec AD bottle dev category (``../shared/data``; generated data when absent):
   PatchCore scoring per image (pretrained EfficientNet-Lite0, 224 px, batch 1, 2 threads:
   decode + features + bank search + map) and TTT4AS per anomalous image, under the defaults
   and the settings they replaced, with per-image F1 for each.
2. The dense prediction: exact ``upsample(w . F)`` against the naive ``w . upsample(F)``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fidelity import prepare  # noqa: E402

from raydist.fidelity import score_split, thr_block, ttt4as_block  # noqa: E402
from raydist.segment.ttt4as import dense_decision, dense_decision_naive  # noqa: E402

VARIANTS = {
    "defaults": {},
    "defaults, every positive (positive_stride=1)": {"positive_stride": 1},
    "previous defaults (grown 0.85 cap 32, margin 16, all labelled)": {
        "neighbourhood": "grow", "radius": 32, "margin": 16, "unlabelled": "none", "class_weight": None,
    },  # fmt: skip
    "first defaults (disk r8, standardize, all labelled)": {
        "neighbourhood": "disk", "radius": 8, "feature_scale": "standardize", "C": 0.001, "positive_stride": 1, "tol": 1e-4,
        "margin": 16, "unlabelled": "none", "class_weight": None,
    },  # fmt: skip
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/raydist-fidelity")
    ap.add_argument("--data-root", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    a = ap.parse_args(argv)
    torch.set_num_threads(2)
    name = "bottle"
    got = prepare(name, Path(a.work), Path(a.data_root))
    if got is None:
        name = "synthetic"
        got = prepare(name, Path(a.work), Path(a.data_root))
    split = score_split(*got, category=name, anomalous_only=True)
    print(f"{name}: {len(split.anomalous)} anomalous images; scoring {split.score_ms:.1f} ms/img (batch 1, 2 threads)")
    print(f"{'binariser':<56} {'F1':>6} {'ms/img':>7} {'share of scoring':>17}")
    print(f"{'THR':<56} {thr_block(split)['f1']:>6.3f}")
    for label, params in VARIANTS.items():
        ttt4as_block(split, params)  # warm-up pass (allocator, liblinear import)
        b = ttt4as_block(split, params)
        print(f"{'TTT4AS ' + label:<56} {b['f1']:>6.3f} {b['ms']:>7.1f} {100 * b['share']:>16.0f}%")

    rng = np.random.default_rng(0)
    for bb, d in (("efficientnet_lite0", 152), ("wrn50", 1536)):
        grid = torch.from_numpy(rng.standard_normal((d, 28, 28)).astype(np.float32))
        w = rng.standard_normal(d)
        t0 = time.perf_counter()
        for _ in range(10):
            dense_decision([grid], w, 0.0, (224, 224))
        fast = (time.perf_counter() - t0) / 10
        t0 = time.perf_counter()
        for _ in range(3):
            dense_decision_naive([grid], w, 0.0, (224, 224))
        naive = (time.perf_counter() - t0) / 3
        print(f"dense prediction {bb} (D={d}): exact {fast * 1000:.2f} ms vs naive {naive * 1000:.1f} ms -> {naive / fast:.0f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
