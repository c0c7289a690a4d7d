"""Fit at size: PatchCore's coreset time, peak memory, coverage and AUROC at 200 / 1,000 / 2,000
train images, one exact greedy against greedy on random chunks (``--coreset-chunk``).

No real category here has 1,000 nominal train images, so the train sets are MVTec AD bottle's
real train images under the 8 flips and quarter turns of the square (a top-down bottle looks the
same turned) and, past 8x, the same again after a 90% centre crop: real patches, the
redundancy a large archive of one part has. Every (size, chunk) cell fits in a fresh process
(peak RSS is the process's when its fit ends: loading the features and the fit), on features extracted once (pretrained EfficientNet-Lite0, every
default), then scores bottle's 83 real test images: I-AUROC, P-AUROC. Coverage = the largest
and the mean distance of 20,000 sampled train patches to the bank (lower covers better).

    .venv/bin/python benchmarks/bench_fit_size.py [--sizes 200 1000 2000] [--chunks none 200000] [--timeout 900]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

CELL = r"""
import json, resource, sys, time
import numpy as np, torch
sys.path.insert(0, {root!r})
from raydist.methods.patchcore.patchcore import PatchCore, grid_to_patches
from raydist.methods.patchcore.knn import nearest_distances
from raydist.metrics.image import i_auroc
from raydist.metrics.pixel import p_auroc
grids = np.load({train!r}, mmap_mode="r")
test = np.load({test!r})
t0 = time.perf_counter()
pc = PatchCore(coreset_chunk={chunk}).fit(np.ascontiguousarray(grids))
fit_s = time.perf_counter() - t0
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the fit's: the measurements below hold more
patches = grid_to_patches(np.ascontiguousarray(grids[np.sort(np.random.default_rng(0).choice(len(grids), min(len(grids), 400), replace=False))]))
sample = patches[np.random.default_rng(1).choice(len(patches), min(len(patches), 20000), replace=False)]
d = np.asarray(nearest_distances(sample, pc.bank.astype(np.float32)))
maps, scores = pc.score(torch.as_tensor(test["grids"]), test["size"])
print(json.dumps(dict(fit_s=fit_s, peak_mb=peak_mb, bank=len(pc.bank),
      patches=int(np.prod(grids.shape[:1] + grids.shape[2:])), cover_max=float(d.max()), cover_mean=float(d.mean()),
      i_auroc=i_auroc(test["labels"], scores), p_auroc=p_auroc(test["masks"], maps))))
"""


def augmented(images: list[np.ndarray], n: int) -> list[np.ndarray]:
    """``n`` images: every image under the 8 symmetries of the square, then the same of its 90% centre crop."""
    from PIL import Image

    def crop(a: np.ndarray) -> np.ndarray:
        h, w = a.shape[:2]
        dh, dw = h // 20, w // 20
        return np.asarray(Image.fromarray(a[dh : h - dh, dw : w - dw]).resize((w, h), Image.BILINEAR))

    variants = [lambda a, k=k, f=f: np.rot90(a[:, ::-1] if f else a, k) for f in (0, 1) for k in range(4)]
    variants += [lambda a, v=v: v(crop(a)) for v in list(variants)]
    out = [np.ascontiguousarray(v(a)) for v in variants for a in images]
    if n > len(out):
        raise SystemExit(f"{n} images asked, {len(out)} possible from {len(images)} train images")
    return out[:n]


def features(work: Path, data_root: Path, sizes: list[int]) -> dict:
    """Train grids per size (.npy, mmap-able) and the test set's grids, labels and masks."""
    from fidelity import ingested

    from raydist.config import ModelConfig
    from raydist.data.dataset import read_table
    from raydist.engine.rows import INPUT_COLUMNS, decode_row
    from raydist.features.encoder import Encoder

    data, _ = ingested("bottle", work, data_root)
    enc = Encoder(ModelConfig())
    paths = {n: work / f"fit-size-train-{n}.npy" for n in sizes}
    test_path = work / "fit-size-test.npz"
    if not all(p.exists() for p in paths.values()):
        rows = read_table(str(data), splits=["train", "val"], columns=INPUT_COLUMNS).to_pylist()
        raw = [decode_row(r, enc.prep) for r in rows]
        for n, p in paths.items():
            if not p.exists():
                t0 = time.perf_counter()
                imgs = augmented([d.image for d in raw], n)
                np.save(p, np.concatenate([enc.extract(imgs[i : i + 64]) for i in range(0, n, 64)]))
                print(f"[fit-size] {n} train images: features {time.perf_counter() - t0:.1f} s")
    if not test_path.exists():
        rows = read_table(str(data), splits=["test"], columns=INPUT_COLUMNS).to_pylist()
        dec = [decode_row(r, enc.prep) for r in rows]
        np.savez(test_path, grids=enc.extract([d.image for d in dec]), labels=np.array([r["label"] for r in rows]),
                 masks=np.stack([d.gt for d in dec]), size=np.array(enc.size))  # fmt: skip
    return {"train": paths, "test": test_path}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[200, 1000, 2000])
    ap.add_argument("--chunks", nargs="+", default=["none", "200000"], help="'none' = one exact greedy")
    ap.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--work", type=Path, default=Path("/tmp/raydist-fidelity"))
    ap.add_argument("--timeout", type=float, default=900, help="seconds per cell before it is reported as not finished")
    args = ap.parse_args(argv)
    feats = features(args.work, args.data_root, args.sizes)
    print(f"{'train images':>12} {'patches':>10} {'chunk':>8} {'bank':>8} {'fit s':>8} {'peak MB':>8} {'cover max':>10} {'cover mean':>10} {'I-AUROC':>8} {'P-AUROC':>8}")
    for n in args.sizes:
        for chunk in args.chunks:
            code = CELL.format(root=str(ROOT), train=str(feats["train"][n]), test=str(feats["test"]), chunk=None if chunk == "none" else int(chunk))
            try:
                done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=args.timeout, check=True)
            except subprocess.TimeoutExpired:
                print(f"{n:>12} {'':>10} {chunk:>8}  not finished in {args.timeout:.0f} s")
                continue
            except subprocess.CalledProcessError as e:
                print(f"{n:>12} {chunk:>8} failed: {e.stderr[-500:]}")
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{n:>12} {r['patches']:>10,} {chunk:>8} {r['bank']:>8,} {r['fit_s']:>8.1f} {r['peak_mb']:>8.0f} {r['cover_max']:>10.2f} "
                  f"{r['cover_mean']:>10.3f} {r['i_auroc']:>8.3f} {r['p_auroc']:>8.4f}", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
