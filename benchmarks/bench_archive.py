"""Archive scale: what a nightly rerun costs when nothing (or little) changed, from 10^3 to 10^6 images.

Run: .venv/bin/python benchmarks/bench_archive.py [--sizes 1000,10000,100000,1000000] [--work /tmp/raydist-archive]

For each size N, on local disk (prints, asserts nothing):
- the archive: N test rows in 3 classes (8 x 8 PNG images: planning reads only Parquet metadata
  and the image_id column, so image size does not change what is measured here), row groups of
  64 rows (one work unit each), files of 10,000 rows, plus a small real train/val split;
- the results: **simulated**: one real unit summary of a scored run (the default binarisers,
  3 classes) replicated under every planned unit's id with new image ids; nothing is scored;
- measured in a fresh process per size: ``plan`` of a nightly rerun with nothing changed, after
  1% of the files were rewritten and after a model/option change (every unit stale: the
  summaries' removal included); building ``metrics.json`` from all summaries; the process's peak
  RSS; summaries read and their bytes. Then each cost's slope against N on a log-log scale
  (1.0 = linear).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROWS_PER_FILE = 10_000
UNIT_ROWS = 64
CLASSES = ("blobs", "checker", "stripes")


def _png8() -> bytes:
    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def build_archive(root: Path, n: int, seed_rows: list[dict]) -> None:
    """N test rows + the seed's train/val rows, test files of ROWS_PER_FILE rows in row groups of UNIT_ROWS."""
    import pyarrow.parquet as pq

    from raydist.data.dataset import rows_to_table, write_table

    img = _png8()
    write_table(rows_to_table([r for r in seed_rows if r["split"] in ("train", "val")]), str(root), max_rows_per_group=UNIT_ROWS)
    per_class = [n // 3 + (1 if i < n % 3 else 0) for i in range(3)]
    for cls, m in zip(CLASSES, per_class):
        part = root / f"class_name={cls}" / "split=test"
        part.mkdir(parents=True, exist_ok=True)
        for f0 in range(0, m, ROWS_PER_FILE):
            rows = [{"image_id": f"{cls}/test/good/{i:07d}", "class_name": cls, "split": "test", "label": 0, "defect_type": "good",
                     "image": img, "mask": None, "xyz": None, "height": 8, "width": 8}
                    for i in range(f0, min(f0 + ROWS_PER_FILE, m))]  # fmt: skip
            table = rows_to_table(rows).drop_columns(["class_name", "split"])
            pq.write_table(table, part / f"test-{f0 // ROWS_PER_FILE:04d}.parquet", row_group_size=UNIT_ROWS)


def simulate_results(data: str, model: str, out: str, template: dict, cfg) -> int:
    """One summary per planned unit, the template's per-image records renamed; returns the bytes written."""
    from raydist.engine.evaluate import plan
    from raydist.storage import join, write_bytes

    p = plan(data, model, out, cfg, resume=False)
    proto = template["images"][0]
    written = 0
    for u in p.units:
        images = [{**proto, "image_id": f"{u.class_name}/test/good/{u.uid}-{i}", "class_name": u.class_name} for i in range(u.n_rows)]
        aggs = {u.class_name: next(iter(template["aggregates"].values()))}
        body = json.dumps({"unit": u.uid, "n_rows": u.n_rows, "images": images, "aggregates": aggs}).encode()
        write_bytes(join(out, "_parts", f"{u.uid}.json"), body)
        written += len(body)
    return written


def measure(work: Path, n: int) -> dict:
    """One size, in this (fresh) process."""
    from raydist.config import EvalConfig
    from raydist.engine import results
    from raydist.engine.evaluate import finish, plan
    from raydist.methods import detector_class
    from raydist.model_store import load_meta

    data, model, out = str(work / f"archive-{n}"), str(work / "model"), str(work / f"results-{n}")
    cfg = EvalConfig()
    meta = load_meta(model)
    out_d: dict = {"n": n, "rss_after_imports_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    summary_bytes = sum(f.stat().st_size for f in (Path(out) / "_parts").glob("*.json"))
    out_d["summary_mb"] = summary_bytes / 2**20

    t = time.perf_counter()
    p = plan(data, model, out, cfg, resume=True)
    out_d["plan_unchanged_s"] = time.perf_counter() - t
    out_d["units"] = len(p.units)
    assert not p.todo, f"{len(p.todo)} units to do with nothing changed"
    t = time.perf_counter()
    report = results.metrics_from_results(out, list(cfg.segment), detector_class(meta["config"]["method"]))
    out_d["metrics_s"] = time.perf_counter() - t
    assert report["pooled"]["n_images"] == n, report["pooled"]["n_images"]
    t = time.perf_counter()
    finish(p, out, {"kind": "local"}, 0, t, {})
    out_d["finish_s"] = time.perf_counter() - t  # metrics.json built and written, as nightly does
    out_d["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out_d


def changed(work: Path, n: int, share: float) -> dict:
    """Plan time after ``share`` of the test files were rewritten (their units' summaries dropped),
    then after an option change (every unit stale). Run after :func:`measure` (it changes the results)."""
    from raydist.config import EvalConfig
    from raydist.engine.evaluate import plan

    data, model, out = str(work / f"archive-{n}"), str(work / "model"), str(work / f"results-{n}")
    files = sorted(Path(data).rglob("test-*.parquet"))
    touched = files[: max(1, round(share * len(files)))]
    for f in touched:
        f.write_bytes(f.read_bytes())  # same content, new modification time: its units must be redone
    t = time.perf_counter()
    p = plan(data, model, out, EvalConfig(), resume=True)
    res = {"plan_1pct_changed_s": time.perf_counter() - t, "todo_after_change": len(p.todo)}
    t = time.perf_counter()
    p = plan(data, model, out, EvalConfig(gate=False), resume=True)  # another option: a new run key
    res["plan_options_changed_s"] = time.perf_counter() - t
    res["todo_after_options"] = len(p.todo)
    return res


def prepare(work: Path) -> list[dict]:
    """The small real part: a synthetic train/val/test set, a model fitted on it, one scored run (the template summary)."""
    from raydist.config import EvalConfig, ModelConfig
    from raydist.data.dataset import rows_to_table, write_table
    from raydist.data.synth import SynthConfig, generate_rows
    from raydist.engine.evaluate import evaluate
    from raydist.engine.fit import fit

    rows = generate_rows(SynthConfig(n_train=8, n_val=4, n_test_good=4, n_test_bad=6, size=64))
    if not (work / "model" / "model.json").exists():
        write_table(rows_to_table(rows), str(work / "seed"), max_rows_per_group=UNIT_ROWS)
        fit(str(work / "seed"), str(work / "model"), ModelConfig(backbone="wrn50", weights="none", resize=64, crop=64))
        evaluate(str(work / "seed"), str(work / "model"), str(work / "template"), EvalConfig())
    return rows


def slope(xs: list[float], ys: list[float]) -> float:
    lx, ly = [math.log(x) for x in xs], [math.log(max(y, 1e-9)) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / max(sum((a - mx) ** 2 for a in lx), 1e-12)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--work", default="/tmp/raydist-archive")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: measure one size in this process
    a = ap.parse_args(argv)
    work = Path(a.work)
    if a.one:
        print(json.dumps({**measure(work, a.one), **changed(work, a.one, 0.01)}))
        return 0
    work.mkdir(parents=True, exist_ok=True)
    rows = prepare(work)
    table = []
    for n in (int(s) for s in a.sizes.split(",")):
        if not (work / f"archive-{n}").exists():
            t = time.perf_counter()
            build_archive(work / f"archive-{n}", n, rows)
            print(f"[archive] {n} rows written in {time.perf_counter() - t:.1f} s", flush=True)
        out = work / f"results-{n}"
        if out.exists():
            shutil.rmtree(out)  # the last measurement's option change left every summary stale
        template = json.loads(next((work / "template" / "_parts").glob("*.json")).read_text())
        from raydist.config import EvalConfig

        t = time.perf_counter()
        mb = simulate_results(str(work / f"archive-{n}"), str(work / "model"), str(out), template, EvalConfig()) / 2**20
        print(f"[archive] {n}: {mb:.0f} MB of simulated summaries written in {time.perf_counter() - t:.1f} s", flush=True)
        res = subprocess.run([sys.executable, __file__, "--work", str(work), "--one", str(n)], capture_output=True, text=True)
        if res.returncode:
            print(res.stderr[-3000:])
            return 1
        table.append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(json.dumps(table[-1]), flush=True)
    cols = ["units", "summary_mb", "plan_unchanged_s", "metrics_s", "finish_s", "rss_after_imports_mb", "peak_rss_mb", "plan_1pct_changed_s", "plan_options_changed_s"]
    print(f"\nlocal disk, simulated summaries (one real unit summary replicated), {UNIT_ROWS} rows per unit")
    print(f"{'images':>9} " + " ".join(f"{c:>22}" for c in cols))
    for r in table:
        print(f"{r['n']:>9} " + " ".join(f"{r[c]:>22.2f}" if isinstance(r[c], float) else f"{r[c]:>22}" for c in cols))
    if len(table) > 1:
        ns = [r["n"] for r in table]
        print(f"{'slope':>9} " + " ".join(f"{slope(ns, [r[c] for r in table]):>22.2f}" for c in cols))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
