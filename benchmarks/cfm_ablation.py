"""CFM's pipeline choices on real and generated RGB + point clouds: each choice on/off, side by side.

Datasets: the MVTec 3D-AD cable_gland sample in ../shared/data (6 train images: a smoke check of
real geometry, its AUROCs rest on 6 test images), and the generated 3D benchmark
(raydist.data.synth3d: textured parts on a tilted plane, sensor noise, dropouts; defects in 3D
only, colour only, both). Every variant is fitted and scored by the engine (the same code as
`raydist fit` / `evaluate`), next to RGB-only PatchCore on the same images. Prints I-AUROC,
P-AUROC (all defects, and per defect modality on generated data), THR / TTT4AS F1 (and TTT4AS
with the 2D and 3D features scaled as one block instead of each on its own), fit seconds and
images/s (scoring, batch 1);
asserts nothing.

Run: .venv/bin/python benchmarks/cfm_ablation.py [--only cable_gland,synth3d] [--variants NAME,...]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fidelity import ingested  # noqa: E402

from raydist.config import ModelConfig  # noqa: E402
from raydist.data.synth3d import MODALITY, Synth3DConfig, write_synth3d  # noqa: E402
from raydist.engine.fit import fit as fit_model  # noqa: E402
from raydist.fidelity import ScoredSplit, score_metrics, score_split, thr_block, ttt4as_block  # noqa: E402

# name -> model config; "defaults" is today's `--method cfm`
VARIANTS: dict[str, dict] = {
    "patchcore RGB only": {"method": "patchcore", "resize": 224, "crop": 224},
    "cfm defaults": {"method": "cfm"},
    "cfm crop 256->224": {"method": "cfm", "resize": 256, "crop": 224},
    "cfm plane fitted after resize": {"method": "cfm", "plane_fit": "resized"},
    "cfm every cell with a point scored": {"method": "cfm", "cfm_score_cells": "any"},
    "cfm FPFH stride 1": {"method": "cfm", "stride_3d": 1},
    "cfm FPFH stride 2": {"method": "cfm", "stride_3d": 2},
    "cfm sum": {"method": "cfm", "cfm_aggregation": "sum"},
    "cfm max": {"method": "cfm", "cfm_aggregation": "max"},
    "cfm previous defaults": {"method": "cfm", "resize": 256, "crop": 224, "plane_fit": "resized", "cfm_score_cells": "any"},
}


def data_of(name: str, work: Path, data_root: Path) -> Path | None:
    if name == "synth3d":
        data = work / "synth3d" / "data"
        if not data.exists():
            write_synth3d(str(data), Synth3DConfig(n_classes=3, n_train=20, n_val=4, n_test_good=6, n_test_bad=18))
        return data
    got = ingested(name, work, data_root)
    return None if got is None else got[0]


def subset(split: ScoredSplit, modality: str) -> ScoredSplit:
    keep = [s for s in split.images if s.label == 0 or MODALITY.get(s.defect_type) == modality]
    return ScoredSplit(split.category, keep, split.score_ms)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    ap.add_argument("--work", default="/tmp/raydist-fidelity")
    ap.add_argument("--only", default="cable_gland,synth3d")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--epochs", type=int, default=None, help="CFM epochs (default: the config's, the paper's 250)")
    a = ap.parse_args(argv)
    for name in a.only.split(","):
        data = data_of(name, Path(a.work), Path(a.data_root))
        if data is None:
            print(f"[cfm] {name}: data absent, skipped")
            continue
        mods = ("3d", "colour", "both") if name == "synth3d" else ()
        head = f"{'variant':<50} {'I-AUROC':>7} {'P-AUROC':>7} " + "".join(f"{'P-' + m:>9}" for m in mods)
        print(f"\n== {name}\n{head} {'THR F1':>7} {'TTT4AS':>7} {'1-block':>7} {'fit s':>6} {'img/s':>6}", flush=True)
        for v in a.variants.split(","):
            over = dict(VARIANTS[v])
            if a.epochs is not None and over["method"] == "cfm":
                over["cfm_epochs"] = a.epochs
            cfg = ModelConfig(**over)
            model = data.parent / ("model-abl-" + "-".join(f"{k}={val}" for k, val in sorted(over.items())))
            t = time.perf_counter()
            fit_model(str(data), str(model), cfg)
            fit_s = time.perf_counter() - t
            split = score_split(str(data), str(model), category=name)
            m = score_metrics(split)
            per = "".join(f"{score_metrics(subset(split, mod))['p_auroc']:>9.3f}" for mod in mods)
            thr, tt = thr_block(split)["f1"], ttt4as_block(split, {})["f1"]
            joint = float("nan")
            if over["method"] == "cfm":  # TTT4AS on the 2D + 3D features scaled as one block (before: one norm for both)
                one = ScoredSplit(split.category, [replace(s, feature_blocks=None) for s in split.images], split.score_ms)
                joint = ttt4as_block(one, {})["f1"]
            print(f"{v:<50} {m['i_auroc']:>7.3f} {m['p_auroc']:>7.3f} {per} {thr:>7.3f} {tt:>7.3f} {joint:>7.3f} {fit_s:>6.1f} "
                  f"{1000 / split.score_ms:>6.2f}", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
