"""Fidelity harness: ingest -> fit -> score once -> every binariser, per dev category.

Run: .venv/bin/python benchmarks/fidelity.py [--data-root ../shared/data] [--work /tmp/raydist-fidelity]
         [--only bottle,kolektorsdd] [--sweep radius=2,4,8 --sweep feature_scale=raw,norm]
Prints one table per category (prints, asserts nothing): every registered binariser at its
defaults and the best fixed REL level (an oracle), with the image gate and without, by F1 and IoU
(anomalous images), SegF1 and the share of nominal images marked (all images), ms per image; then,
with --sweep, TTT4AS under each setting. Ingests and fitted models are cached under --work, so a
second run with another sweep only re-binarises.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from raydist.config import ModelConfig  # noqa: E402
from raydist.data.ingest import ingest  # noqa: E402
from raydist.data.synth import SynthConfig, write_synth  # noqa: E402
from raydist.engine.fit import fit as fit_model  # noqa: E402
from raydist.fidelity import (  # noqa: E402
    binariser_block,
    image_decision,
    mebin_block,
    parse_sweep,
    rel_oracle,
    score_metrics,
    score_split,
    thr_block,
    ttt4as_block,
)
from raydist.segment.registry import BINARISERS  # noqa: E402
from raydist.segment.ttt4as import TTT4AS  # noqa: E402

# category -> (source folder under the data root, ingest format, model config overrides)
CATEGORIES = {
    "bottle": ("mvtec-ad-bottle", "mvtec-ad", {}),
    "transistor": ("mvtec-ad-transistor", "mvtec-ad", {}),
    "kolektorsdd": ("kolektorsdd", "kolektorsdd", {"resize": 224, "crop": 224, "aspect": 2.5, "coreset_ratio": 0.02}),
    "tire": ("mvtec3d-rgb-tire", "mvtec-3d", {"resize": 224, "crop": 224}),
    "cable_gland": ("mvtec3d-mini", "mvtec-3d", {"resize": 224, "crop": 224}),
}
COLS = ("f1", "f1_pooled", "precision", "recall", "f1_small", "f1_medium", "f1_large", "area_pred")


def ingested(name: str, work: Path, data_root: Path) -> tuple[Path, dict] | None:
    """The category's dataset under ``work`` (ingested once) and its model config overrides; None
    when its source is absent. Shared with benchmarks/other_maps.py."""
    data = work / name / "data"
    if name == "synthetic":
        if not data.exists():  # the README demo's data: 224 px, framed like MVTec 3D-AD (no crop)
            write_synth(str(data), SynthConfig(size=224, seed=0))
        return data, {"resize": 224, "crop": 224}
    sub, fmt, overrides = CATEGORIES[name]
    src = data_root / sub
    if not src.is_dir():
        print(f"[fidelity] {name}: {src} absent, skipped")
        return None
    if not data.exists():
        ingest(src, str(data), fmt)
    return data, overrides


def prepare(name: str, work: Path, data_root: Path, method: str = "patchcore") -> tuple[str, str] | None:
    got = ingested(name, work, data_root)
    if got is None:
        return None
    data, overrides = got
    model = work / name / ("model" if method == "patchcore" else f"model-{method}")
    if method != "patchcore":  # another detector's maps: CFM (RGB + point cloud, needs xyz) at the paper's settings
        overrides = {k: v for k, v in overrides.items() if k != "coreset_ratio"} | {"method": method}
    fit_model(str(data), str(model), ModelConfig(**overrides), log=print)  # reuses what is fitted with this config and data
    return str(data), str(model)


def row(label: str, b: dict) -> str:
    cells = " ".join(f"{b.get(c, float('nan')):>9.3f}" if c != "area_pred" else f"{b[c]:>9.0f}" for c in COLS)
    extra = f" {b['ms']:>7.1f} {100 * b['share']:>6.0f}%" if "ms" in b else ""
    return f"{label:<58} {cells}{extra}"


def mask_table(split) -> str:
    """Every registered binariser at its defaults, and the oracle's fixed REL level, gated | ungated."""
    head = f"{'binariser (defaults)':<30} | {'gated: F1':>9} {'SegF1':>6} {'nom.mk':>6} {'IoU':>6} | {'ungated: F1':>11} {'SegF1':>6} {'nom.mk':>6} {'IoU':>6} | {'ms/img':>6}"
    lines = [head, "-" * len(head)]
    rows = [(name, b(), None) for name, b in BINARISERS.items()]
    try:
        import gudhi  # noqa: F401  (benchmark-only extra: pip install 'raydist[bench]')
        from topotta import TopoTTAPseudoMask

        rows.append(("TopoTTA pseudo-mask", TopoTTAPseudoMask(), None))
    except ImportError:
        print("[fidelity] gudhi not installed: no TopoTTA row (pip install 'raydist[bench]')")
    (best_g, gated), (best_u, ungated) = rel_oracle(split, True), rel_oracle(split, False)
    rows.append((f"rel, best fixed level {best_g:.2f} | {best_u:.2f}", None, (gated, ungated)))
    for label, b, blocks in rows:
        g, u = blocks or (binariser_block(split, b, True), binariser_block(split, b, False))
        lines.append(f"{label:<30} | {g['f1']:>9.3f} {g['segf1']:>6.3f} {g['nominal_marked']:>6.0%} {g['iou']:>6.3f} | "
                     f"{u['f1']:>11.3f} {u['segf1']:>6.3f} {u['nominal_marked']:>6.0%} {u['iou']:>6.3f} | {u['ms']:>6.1f}")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    ap.add_argument("--work", default="/tmp/raydist-fidelity")
    ap.add_argument("--only", default="bottle,transistor,kolektorsdd,tire,cable_gland,synthetic")
    ap.add_argument("--sweep", action="append", default=[], help="name=v1,v2 (TTT4AS parameter); repeatable: a grid")
    ap.add_argument("--method", choices=["patchcore", "cfm"], default="patchcore",
                    help="the detector whose maps are binarised (cfm: categories with point clouds, e.g. cable_gland)")
    a = ap.parse_args(argv)
    grid = parse_sweep(a.sweep) if a.sweep else []
    default = TTT4AS().get_params()
    for name in a.only.split(","):
        got = prepare(name, Path(a.work), Path(a.data_root), a.method)
        if got is None:
            continue
        split = score_split(*got, category=name)
        sm = score_metrics(split)
        area = thr_block(split)["area_true"]
        dec = image_decision(split)
        print(f"\n== {name} ({a.method} maps): {len(split.images)} test images, {len(split.anomalous)} anomalous, mean true area {area:.0f} px; "
              f"I-AUROC {sm['i_auroc']:.3f} P-AUROC {sm['p_auroc']:.3f} AUPRO@30 {sm['aupro_30']:.3f}; scoring {split.score_ms:.1f} ms/img; "
              f"image gate: recall {dec['recall']:.0%}, nominal images passed {dec['nominal_marked']:.0%}")  # fmt: skip
        print(mask_table(split))
        if not grid:
            continue
        print(f"{'binariser':<58} " + " ".join(f"{c:>9}" for c in COLS) + f" {'ms/img':>7} {'share':>7}")
        print(row("THR (mu + 3 sigma)", thr_block(split)))
        print(row("MEBin (per image, AnomalyNCD defaults)", mebin_block(split)))
        print(row("TTT4AS defaults", ttt4as_block(split, {})))
        for over in grid:
            label = " ".join(f"{k}={v}" for k, v in over.items() if default.get(k) != v) or "(= defaults)"
            print(row(f"TTT4AS {label}", ttt4as_block(split, over)))
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
