"""CFM inference speed and peak memory on this CPU: FPFH and Point-MAE (full and pruned) next to
RGB-only PatchCore on the same images, in one run (prints each images/s and its ratio to
PatchCore's; asserts nothing). Images: the generated 3D benchmark (raydist.data.synth3d) stored at
--size px (default 800, MVTec 3D-AD's resolution: decoding the image and the float32 cloud is part
of what a user pays; 224 = compute only), processed at 224 (12-15k points per part after the plane
is removed). Two measures:
- scoring: the first 20 test images scored one at a time by one Scorer (decode, features, maps);
- end to end: `evaluate` on all --test test images (default 48) with its defaults (THR + TTT4AS
  masks written, one worker thread per CPU), images/s once the scorer is built (in-run less its
  start-up) and with its start-up (the evaluate call whole: model load, first compile; Python's
  own start is not in it), PatchCore and the FPFH variants only.
PatchCore and the FPFH variants are fitted on --train nominal images (default 200, as an MVTec 3D-AD
category: PatchCore's bank size, hence its speed, depends on it); the Point-MAE variants, whose fit
only trains the mapping, on the first 20 of them (same test images). Speed only: CFM trains 5
epochs here.
Run: .venv/bin/python benchmarks/bench_cfm.py [--train 200] [--size 800] [--test 48] [--no-pointmae]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

from raydist.config import ModelConfig
from raydist.data.dataset import read_table, rows_to_table, write_table
from raydist.data.synth3d import Synth3DConfig, generate_rows
from raydist.engine.evaluate import evaluate
from raydist.engine.fit import fit as fit_model
from raydist.engine.rows import INPUT_COLUMNS
from raydist.engine.scoring import Scorer


def fps(model: str, rows: list[dict]) -> float:
    sc = Scorer(model)
    sc.score_rows(rows[:1])  # warm-up
    t = time.perf_counter()
    for r in rows:
        sc.score_rows([r])
    return len(rows) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=200)
    ap.add_argument("--size", type=int, default=800)
    ap.add_argument("--test", type=int, default=48, help="test images for the end-to-end runs (1/6 of them nominal)")
    ap.add_argument("--no-pointmae", action="store_true", help="PatchCore and the FPFH variants only")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp()
    data, small = f"{tmp}/data", f"{tmp}/small"
    rows = generate_rows(Synth3DConfig(n_classes=1, n_train=a.train, n_val=4, n_test_good=a.test // 6, n_test_bad=a.test - a.test // 6, size=a.size))
    write_table(rows_to_table(rows), data)
    write_table(rows_to_table([r for r in rows if r["split"] != "train"] + [r for r in rows if r["split"] == "train"][:20]), small)
    rows = read_table(data, splits=["test"], columns=INPUT_COLUMNS).to_pylist()[:20]
    pointmae = {"method": "cfm", "backbone_3d": "pointmae", "weights_3d": "none", "cfm_epochs": 5}
    variants = {
        "patchcore (EffNet-Lite0)": (data, ModelConfig(resize=224, crop=224)),
        "cfm EffNet-Lite0 + FPFH": (data, ModelConfig(method="cfm", cfm_epochs=5)),
        "cfm EffNet-Lite0 + FPFH, --stride-3d 2": (data, ModelConfig(method="cfm", cfm_epochs=5, stride_3d=2)),
        "cfm EffNet-Lite0 + Point-MAE full (12 blocks, random)": (small, ModelConfig(**pointmae)),
        "cfm EffNet-Lite0 + Point-MAE pruned (block 1, random)": (small, ModelConfig(**pointmae, block_3d=0)),
    }
    if a.no_pointmae:
        variants = {k: v for k, v in variants.items() if "Point-MAE" not in k}
    base = base_e2e = base_whole = None
    for name, (fit_data, cfg) in variants.items():
        model = f"{tmp}/{abs(hash(name))}"
        t = time.perf_counter()
        fit_model(fit_data, model, cfg)
        fit_s = time.perf_counter() - t
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        f = fps(model, rows)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        base = base or f
        print(f"{name}: scoring {f:.2f} img/s ({f / base:.2f}x PatchCore; fit {fit_s:.0f} s), process peak RSS {peak / 1024:.0f} MiB (+{(peak - before) / 1024:.0f})", flush=True)
        if fit_data == data:
            t = evaluate(data, model, f"{model}-out")["timing"]
            e2e = t["images_evaluated"] / (t["total_s"] - t["stages_s"].get("start_scorer", 0.0))
            whole = t["images_evaluated"] / t["total_s"]  # the scorer's start (model load, first compile) included
            base_e2e, base_whole = base_e2e or e2e, base_whole or whole
            print(f"{name}: end to end (evaluate, {t['workers']} workers, THR + TTT4AS, built) {e2e:.2f} img/s ({e2e / base_e2e:.2f}x PatchCore); "
                  f"with the scorer's start {whole:.2f} img/s ({whole / base_whole:.2f}x)", flush=True)
            per = {k: 1000 * v / t["images_evaluated"] for k, v in t["stages_s"].items() if k != "start_scorer"}
            print("    ms per image, summed over workers: " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(per.items(), key=lambda kv: -kv[1])), flush=True)


if __name__ == "__main__":
    main()
