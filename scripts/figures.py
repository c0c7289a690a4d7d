"""The documentation's figures from real runs on the development set: docs/img/masks.png (image |
score map | masks | ground truth), docs/img/f1_by_size.png (F1 by defect size) and
docs/img/stages.png (where an evaluation's time goes).

For each category (bottle: large defects, transistor: small ones, KolektorSDD: thin cracks) it
ingests the category from ``--data-root``, fits PatchCore and runs ``evaluate`` with every default
(cached under ``--work``, the dev-set harness's folder: benchmarks/fidelity.py), then shows one
anomalous test image per category: the one the image gate passed whose mean F1 over the shown
binarisers is the median of the category, so the figure is typical, not picked. The stage figure
is the same runs' ``metrics.json["timing"]`` in ms per image. docs/img/figures.txt says the
commit, data, machine, image ids and each mask's F1.

    .venv/bin/python scripts/figures.py [--data-root ../shared/data] [--work /tmp/raydist-fidelity]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from fidelity import prepare  # noqa: E402

from raydist.config import EvalConfig  # noqa: E402
from raydist.data.dataset import read_table  # noqa: E402
from raydist.engine.evaluate import evaluate  # noqa: E402
from raydist.engine.results import results_uri  # noqa: E402
from raydist.metrics.binary import confusion, prf_from_counts  # noqa: E402
from raydist.overlays import grid_png, load_panels  # noqa: E402

CATEGORIES = ("bottle", "transistor", "kolektorsdd")
SHOWN = ("thr", "ttt4as", "arel", "ttpix")


def f1(gt: np.ndarray, pred: np.ndarray | None) -> float:
    return prf_from_counts([confusion(gt, np.zeros_like(gt) if pred is None else pred)])["f1"]


def typical(data: str, results: str, model_cfg: dict) -> tuple[dict, dict[str, float], str, list[dict]]:
    """The gate-passed anomalous image of median mean F1, its F1 per binariser, how it was chosen,
    and every anomalous image's defect area and F1 per binariser (gated ones included, at 0)."""
    rows = read_table(results_uri(results), columns=["image_id", "label", "is_anomalous", "error"]).to_pylist()
    anomalous = [r for r in rows if r["label"] == 1 and r["error"] is None]
    passed = {r["image_id"] for r in anomalous if r["is_anomalous"]}
    panels = load_panels(data, results, model_cfg, [r["image_id"] for r in anomalous])
    per_image = [{"area": int(p["gt"].sum()), **{b: f1(p["gt"], p["masks"].get(b)) for b in SHOWN}} for p in panels]
    scored = sorted((float(np.mean([f[b] for b in SHOWN])), p["image_id"], p, f) for p, f in zip(panels, per_image) if p["image_id"] in passed)
    _, _, chosen, scores = scored[len(scored) // 2]
    how = f"median of {len(scored)} anomalous images the gate passed (of {len(anomalous)})"
    return chosen, {b: scores[b] for b in SHOWN}, how, per_image


def sizes_png(per_image: list[dict], dpi: int = 72) -> bytes:
    """Mean F1 per binariser in five defect-area quintiles, every category's anomalous images pooled."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    area = np.array([r["area"] for r in per_image], dtype=float)
    edges = np.quantile(area, np.linspace(0, 1, 6))
    which = np.clip(np.searchsorted(edges, area, side="right") - 1, 0, 4)
    fig, ax = plt.subplots(figsize=(6.5, 3.2), dpi=dpi)
    x = np.arange(5)
    for b in SHOWN:
        f = np.array([r[b] for r in per_image])
        ax.plot(x, [f[which == i].mean() for i in x], marker="o", label=b.upper())
    ax.set_xticks(x, [f"{edges[i]:,.0f}-{edges[i + 1]:,.0f}" for i in x], fontsize=8)
    ax.set_xlabel(f"defect area, pixels at the evaluation size (quintiles of {len(area)} anomalous images)")
    ax.set_ylabel("mean F1 per image")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _cpu() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return "an unknown CPU"


def stages_png(timings: dict[str, dict], dpi: int = 72) -> bytes:
    """Horizontal bars, one group per category: each stage's seconds summed over the workers, per image."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = sorted({s for t in timings.values() for s in t["stages_s"]}, key=lambda s: -max(t["stages_s"].get(s, 0) / t["n"] for t in timings.values()))
    stages = [s for s in stages if max(t["stages_s"].get(s, 0) / t["n"] for t in timings.values()) >= 0.5e-3]
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(stages) + 1.0), dpi=dpi)
    height = 0.8 / len(timings)
    for k, (name, t) in enumerate(timings.items()):
        ms = [1e3 * t["stages_s"].get(s, 0) / t["n"] for s in stages]
        ax.barh([i + k * height for i in range(len(stages))], ms, height=height, label=f"{name} ({t['ips']:.1f} images/s whole run)")
    ax.set_yticks([i + height * (len(timings) - 1) / 2 for i in range(len(stages))], stages, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("ms per image (summed over the workers)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--work", type=Path, default=Path("/tmp/raydist-fidelity"))
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "masks.png")
    args = ap.parse_args(argv)
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    rows, titles, lines, timings, per_image = [], [], [], {}, []
    for name in CATEGORIES:
        got = prepare(name, args.work, args.data_root)
        if got is None:
            continue
        data, model = got
        results = str(args.work / name / "figure-results")
        if not (Path(results) / "metrics.json").exists():
            evaluate(data, model, results, EvalConfig())
        model_cfg = json.loads((Path(model) / "model.json").read_text())["config"]
        report = json.loads((Path(results) / "metrics.json").read_text())
        timings[name] = {"stages_s": report["timing"]["stages_s"], "n": report["pooled"]["n_images"], "ips": report["timing"]["images_per_s"]}
        panel, scores, how, images = typical(data, results, model_cfg)
        per_image += images
        rows.append(panel)
        titles.append(f"{name}\n{panel['image_id'].split('/')[-2]}")
        lines.append(f"- {name}: `{panel['image_id']}` ({how}); F1 " + ", ".join(f"{b.upper()} {v:.3f}" for b, v in scores.items()))
    if not rows:
        print(f"no development data under {args.data_root}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(grid_png(rows, SHOWN, titles))
    stages_out = args.out.with_name("stages.png")
    stages_out.write_bytes(stages_png(timings))
    sizes_out = args.out.with_name("f1_by_size.png")
    sizes_out.write_bytes(sizes_png(per_image))
    caption = [
        f"{args.out.name}, {stages_out.name} and {sizes_out.name}: made by `python scripts/figures.py` at commit {commit} on {_cpu()}",
        f"({os.cpu_count()} CPUs) from the development set",
        f"({args.data_root}: {', '.join(CATEGORIES)}), PatchCore with pretrained EfficientNet-Lite0 and every",
        "`raydist fit` / `raydist evaluate` default (KolektorSDD at the harness's 560 x 224 geometry, 2% coreset).",
        "One image per category: the anomalous image the gate passed whose mean F1 over THR, TTT4AS, AREL and TTPix is",
        "the category's median.",
        "",
        *lines,
        "",
        "Stages (ms per image, summed over the local executor's workers), from each run's metrics.json:",
        *(f"- {n}: " + ", ".join(f"{k} {1e3 * v / t['n']:.1f}" for k, v in sorted(t["stages_s"].items(), key=lambda kv: -kv[1])) + f"; {t['ips']:.1f} images/s whole run" for n, t in timings.items()),
    ]
    text_out = args.out.with_name("figures.txt")
    text_out.write_text("\n".join(caption) + "\n")
    print("\n".join(caption))
    print(f"wrote {args.out}, {stages_out}, {sizes_out} and {text_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
