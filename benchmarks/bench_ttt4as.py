"""TTT4AS per-image time: pseudo-labelling, SVM fit, dense prediction; exact vs naive dense path.
Run: .venv/bin/python benchmarks/bench_ttt4as.py   (prints figures, asserts nothing)
"""

from __future__ import annotations

import time

import numpy as np
import torch

from raydist.segment.ttt4as import TTT4AS, dense_decision, dense_decision_naive


def main() -> None:
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    for name, d in (("efficientnet_lite0", 152), ("wrn50", 1536)):
        grid = torch.from_numpy(rng.standard_normal((d, 28, 28)).astype(np.float32))
        yy, xx = np.mgrid[0:224, 0:224]
        score = (np.exp(-((yy - 100) ** 2 + (xx - 120) ** 2) / 200.0) + 0.05 * rng.random((224, 224))).astype(np.float32)
        grid[:5, 11:14, 13:17] += 2.0
        t = TTT4AS()
        tl = tf = tp = 0.0
        reps = 10
        for _ in range(reps):
            _, info = t.fit_predict(score, grid)
            tl += info["t_label"]
            tf += info["t_fit"]
            tp += info["t_predict"]
        w = rng.standard_normal(d)
        t0 = time.perf_counter()
        for _ in range(reps):
            dense_decision([grid], w, 0.0, (224, 224))
        fast = (time.perf_counter() - t0) / reps
        t0 = time.perf_counter()
        for _ in range(3):
            dense_decision_naive([grid], w, 0.0, (224, 224))
        naive = (time.perf_counter() - t0) / 3
        print(f"{name} (D={d}): label {tl / reps * 1000:.1f} ms, fit {tf / reps * 1000:.1f} ms, predict {tp / reps * 1000:.1f} ms; "
              f"dense exact {fast * 1000:.2f} ms vs naive {naive * 1000:.1f} ms -> {naive / fast:.0f}x")


if __name__ == "__main__":
    main()
