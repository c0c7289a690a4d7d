"""Archive scale: what a nightly rerun costs when nothing (or little) changed, from 10^3 to 10^6 images.

Run: .venv/bin/python benchmarks/bench_archive.py [--sizes 1000,10000,100000,1000000] [--stores local,s3]
         [--work /tmp/raydist-archive]

For each size N, on local disk and on an S3 server (moto, 127.0.0.1, started here; prints,
asserts nothing):
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
import contextlib
import io
import json
import math
import os
import resource
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
    from concurrent.futures import ThreadPoolExecutor

    from raydist.engine.evaluate import plan
    from raydist.storage import filesystem, join

    p = plan(data, model, out, cfg, resume=False)  # also clears what an earlier measurement left
    proto = template["images"][0]
    fs, parts = filesystem(join(out, "_parts"))  # one client: the simulation is not what is measured
    fs.makedirs(parts, exist_ok=True)

    def write(u) -> int:
        images = [{**proto, "image_id": f"{u.class_name}/test/good/{u.uid}-{i}", "class_name": u.class_name} for i in range(u.n_rows)]
        aggs = {u.class_name: next(iter(template["aggregates"].values()))}
        body = json.dumps({"unit": u.uid, "n_rows": u.n_rows, "images": images, "aggregates": aggs}).encode()
        fs.pipe_file(f"{parts}/{u.uid}.json", body)
        return len(body)

    with ThreadPoolExecutor(16) as pool:
        return sum(pool.map(write, p.units))


def peak_rss_mb() -> float:
    """This process's peak RSS since :func:`reset_peak` (VmHWM). Not ``ru_maxrss``: Linux keeps that
    across exec, so a child would report its parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        pass


def measure(data: str, model: str, out: str, n: int) -> dict:
    """One size, in this (fresh) process."""
    from raydist.config import EvalConfig
    from raydist.engine import results
    from raydist.engine.evaluate import finish, plan
    from raydist.methods import detector_class
    from raydist.model_store import load_meta
    from raydist.storage import filesystem, join

    cfg = EvalConfig()
    meta = load_meta(model)
    out_d: dict = {"n": n, "rss_after_imports_mb": peak_rss_mb()}
    fs, parts = filesystem(join(out, "_parts"))
    out_d["summary_mb"] = sum(i["size"] for i in fs.ls(parts, detail=True)) / 2**20

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
    out_d["peak_rss_mb"] = peak_rss_mb()
    return out_d


def changed(data: str, model: str, out: str, share: float) -> dict:
    """Plan time after ``share`` of the test files were rewritten (their units' summaries dropped),
    then after an option change (every unit stale). Run after :func:`measure` (it changes the results)."""
    from raydist.config import EvalConfig
    from raydist.engine.evaluate import plan
    from raydist.storage import filesystem

    fs, root = filesystem(data)
    files = sorted(f for f in fs.find(root) if f.rsplit("/", 1)[-1].startswith("test-"))
    for f in files[: max(1, round(share * len(files)))]:  # new content (a metadata key), same rows: its units must be redone
        import pyarrow.parquet as pq

        with fs.open(f, "rb") as fh:
            table = pq.read_table(fh)
        with fs.open(f, "wb") as fh:
            pq.write_table(table.replace_schema_metadata({"touched": str(time.time())}), fh, row_group_size=UNIT_ROWS)
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
    ap.add_argument("--stores", default="local,s3")
    ap.add_argument("--one", nargs=4, help=argparse.SUPPRESS)  # internal: DATA MODEL OUT N, measured in this process
    a = ap.parse_args(argv)
    work = Path(a.work)
    if a.one:
        reset_peak()
        data, model, out, n = a.one
        print(json.dumps({**measure(data, model, out, int(n)), **changed(data, model, out, 0.01)}))
        return 0
    work.mkdir(parents=True, exist_ok=True)
    rows = prepare(work)
    template = json.loads(next((work / "template" / "_parts").glob("*.json")).read_text())
    for store in a.stores.split(","):
        with (s3_server() if store == "s3" else contextlib.nullcontext()) as bucket:
            table = [run_size(store, bucket, work, n, rows, template) for n in (int(s) for s in a.sizes.split(","))]
        print_table(store, table)
    return 0


def run_size(store: str, bucket: str | None, work: Path, n: int, rows: list[dict], template: dict) -> dict:
    from raydist.config import EvalConfig

    local = work / f"archive-{n}"
    if not local.exists():
        t = time.perf_counter()
        build_archive(local, n, rows)
        print(f"[archive] {n} rows written in {time.perf_counter() - t:.1f} s", flush=True)
    data, model, out = str(local), str(work / "model"), str(work / f"results-{n}")
    if bucket:  # the same files on the S3 server
        import s3fs

        fs = s3fs.S3FileSystem()
        data, model, out = f"s3://{bucket}/archive-{n}", f"s3://{bucket}/model", f"s3://{bucket}/results-{n}"
        if not fs.exists(data):
            fs.put(str(local), data, recursive=True)
            fs.put(str(work / "model"), model, recursive=True)
    t = time.perf_counter()
    mb = simulate_results(data, model, out, template, EvalConfig()) / 2**20
    print(f"[archive] {store} {n}: {mb:.0f} MB of simulated summaries written in {time.perf_counter() - t:.1f} s", flush=True)
    res = subprocess.run([sys.executable, __file__, "--work", str(work), "--one", data, model, out, str(n)], capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(res.stderr[-3000:])
    row = json.loads(res.stdout.strip().splitlines()[-1])
    print(json.dumps(row), flush=True)
    return row


@contextlib.contextmanager
def s3_server():
    """A moto S3 server on 127.0.0.1 for this run (its own thread, stopped after), with a bucket."""
    import socket

    import boto3
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_REGION="us-east-1",
                      AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}")  # fmt: skip
    boto3.client("s3").create_bucket(Bucket="archive")
    try:
        yield "archive"
    finally:
        server.stop()


def print_table(store: str, table: list[dict]) -> None:
    cols = ["units", "summary_mb", "plan_unchanged_s", "metrics_s", "finish_s", "rss_after_imports_mb", "peak_rss_mb", "plan_1pct_changed_s", "plan_options_changed_s"]
    print(f"\n{store}: simulated summaries (one real unit summary replicated), {UNIT_ROWS} rows per unit")
    print(f"{'images':>9} " + " ".join(f"{c:>22}" for c in cols))
    for r in table:
        print(f"{r['n']:>9} " + " ".join(f"{r[c]:>22.2f}" if isinstance(r[c], float) else f"{r[c]:>22}" for c in cols))
    if len(table) > 1:
        ns = [r["n"] for r in table]
        print(f"{'slope':>9} " + " ".join(f"{slope(ns, [r[c] for r in table]):>22.2f}" for c in cols))


if __name__ == "__main__":
    raise SystemExit(main())
