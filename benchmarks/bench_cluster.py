"""How many CPU cores keep one scoring actor busy: the two stages of a Ray evaluate timed side by
side in one run, on the device a scoring actor would use.

Run: .venv/bin/python benchmarks/bench_cluster.py [--device cuda] [--images 40]   (prints, asserts nothing)

On the MVTec AD bottle dev category (``../shared/data``; generated data when absent), pretrained
EfficientNet-Lite0 at 224 px, PatchCore defaults:
- score stage (what a ScoringActor runs: decode, features, bank search, maps, THR), on ``--device``
  (default: cuda when present, else cpu), batch 8, images/s; the bank search alone in ms/image with
  the bank resident on that device (float16 on accelerators);
- segment stage (what a segment task runs: THR, TTT4AS's per-image SVMs, result rows), on ONE
  CPU thread, images/s per core;
- the ratio: CPU cores per scoring actor so the SVM stage keeps up.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fidelity import prepare  # noqa: E402

from raydist.config import EvalConfig  # noqa: E402
from raydist.data.dataset import read_table  # noqa: E402
from raydist.engine.rows import INPUT_COLUMNS  # noqa: E402
from raydist.engine.scoring import Scorer  # noqa: E402
from raydist.engine.stages import score_unit, segment_unit  # noqa: E402
from raydist.methods.patchcore.knn import nearest_distances  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/raydist-fidelity")
    ap.add_argument("--data-root", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the score stage (a CPU actor's cores)")
    ap.add_argument("--images", type=int, default=40)
    a = ap.parse_args(argv)
    name = "bottle"
    got = prepare(name, Path(a.work), Path(a.data_root)) or prepare("synthetic", Path(a.work), Path(a.data_root))
    name = name if "bottle" in got[0] else "synthetic"
    data, model = got
    rows = read_table(data, splits=["test"], columns=list(INPUT_COLUMNS)).to_pylist()[: a.images]
    cfg = EvalConfig(segment=("thr", "ttt4as"))

    torch.set_num_threads(a.threads)
    scorer = Scorer(model, cfg, device=a.device)
    score_unit(scorer, rows[:8], 8)  # warm-up: backbone, bank resident on the device
    sync = torch.cuda.synchronize if a.device.startswith("cuda") else (lambda: None)
    sync()
    t0 = time.perf_counter()
    scored = score_unit(scorer, rows, 8)
    sync()
    score_s = time.perf_counter() - t0

    det = scorer.detector(rows[0]["class_name"])
    bank = det.model.search_bank()
    grid = torch.as_tensor(scored[0].features, dtype=torch.float32, device=a.device)
    queries = grid.permute(1, 2, 0).reshape(-1, grid.shape[0])
    nearest_distances(queries, bank)
    sync()
    t0 = time.perf_counter()
    for _ in range(10):
        nearest_distances(queries, bank)
    sync()
    search_ms = (time.perf_counter() - t0) / 10 * 1000

    torch.set_num_threads(1)
    segment_unit("warm", scored[:4], cfg, 0.0)
    t0 = time.perf_counter()
    segment_unit("bench", scored, cfg, 0.0)
    seg_s = time.perf_counter() - t0

    n = len(rows)
    score_ips, seg_ips = n / score_s, n / seg_s
    print(f"{name}: {n} test images, bank {tuple(bank.rows.shape)} {bank.rows.dtype} on {bank.device}, {a.threads} scoring threads")
    print(f"score stage  ({a.device}): {score_ips:6.2f} images/s  ({1000 * score_s / n:.1f} ms/img; bank search {search_ms:.2f} ms/img)")
    print(f"segment stage (1 core, THR + TTT4AS): {seg_ips:6.2f} images/s per core  ({1000 * seg_s / n:.1f} ms/img)")
    print(f"CPU cores per scoring actor to keep up: {score_ips / seg_ips:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
