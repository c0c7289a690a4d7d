"""Dense vs bound-pruned exact bank search, side by side on real patch features (prints, asserts nothing).

The bank and the queries are what `evaluate` searches: a 10% greedy coreset of the first N train
images' patches (pretrained EfficientNet-Lite0, stages 2 + 4) and every test image's patches of an
MVTec-layout category in ../shared/data. Per image (784 patches at 224 px): milliseconds of the
dense float32 product (the search before the bound index; still the search on accelerators and for
one-off searches) and of the bound index, on 1 and on all torch threads; exact distances measured
per query; whether both return the same rows, and the largest distance difference (the dense
product's float32 cancellation). Run:
    .venv/bin/python benchmarks/bench_bank_search.py [--src ../shared/data/mvtec-ad-bottle] [--train 120]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from raydist.config import ModelConfig  # noqa: E402
from raydist.features.encoder import Encoder  # noqa: E402
from raydist.methods.patchcore.coreset import greedy_coreset  # noqa: E402
from raydist.methods.patchcore.knn import SearchBank, nearest_distances  # noqa: E402
from raydist.methods.patchcore.patchcore import grid_to_patches  # noqa: E402


def images_under(folder: Path) -> list[Path]:
    """RGB images below an MVTec AD or MVTec 3D-AD folder (``rgb/`` there), masks left out."""
    skip = {"gt", "ground_truth", "xyz"}
    return sorted(f for f in folder.rglob("*") if f.suffix.lower() in {".png", ".jpg", ".bmp"} and not skip & set(f.parts))


def patches(enc: Encoder, files: list[Path]) -> np.ndarray:
    out = []
    for i in range(0, len(files), 8):
        images = [enc.prep.image(np.asarray(Image.open(f).convert("RGB"))) for f in files[i : i + 8]]
        out.append(grid_to_patches(enc.extract(images)))
    return np.concatenate(out)


def per_image_ms(queries: np.ndarray, sb: SearchBank, per: int, repeats: int) -> float:
    nearest_distances(queries[:per], sb)  # warm: kernels, caches
    t = time.perf_counter()
    for _ in range(repeats):
        for i in range(0, len(queries), per):
            nearest_distances(queries[i : i + per], sb)
    return (time.perf_counter() - t) / repeats / (len(queries) / per) * 1e3


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default=str(ROOT.parent / "shared" / "data" / "mvtec-ad-bottle"), help="an MVTec-layout category folder")
    ap.add_argument("--train", type=int, default=120)
    ap.add_argument("--test", type=int, default=40, help="test images searched (their patches are the queries)")
    ap.add_argument("--coreset", type=float, default=0.1)
    a = ap.parse_args(argv)
    src = Path(a.src)
    train_dir = next(src.rglob("train/good"), None)
    if train_dir is None:
        print(f"no MVTec-layout train/good folder under {src}: nothing to measure")
        return 0
    test_files = images_under(train_dir.parent.parent / "test")[: a.test]
    train_files = images_under(train_dir)[: a.train]
    enc = Encoder(ModelConfig(backbone="efficientnet_lite0", resize=256, crop=224))
    x = patches(enc, train_files)
    bank = x[greedy_coreset(x, max(1, int(round(len(x) * a.coreset))))].astype(np.float16)  # as a fitted model stores it
    q = patches(enc, test_files)
    per = len(q) // len(test_files)
    dense = SearchBank.build(bank, "cpu")
    indexed = SearchBank.build(bank, "cpu", index=True)
    d_dense, i_dense = nearest_distances(q, dense, return_index=True)
    d_bound, i_bound = nearest_distances(q, indexed, return_index=True)
    _, _, visited = indexed.bound.search(q, dense=None)
    print(f"{src.name}: bank {bank.shape[0]} x {bank.shape[1]} from {len(train_files)} train images, {len(q)} query patches "
          f"from {len(test_files)} test images ({per} per image); torch {torch.__version__}, {torch.get_num_threads()} threads")  # fmt: skip
    print(f"same nearest rows: {np.mean(i_dense == i_bound):.5f}; max |distance difference| {np.abs(d_dense - d_bound).max():.2e} "
          f"(distances {np.median(d_bound):.2f} median); exact distances per query: mean {visited.mean():.1f}, "
          f"p99 {np.percentile(visited, 99):.0f} of {bank.shape[0]}")  # fmt: skip
    differ = np.flatnonzero(i_dense != i_bound)
    if len(differ):  # which is right: float64 distances to both rows
        q64, b64 = q[differ].astype(np.float64), bank.astype(np.float64)
        to_bound = np.linalg.norm(q64 - b64[i_bound[differ]], axis=1)
        to_dense = np.linalg.norm(q64 - b64[i_dense[differ]], axis=1)
        print(f"where the rows differ ({len(differ)} queries), float64 puts the bound index's row nearer or equal in "
              f"{int((to_bound <= to_dense).sum())} (largest gap {np.abs(to_dense - to_bound).max():.1e})")  # fmt: skip
    threads = torch.get_num_threads()
    for n in sorted({1, threads}):
        torch.set_num_threads(n)
        ms_dense = per_image_ms(q, dense, per, 2)
        ms_bound = per_image_ms(q, indexed, per, 2)
        print(f"{n} thread(s): dense {ms_dense:.1f} ms / image, bound index {ms_bound:.1f} ms / image: {ms_dense / ms_bound:.2f}x")
    torch.set_num_threads(threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
