"""Binarise another detector's maps: anomalib's PaDiM or PatchCore -> raydist's map format -> `raydist segment`.

Shows TTT4AS's "any detector" claim on the dev set: anomalib 2.7's PaDiM or PatchCore (its own venv, as in
benchmarks/vs_anomalib.py; never a project dependency) is fitted on the category's train images,
scores its val and test images, and the maps are written in the map format of docs/byo-maps.md
("Bring your own maps"); `raydist segment --segment thr,ttt4as,mebin` then binarises them with
the same backbone features TTT4AS uses on raydist's own maps. Prints the binariser table
(prints, asserts nothing).

Run: .venv/bin/python benchmarks/other_maps.py [--detector padim|patchcore] [--only bottle,kolektorsdd] [--work /tmp/raydist-fidelity]
The ingested data is shared with benchmarks/fidelity.py (same --work).
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fidelity import ingested  # noqa: E402
from vs_anomalib import RAYDIST, ensure_venv, run_child  # noqa: E402

from raydist.config import ModelConfig  # noqa: E402
from raydist.data.dataset import read_table  # noqa: E402
from raydist.engine.rows import INPUT_COLUMNS, decode_row  # noqa: E402
from raydist.features.encoder import Encoder  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a.astype(np.float32))
    return buf.getvalue()


def prepared(data: str, cfg: ModelConfig, out: Path) -> list[str]:
    """The train and val/test images as raydist preprocesses them, for anomalib; returns the scored ids."""
    prep = Encoder(cfg).prep
    rows = read_table(data, columns=INPUT_COLUMNS).to_pylist()
    tensors = {"train": [], "score": []}
    ids = []
    for r in rows:
        part = "train" if r["split"] == "train" else "score"
        tensors[part].append(prep.to_tensor([decode_row(r, prep).image])[0].numpy().astype(np.float16))
        if part == "score":
            ids.append(r["image_id"])
    np.savez(out, train=np.stack(tensors["train"]), score=np.stack(tensors["score"]))
    return ids


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--work", default="/tmp/raydist-fidelity")
    ap.add_argument("--only", default="bottle,kolektorsdd")
    ap.add_argument("--anomalib-venv", default=str(Path.home() / ".cache" / "raydist" / "anomalib-venv"))
    ap.add_argument("--detector", choices=("padim", "patchcore"), default="padim")
    ap.add_argument("--coreset", type=float, default=0.01,
                    help="anomalib PatchCore's coreset ratio: its k-center greedy is O(patches x bank); at 0.1 it takes "
                         "over an hour on KolektorSDD's 166 train images here, at 0.01 minutes")  # fmt: skip
    ap.add_argument("--segment", default="thr,ttt4as,mebin")
    ap.add_argument("--flags", default="", help="more `raydist segment` flags, e.g. '--unlabelled blob'")
    ap.add_argument("--tag", default="", help="suffix of the output folder (one per flag set)")
    a = ap.parse_args(argv)
    python = ensure_venv(Path(a.anomalib_venv))
    for name in a.only.split(","):
        got = ingested(name, Path(a.work), Path(a.data_root))
        if got is None:
            continue
        data, overrides = got
        work = data.parent
        cfg = ModelConfig(**{k: v for k, v in overrides.items() if k != "coreset_ratio"})
        det, label = a.detector, {"padim": "PaDiM", "patchcore": f"PatchCore (coreset {a.coreset:g})"}[a.detector]
        maps = work / f"{det}-maps.parquet"
        if not maps.exists():
            inputs = work / "anomalib-in.npz"
            ids = prepared(str(data), cfg, inputs)
            print(f"[{det}] {name}: fit + score {len(ids)} images in anomalib's venv ...", flush=True)
            wall, rss, _ = run_child([str(python), str(ROOT / "benchmarks" / "anomalib_maps.py"), det, str(inputs),
                                      str(work / f"{det}-out.npz"), str(torch.get_num_threads()), str(a.coreset)])  # fmt: skip
            print(f"[{det}] {name}: {wall:.0f} s, peak RSS {rss:.0f} MiB")
            got = np.load(work / f"{det}-out.npz")
            table = {"image_id": ids, "score_map": [npy(m) for m in got["maps"]], "image_score": [float(s) for s in got["scores"]]}
            pq.write_table(pa.table(table), maps)
        out = work / f"{det}-segment{a.tag}"
        flags = ["--resize", str(cfg.resize), "--crop", str(cfg.crop), "--aspect", str(cfg.aspect)]
        proc = subprocess.run([*RAYDIST, "segment", "--data", str(data), "--maps", str(maps), "--out", str(out), "--segment", a.segment,
                               *flags, *a.flags.split()], capture_output=True, text=True)  # fmt: skip
        if proc.returncode != 0:
            print(proc.stdout[-2000:], proc.stderr[-3000:])
            return proc.returncode
        m = json.loads((out / "metrics.json").read_text())
        mean, pooled = m["mean"], m["pooled"]
        print(f"\n== {name} (anomalib {label} maps, raydist segment): I-AUROC {mean.get('i_auroc', float('nan')):.3f} "
              f"P-AUROC {mean.get('p_auroc', float('nan')):.3f}")  # fmt: skip
        print(f"{'binariser':<10} {'f1':>7} {'f1_pooled':>9} {'precision':>9} {'recall':>7}")
        for b in a.segment.split(","):
            r = mean[b]
            print(f"{b:<10} {r['f1']:>7.3f} {pooled[b]['f1_pooled']:>9.3f} {r['precision']:>9.3f} {r['recall']:>7.3f}")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
