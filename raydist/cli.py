"""``raydist`` command line: ingest | synth | fit | evaluate | nightly | compare | demo.

``jobs/<verb>.py`` reuse these parsers, so ``ray job submit -- python jobs/evaluate.py`` takes the
same flags as ``raydist evaluate``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from raydist import __version__
from raydist.data.ingest import FORMATS, KOLEKTOR_TRAIN_SHARE
from raydist.errors import ConfigError


def _add_fit_args(p: argparse.ArgumentParser) -> None:
    from raydist.features.backbones import BACKBONES

    p.add_argument("--data", required=True, help="dataset URI (local folder or s3://bucket/prefix)")
    p.add_argument("--out", required=True, help="model URI to write (local folder or s3://)")
    p.add_argument("--class", dest="classes", action="append", help="fit only this class (repeatable); default: all")
    p.add_argument("--backbone", default="efficientnet_lite0", choices=sorted(BACKBONES))
    p.add_argument("--weights", default=None, help="'none' (random), 'packaged' (EfficientNet-Lite0), or a local file; default per backbone")
    p.add_argument("--block", type=int, default=None, help="ViT block whose tokens are used (default: last)")
    p.add_argument("--proj-dim", type=int, default=None, help="average-pool features to this many channels")
    p.add_argument("--resize", type=int, default=256, help="resize side before the center crop (256, MVTec AD practice)")
    p.add_argument("--crop", type=int, default=224, help="center-crop side; equal to --resize means no crop (MVTec 3D-AD practice)")
    p.add_argument("--aspect", type=float, default=1.0,
                   help="height/width of the processed image: sides are resize*aspect x resize, then cropped alike "
                        "(e.g. 2.5 for KolektorSDD's ~630x250 images, so thin cracks are not squashed)")
    p.add_argument("--coreset-ratio", type=float, default=0.1)
    p.add_argument("--coreset-proj-dim", type=int, default=256)
    p.add_argument("--sigma", type=float, default=4.0, help="Gaussian smoothing of score maps, pixels")
    p.add_argument("--image-score", choices=["max", "top1"], default="max")
    p.add_argument("--thr-k", type=float, default=3.0, help="THR threshold = mu + k * sigma")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16)
    g = p.add_argument_group("method")
    g.add_argument("--method", choices=["patchcore", "cfm"], default="patchcore", help="cfm needs the xyz column (RGB + point cloud)")
    g.add_argument("--backbone-3d", choices=["fpfh", "pointmae"], default="fpfh", help="CFM's 3D extractor (fpfh needs no weights)")
    g.add_argument("--weights-3d", default=None, help="local Point-MAE checkpoint (default: random init)")
    g.add_argument("--block-3d", type=int, default=-1, help="Point-MAE block to map (layer pruning)")
    g.add_argument("--groups-3d", type=int, default=1024, help="Point-MAE groups (FPS centres)")
    g.add_argument("--plane-distance", type=float, default=0.005, help="background plane removal distance (data units)")
    g.add_argument("--cfm-epochs", type=int, default=250, help="crossmodal mapping epochs (paper: 250)")
    g.add_argument("--cfm-aggregation", choices=["product", "sum", "max"], default="product")
    g = p.add_argument_group("absolute-unified (CADA)")
    g.add_argument("--unified", action="store_true", help="one model for all classes mixed; class labels unused")
    g.add_argument("--route", choices=["none", "clusters"], default="none", help="none: one bank; clusters: label-free implicit classes")
    g.add_argument("--k", type=int, default=None, help="clusters for --route clusters (default: best silhouette in 2..10)")
    g.add_argument("--cada-iterations", type=int, default=2000)
    g.add_argument("--cada-dropout", type=float, default=0.25)
    g.add_argument("--cada-alpha", type=float, default=0.1)
    g.add_argument("--cada-variant", choices=["meanmax", "meanstd"], default="meanmax", help="meanstd = the (u, sigma) variant")


def _add_eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="dataset URI (its test split is evaluated)")
    p.add_argument("--model", required=True, help="model URI written by `raydist fit`")
    p.add_argument("--out", required=True, help="results URI: results/ (Parquet) + metrics.json")
    p.add_argument("--class", dest="classes", action="append", help="evaluate only this class (repeatable)")
    p.add_argument("--segment", default="thr,ttt4as", help="binarisers, comma-separated: thr,ttt4as,mebin")
    p.add_argument("--align", choices=["none", "cada", "class"], default=None, help="unified models: score alignment (default cada; class = CaDA-A, needs labels)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-pixels", type=int, default=64_000_000, help="images larger than this are refused (decompression-bomb guard)")
    g = p.add_argument_group("TTT4AS (defaults and their reasons: README, TTT4AS section)")
    from raydist.segment import pseudo_labels as pl
    from raydist.segment import ttt4as as tt

    g.add_argument("--percentile", type=float, default=pl.PERCENTILE)
    g.add_argument("--peak-size", type=int, default=pl.PEAK_SIZE)
    g.add_argument("--peak-level", type=float, default=pl.PEAK_LEVEL,
                   help="drop peaks below median + level * (highest peak - median); 0 = every peak above the percentile")
    g.add_argument("--radius", type=int, default=pl.RADIUS, help="positive neighbourhood radius (the cap, for grow)")
    g.add_argument("--neighbourhood", choices=pl.NEIGHBOURHOODS, default=pl.NEIGHBOURHOOD,
                   help="disk: every pixel within --radius of a peak; grow: pixels connected to the peak above --grow-level")
    g.add_argument("--grow-level", type=float, default=pl.GROW_LEVEL,
                   help="grow: keep pixels >= median + level * (peak - median)")
    g.add_argument("--erode", type=float, default=pl.ERODE, help="grow: drop region pixels within this distance of its border (px)")
    g.add_argument("--positive-stride", type=int, default=pl.POSITIVE_STRIDE, help="hard positives kept on a lattice of this step")
    g.add_argument("--nominal-stride", type=int, default=pl.NOMINAL_STRIDE)
    g.add_argument("--margin", type=int, default=pl.MARGIN)
    g.add_argument("--max-nominal", type=int, default=None)
    g.add_argument("--svm-c", type=float, default=tt.C_DEFAULT)
    g.add_argument("--class-weight", choices=["balanced"], default=None)
    g.add_argument("--feature-scale", choices=tt.FEATURE_SCALES, default=tt.FEATURE_SCALE,
                   help="raw (paper), norm (divide by the image's mean feature norm) or standardize (per channel)")
    g.add_argument("--svm-input", choices=["features", "score"], default="features")
    g.add_argument("--fallback", choices=["empty", "thr"], default="empty")


def _add_ray_args(p: argparse.ArgumentParser, default: str) -> None:
    g = p.add_argument_group("execution")
    g.add_argument("--executor", choices=["local", "ray"], default=default, help="in-process core path, or Ray")
    g.add_argument("--address", default=None, help="Ray address (default: RAY_ADDRESS, else an embedded local Ray)")
    g.add_argument("--num-actors", type=int, default=1, help="scoring actors (one per GPU on a GPU cluster)")
    g.add_argument("--gpus-per-actor", type=float, default=0.0)
    g.add_argument("--num-cpus", type=int, default=None, help="CPUs of an embedded local Ray (default: all)")


def _add_tracking_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("tracking (MLflow)")
    g.add_argument("--tracking-uri", default=None, help="default: MLFLOW_TRACKING_URI, else a sqlite store in the output folder")
    g.add_argument("--experiment", default="raydist")
    g.add_argument("--run-name", default=None)
    g.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    g.add_argument("--gallery-per-class", type=int, default=4, help="overlay PNGs logged per class")


def _ttt4as_params(a: argparse.Namespace) -> dict:
    return {
        "percentile": a.percentile,
        "peak_size": a.peak_size,
        "peak_level": a.peak_level,
        "radius": a.radius,
        "neighbourhood": a.neighbourhood,
        "grow_level": a.grow_level,
        "positive_stride": a.positive_stride,
        "erode": a.erode,
        "nominal_stride": a.nominal_stride,
        "margin": a.margin,
        "max_nominal": a.max_nominal,
        "C": a.svm_c,
        "class_weight": a.class_weight,
        "feature_scale": a.feature_scale,
        "svm_input": a.svm_input,
        "fallback": a.fallback,
    }


def build_parser(executor_default: str = "local") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raydist", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"raydist {__version__}")
    sub = parser.add_subparsers(dest="verb", required=True)

    p = sub.add_parser("ingest", help="convert a folder layout into the raydist Parquet format")
    p.add_argument("src", help="source folder")
    p.add_argument("dest", help="dataset URI to append to (local or s3://)")
    p.add_argument("--format", required=True, choices=list(FORMATS))
    p.add_argument("--val-fraction", type=float, default=0.2, help="train share moved to val for classes without val")
    p.add_argument("--train-share", type=float, default=KOLEKTOR_TRAIN_SHARE,
                   help="kolektorsdd: share of items whose defect-free images become train/val (split by item)")
    p.add_argument("--seed", type=int, default=0, help="seeds the val split (and the kolektorsdd item split)")

    p = sub.add_parser("synth", help="write a generated dataset (no download needed)")
    p.add_argument("dest")
    p.add_argument("--classes", type=int, default=3)
    p.add_argument("--train", type=int, default=12)
    p.add_argument("--val", type=int, default=4)
    p.add_argument("--test-good", type=int, default=4)
    p.add_argument("--test-bad", type=int, default=6)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--with-xyz", action="store_true", help="add an organized point cloud and 3D-only defects")
    p.add_argument("--defect-strength", type=float, default=1.0, help="0..1, lower = subtler defects (harder data)")
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("summary", help="print the per-class/split counts of a dataset")
    p.add_argument("data")

    p = sub.add_parser("fit", help="fit per-class PatchCore banks and THR statistics")
    _add_fit_args(p)
    _add_ray_args(p, executor_default)
    _add_tracking_args(p)

    p = sub.add_parser("evaluate", help="score the test split, binarise (THR, TTT4AS), write results + metrics.json")
    _add_eval_args(p)
    _add_ray_args(p, executor_default)
    _add_tracking_args(p)

    p = sub.add_parser("nightly", help="evaluate only test units not yet in RESULTS_URI (idempotent, on Ray)")
    _add_eval_args(p)
    _add_ray_args(p, "ray")
    _add_tracking_args(p)

    p = sub.add_parser("compare", help="table + trend chart of the last N runs of an MLflow experiment")
    p.add_argument("--experiment", default="raydist")
    p.add_argument("--tracking-uri", default=None, help="default: MLFLOW_TRACKING_URI")
    p.add_argument("--last", type=int, default=5)
    p.add_argument("--threshold", type=float, default=0.01, help="a per-class drop larger than this is a regression")
    p.add_argument("--chart", default=None, help="write a PNG trend chart here")
    return parser


def print_table(report: dict) -> None:
    """Per-class THR vs TTT4AS table, the summary users read first."""
    cols = ["i_auroc", "p_auroc", "aupro_30"]
    from raydist.metrics.report import BINARISERS

    bins = [b for b in BINARISERS if b in report["mean"]]
    head = f"{'class':<16}" + "".join(f"{c:>10}" for c in cols) + "".join(f"{'F1 ' + b:>12}" for b in bins) + f"{'errors':>8}"
    print(head)
    print("-" * len(head))

    def fmt(v) -> str:
        return "       nan" if v is None else f"{v:10.3f}"

    blocks = list(report["classes"].items()) + [("MEAN", report["mean"]), ("POOLED", report["pooled"])]
    for name, m in blocks:
        line = f"{name:<16}" + "".join(fmt(m[c]) for c in cols)
        line += "".join(f"{(m[b]['f1'] if m[b]['f1'] is not None else float('nan')):12.3f}" for b in bins)
        print(line + f"{m['n_errors']:>8}")


def main(argv: Sequence[str] | None = None, executor_default: str = "local") -> int:
    args = build_parser(executor_default).parse_args(argv)
    try:
        return _run(args)
    except ConfigError as e:
        print(f"raydist {args.verb}: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        from raydist.tracking import TrackingUnavailable

        if isinstance(e, TrackingUnavailable):
            print(f"raydist {args.verb}: error: {e}", file=sys.stderr)
            return 3
        raise


def _tracker(a: argparse.Namespace):
    """Fail fast (before any work) when tracking is on and its server is unreachable."""
    if a.no_tracking:
        return None
    from raydist.storage import is_remote
    from raydist.tracking import Tracker

    default = None
    if not (a.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")):
        default = Tracker.local_uri("mlflow-local" if is_remote(a.out) else a.out)
    t = Tracker(a.tracking_uri, a.experiment, default_uri=default)
    t.check()
    return t


def _report_tracking(t) -> None:
    if t is not None and t.not_logged:
        print("tracking: NOT logged (results on disk are complete): " + "; ".join(t.not_logged), file=sys.stderr)


def _run(a: argparse.Namespace) -> int:
    if a.verb == "ingest":
        from raydist.data.ingest import ingest

        rep = ingest(a.src, a.dest, a.format, a.val_fraction, a.seed, train_share=a.train_share)
        print(json.dumps({"written": rep.written, "n_errors": len(rep.errors)}, indent=2))
        for e in rep.errors:
            print(f"rejected: {e['error']}", file=sys.stderr)
        return 0
    if a.verb == "synth":
        from raydist.data.synth import SynthConfig, write_synth

        n = write_synth(a.dest, SynthConfig(a.classes, a.train, a.val, a.test_good, a.test_bad, a.size, a.with_xyz, a.seed, a.defect_strength))
        print(f"wrote {n} rows to {a.dest}")
        return 0
    if a.verb == "summary":
        from raydist.data.dataset import summarize

        print(json.dumps(summarize(a.data), indent=2))
        return 0
    if a.verb == "fit":
        from raydist.model_store import ModelConfig
        from raydist.pipeline import fit_model

        cfg = ModelConfig(
            backbone=a.backbone, weights=a.weights, block=a.block, proj_dim=a.proj_dim, resize=a.resize, crop=a.crop, aspect=a.aspect,
            coreset_ratio=a.coreset_ratio, coreset_proj_dim=a.coreset_proj_dim, sigma=a.sigma,
            image_score=a.image_score, thr_k=a.thr_k, seed=a.seed, method=a.method, backbone_3d=a.backbone_3d,
            weights_3d=a.weights_3d, block_3d=a.block_3d, groups_3d=a.groups_3d, plane_distance=a.plane_distance,
            cfm_epochs=a.cfm_epochs, cfm_aggregation=a.cfm_aggregation,
        )  # fmt: skip
        if cfg.thr_k < 0:
            raise ConfigError(f"--thr-k must be >= 0, got {cfg.thr_k}")
        tracker = _tracker(a)
        if a.unified:
            from raydist.unified import fit_unified

            if a.image_score == "max":
                cfg.image_score = "top1"  # CADA's image score; aligned maps are scored this way
            cada = {"iterations": a.cada_iterations, "dropout": a.cada_dropout, "alpha": a.cada_alpha, "variant": a.cada_variant}
            summary = fit_unified(a.data, a.out, cfg, a.route, a.k, cada, a.batch_size)
        elif a.executor == "ray":
            from raydist.distributed import evaluate as dist
            from raydist.distributed.fit import fit_model as fit_ray

            dist.init(a.address, a.num_cpus)
            summary = fit_ray(a.data, a.out, cfg, a.classes, a.batch_size, a.gpus_per_actor)
        else:
            summary = fit_model(a.data, a.out, cfg, a.classes, a.batch_size, log=print)
        print(json.dumps(summary, indent=2))
        if tracker is not None:
            from dataclasses import asdict

            from raydist.storage import join, read_bytes

            rid = tracker.log_job(
                "fit", {"model": asdict(cfg), "data": a.data, "out": a.out, "executor": a.executor},
                artifacts={"model.json": read_bytes(join(a.out, "model.json"))},
                tags={"raydist.dataset": a.data, "raydist.method": cfg.method, "raydist.backbone": cfg.backbone, "raydist.model_uri": a.out},
                run_name=a.run_name,
            )  # fmt: skip
            print(f"mlflow run {rid} at {tracker.shown_uri}")
            _report_tracking(tracker)
        return 0
    if a.verb in ("evaluate", "nightly"):
        from raydist.pipeline import EvalOptions, evaluate

        opts = EvalOptions(tuple(s for s in a.segment.split(",") if s), _ttt4as_params(a), a.batch_size, tuple(a.classes) if a.classes else None, a.align, a.max_pixels)
        opts.make_ttt4as()  # validate TTT4AS options before any work starts
        tracker = _tracker(a)
        if a.executor == "ray":
            from raydist.distributed import evaluate as dist

            dist.init(a.address, a.num_cpus)
            report = dist.evaluate(
                a.data, a.model, a.out, opts, num_actors=a.num_actors, gpus_per_actor=a.gpus_per_actor, resume=a.verb == "nightly"
            )
        elif a.verb == "nightly":
            raise ConfigError("nightly runs on Ray (--executor ray)")
        else:
            report = evaluate(a.data, a.model, a.out, opts, log=print)
        print_table(report)
        print(f"results: {a.out}/results  metrics: {a.out}/metrics.json")
        if tracker is not None:
            _log_evaluation(tracker, a, report)
        return 0
    if a.verb == "compare":
        from raydist.tracking.compare import compare_runs, format_table, trend_chart

        uri = a.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            raise ConfigError("give --tracking-uri or set MLFLOW_TRACKING_URI")
        try:
            cmp = compare_runs(uri, a.experiment, a.last, a.threshold)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        print(format_table(cmp))
        if a.chart:
            trend_chart(cmp, a.chart)
            print(f"chart: {a.chart}")
        return 0
    raise AssertionError(a.verb)


def _log_evaluation(tracker, a: argparse.Namespace, report: dict) -> None:
    from raydist.metrics.report import to_jsonable
    from raydist.overlays import render_gallery
    from raydist.storage import join, read_bytes
    from raydist.tracking.mlflow_tracker import class_table_csv, dataset_fingerprint

    artifacts = {"metrics.json": read_bytes(join(a.out, "metrics.json")), "per_class.csv": class_table_csv(report).encode()}
    try:
        for name, png in render_gallery(a.data, a.out, report["config"]["model"], a.gallery_per_class).items():
            artifacts[f"overlays/{name}"] = png
    except Exception as e:  # a figure must never cost the run its metrics
        print(f"tracking: overlays skipped: {type(e).__name__}: {e}", file=sys.stderr)
    artifacts["results_uri.txt"] = f"{a.out}/results\n".encode()
    cfg = report["config"]
    params = {
        "model": cfg["model"], "ttt4as": cfg.get("ttt4as") or {}, "segment": ",".join(cfg["segment"]),
        "data": {"uri": a.data, **dataset_fingerprint(a.data)}, "model_uri": a.model, "executor": a.executor,
    }  # fmt: skip
    tags = {
        "raydist.dataset": a.data, "raydist.method": cfg["model"].get("method", "patchcore"),
        "raydist.backbone": cfg["model"].get("backbone", ""), "raydist.model_uri": a.model,
    }  # fmt: skip
    rid = tracker.log_job(a.verb, params, to_jsonable(report), artifacts, tags, run_name=a.run_name)
    print(f"mlflow run {rid} at {tracker.shown_uri}")
    _report_tracking(tracker)


if __name__ == "__main__":
    sys.exit(main())
