"""``raydist`` command line: ingest | synth | fit | evaluate | nightly | compare | demo.

``jobs/<verb>.py`` reuse these parsers, so ``ray job submit -- python jobs/evaluate.py`` takes the
same flags as ``raydist evaluate``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence

from raydist import __version__
from raydist.data.ingest import FORMATS, KOLEKTOR_TRAIN_SHARE
from raydist.errors import ConfigError, StalledError


def _field_type(f: dataclasses.Field) -> type:
    t = str(f.type)
    return int if t.startswith("int") else float if t.startswith("float") else str


def add_config_args(p: argparse.ArgumentParser, cls: type, only: Sequence[str] | None = None) -> None:
    """One flag per config field, its help and default read from the field: a default lives in the
    config only (flags the user does not give are not passed, so the dataclass fills them in)."""
    from raydist.features.backbones import BACKBONES

    groups: dict[str | None, argparse._ArgumentGroup] = {}
    for f in dataclasses.fields(cls):
        if not f.metadata.get("cli", True) or (only is not None and f.name not in only):
            continue
        owner = f.metadata.get("method")
        if owner not in groups:
            groups[owner] = p.add_argument_group(f"{owner} only" if owner else "model")
        choices = sorted(BACKBONES) if f.name == "backbone" else f.metadata.get("choices")
        groups[owner].add_argument(
            "--" + f.name.replace("_", "-"), dest=f"cfg_{f.name}", metavar=None if choices else f.name.upper(), type=_field_type(f),
            choices=choices, default=argparse.SUPPRESS,
            help=f"{f.metadata['help']} (default: {f.default})".replace("%", "%%"),
        )  # fmt: skip


ERROR_WARN_SHARE = 0.1  # more failed rows than this share of the input: a warning on stderr

# what `segment` needs of a model: the backbone TTT4AS trains on and how images are processed
SEGMENT_FIELDS = ("backbone", "weights", "block", "proj_dim", "resize", "crop", "aspect", "image_score", "thr_k", "seed")


def model_config(a: argparse.Namespace):
    """The validated :class:`~raydist.config.ModelConfig` of the flags given (``--unified`` = ``--method unified``)."""
    from raydist.config import ModelConfig

    given = {k[4:]: v for k, v in vars(a).items() if k.startswith("cfg_")}
    if a.verb == "segment":
        return ModelConfig(method="maps", maps=a.maps, **given)
    if a.unified:
        if given.get("method", "unified") != "unified":
            raise ConfigError(f"--unified is --method unified; it cannot be combined with --method {given['method']}")
        given["method"] = "unified"
    return ModelConfig(**given)


def _add_fit_args(p: argparse.ArgumentParser) -> None:
    from raydist.config import ModelConfig

    p.add_argument("--data", required=True, help="dataset URI (local folder or s3://bucket/prefix)")
    p.add_argument("--out", required=True, help="model URI to write (local folder or s3://); a rerun fits only missing or changed classes")
    p.add_argument("--class", dest="classes", action="append", help="fit only this class (repeatable); default: all")
    p.add_argument("--batch-size", type=int, default=8, help="images per backbone forward pass")
    p.add_argument("--unified", action="store_true", help="shorthand for --method unified: one model for all classes mixed, class labels unused")
    p.add_argument("--model-name", default=None, help="MLflow registered model name (default: <dataset>-<method>); each fit adds a version")
    p.add_argument("--no-register", action="store_true", help="log the fit run but do not register the model in the MLflow Model Registry")
    add_config_args(p, ModelConfig)


def _add_eval_args(p: argparse.ArgumentParser, with_model: bool = True) -> None:
    from raydist.config import EvalConfig

    d = {f.name: f.default for f in dataclasses.fields(EvalConfig) if f.default is not dataclasses.MISSING}
    p.add_argument("--data", required=True, help="dataset URI (its test split is evaluated)")
    if with_model:
        p.add_argument("--model", required=True, help="model written by `raydist fit`: its folder URI, or models:/NAME/VERSION or models:/NAME@ALIAS (MLflow registry)")
    p.add_argument("--out", required=True, help="results URI: results/ (Parquet) + metrics.json")
    p.add_argument("--class", dest="classes", action="append", help="evaluate only this class (repeatable)")
    p.add_argument("--segment", default=argparse.SUPPRESS, help=f"binarisers, comma-separated: thr,ttt4as,mebin (default: {','.join(d['segment'])})")
    p.add_argument("--align", choices=["none", "cada", "class"], default=argparse.SUPPRESS,
                   help="unified models: score alignment (default cada; class = CaDA-A, needs labels)")
    p.add_argument("--batch-size", type=int, default=argparse.SUPPRESS, help=f"images per scoring batch (default: {d['batch_size']})")
    p.add_argument("--bank-search", choices=["exact", "bf16"], default=argparse.SUPPRESS,
                   help=f"memory-bank search: exact float32, or bfloat16 with a float32 re-rank of the row found (faster on CPUs with AVX512-BF16/AMX; default: {d['bank_search']})")
    p.add_argument("--backbone-runtime", choices=["torch", "openvino"], default=argparse.SUPPRESS,
                   help=f"what runs the backbone: torch, or OpenVINO (CNN backbones on the CPU, about half the feature time; pip install 'raydist[openvino]'; default: {d['backbone_runtime']})")
    p.add_argument("--max-pixels", type=int, default=argparse.SUPPRESS,
                   help=f"images larger than this are refused, a decompression-bomb guard (default: {d['max_pixels']})")
    from raydist.segment.base import flag_specs
    from raydist.segment.registry import BINARISERS

    for name, binariser in BINARISERS.items():  # every binariser's params, flags generated from its fields
        specs = flag_specs(binariser)
        if not specs:
            continue
        g = p.add_argument_group(f"{name} (--segment {name}; defaults and their reasons: README, binarisers)")
        for f in specs:
            # choices as the user types them ("none" for None), not as argparse prints the converted values
            metavar = "{" + ",".join("none" if c is None else str(c) for c in f.choices) + "}" if f.choices else f.field.upper()
            g.add_argument(f.flag, dest=f"bin__{name}__{f.field}", type=f.type, choices=f.choices, metavar=metavar,
                           default=argparse.SUPPRESS, help=f.help)  # fmt: skip


def eval_config(a: argparse.Namespace):
    """The validated :class:`~raydist.config.EvalConfig` of the flags given; a binariser's flags
    with a --segment list that does not name it are refused rather than ignored."""
    from raydist.config import EvalConfig

    kw = {k: getattr(a, k) for k in ("align", "batch_size", "max_pixels", "bank_search", "backbone_runtime") if hasattr(a, k)}
    if hasattr(a, "segment"):
        kw["segment"] = tuple(s for s in a.segment.split(",") if s)
    params: dict[str, dict] = {}
    for dest, value in vars(a).items():
        if dest.startswith("bin__"):
            _, name, key = dest.split("__", 2)
            params.setdefault(name, {})[key] = value
    return EvalConfig(params=params, classes=tuple(a.classes) if a.classes else None, **kw)


def _add_ray_args(p: argparse.ArgumentParser, default: str, scoring: bool = True, fitting: bool = False) -> None:
    """Executor flags; each resource flag sizes one kind of Ray worker and nothing else."""
    from raydist.config import STALL_TIMEOUT_S
    from raydist.engine.scoring import DEFAULT_CACHE_MB

    g = p.add_argument_group("execution")
    g.add_argument("--executor", choices=["local", "ray"], default=default, help="in-process core path, or Ray")
    g.add_argument("--address", default=None, help="Ray address (default: RAY_ADDRESS, else an embedded local Ray)")
    g.add_argument("--num-cpus", type=int, default=None, help="CPUs of an embedded local Ray (default: all)")
    if fitting:
        g.add_argument("--gpus-per-fit-task", type=float, default=0.0, help="Ray: GPUs per fit task (one task per class; 1 on GPU nodes)")
        g.add_argument("--cpus-per-fit-task", type=float, default=1.0, help="Ray: CPUs per fit task")
    if scoring:
        g.add_argument("--stall-timeout", type=float, default=STALL_TIMEOUT_S, metavar="SECONDS",
                       help="Ray: give up (exit 4, finished units kept) when nothing finishes or starts for this long and the work waited on fits no node (slow but placeable work is waited for)")  # fmt: skip
    elif fitting:  # one fit unit of a large class can take hours on CPU: no limit unless asked
        g.add_argument("--stall-timeout", type=float, default=None, metavar="SECONDS",
                       help="Ray: give up (exit 4, fitted units kept) when no fit unit finishes for this long and the tasks fit no node (default: no limit)")  # fmt: skip
    if scoring:
        g.add_argument("--workers", type=int, default=None,
                       help="local executor: worker threads, each scoring and binarising one batch at a time with one torch thread (default: one per usable CPU)")  # fmt: skip
        g.add_argument("--num-actors", type=int, default=1, help="Ray: scoring actors (backbone + resident banks; one per GPU on a GPU cluster)")
        g.add_argument("--gpus-per-actor", type=float, default=0.0, help="Ray: GPUs per scoring actor (1 puts them on GPU nodes)")
        g.add_argument("--cpus-per-actor", type=float, default=1.0, help="Ray: CPUs per scoring actor")
        g.add_argument("--cpus-per-task", type=float, default=1.0, help="Ray: CPUs per segment task (THR, TTT4AS's SVMs, MEBin for one unit)")
        g.add_argument("--cache-mb", type=float, default=DEFAULT_CACHE_MB,
                       help="fitted detectors (banks) kept resident per scorer, least recently used evicted beyond this")  # fmt: skip


def _add_tracking_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("tracking (MLflow)")
    g.add_argument("--tracking-uri", default=None, help="default: MLFLOW_TRACKING_URI, else a sqlite store in the output folder")
    g.add_argument("--experiment", default="raydist", help="MLflow experiment (created as a model-training experiment)")
    g.add_argument("--run-name", default=None, help="MLflow run name (default: '<verb> <dataset> <model> <date>')")
    g.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    g.add_argument("--gallery-per-class", type=int, default=4, help="overlay PNGs logged per class")


def build_parser(executor_default: str = "local") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raydist", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"raydist {__version__}")
    sub = parser.add_subparsers(dest="verb", required=True)

    p = sub.add_parser("ingest", help="convert a folder layout into the raydist Parquet format")
    p.add_argument("src", help="source folder")
    p.add_argument("dest", help="dataset URI to write (local or s3://); refused if it holds these classes already")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--overwrite", action="store_true", help="replace the partitions of the classes being ingested")
    g.add_argument("--append", action="store_true", help="add to the partitions already in DEST (ids must stay unique)")
    p.add_argument("--format", required=True, choices=list(FORMATS), help="source layout")
    p.add_argument("--val-fraction", type=float, default=0.2, help="train share moved to val for classes without val")
    p.add_argument("--train-share", type=float, default=KOLEKTOR_TRAIN_SHARE,
                   help="kolektorsdd: share of items whose defect-free images become train/val (split by item)")
    p.add_argument("--seed", type=int, default=0, help="seeds the val split (and the kolektorsdd item split)")

    p = sub.add_parser("synth", help="write a generated dataset (no download needed)")
    p.add_argument("dest", help="dataset URI to write (local or s3://)")
    p.add_argument("--classes", type=int, default=3, help="texture classes (default: 3)")
    p.add_argument("--train", type=int, default=12, help="nominal train images per class (default: 12)")
    p.add_argument("--val", type=int, default=4, help="nominal val images per class, for THR statistics (default: 4)")
    p.add_argument("--test-good", type=int, default=4, help="nominal test images per class (default: 4)")
    p.add_argument("--test-bad", type=int, default=6, help="defective test images per class (default: 6)")
    p.add_argument("--size", type=int, default=128, help="image side, pixels (default: 128)")
    p.add_argument("--with-xyz", action="store_true", help="add an organized point cloud and 3D-only defects")
    p.add_argument("--scenes", action="store_true",
                   help="the generated 3D benchmark instead: textured parts on a tilted plane, images rendered from the "
                        "clouds, defects in 3D only / colour only / both (raydist.data.synth3d; --defect-strength and "
                        "--with-xyz do not apply)")  # fmt: skip
    p.add_argument("--defect-strength", type=float, default=1.0, help="0..1, lower = subtler defects (harder data)")
    p.add_argument("--seed", type=int, default=0, help="seeds textures and defects (default: 0)")

    p = sub.add_parser("summary", help="print the per-class/split counts of a dataset")
    p.add_argument("data", help="dataset URI")

    p = sub.add_parser("fit", help="fit per-class PatchCore banks and THR statistics")
    _add_fit_args(p)
    _add_ray_args(p, executor_default, scoring=False, fitting=True)
    _add_tracking_args(p)

    p = sub.add_parser("evaluate", help="score the test split, binarise (THR, TTT4AS), write results + metrics.json")
    _add_eval_args(p)
    _add_ray_args(p, executor_default)
    _add_tracking_args(p)

    p = sub.add_parser("nightly", help="evaluate only the test units whose results are missing or stale (idempotent; on Ray unless --executor local)")
    _add_eval_args(p)
    _add_ray_args(p, "ray")
    _add_tracking_args(p)

    p = sub.add_parser("segment", help="binarise another detector's score maps (THR, TTT4AS, MEBin): bring your own maps")
    p.add_argument("--maps", required=True, help="Parquet dataset with image_id + score_map (.npy / PNG / TIFF), any resolution")
    _add_eval_args(p, with_model=False)
    from raydist.config import ModelConfig

    add_config_args(p, ModelConfig, only=SEGMENT_FIELDS)
    _add_ray_args(p, executor_default, fitting=True)
    _add_tracking_args(p)

    p = sub.add_parser("compare", help="table + trend chart of the last N runs of an MLflow experiment")
    p.add_argument("--experiment", default="raydist", help="MLflow experiment whose evaluation runs are compared")
    p.add_argument("--tracking-uri", default=None, help="default: MLFLOW_TRACKING_URI")
    p.add_argument("--last", type=int, default=5, help="how many of the newest runs to compare (default: 5)")
    p.add_argument("--threshold", type=float, default=0.01, help="a per-class drop larger than this is a regression")
    p.add_argument("--chart", default=None, help="write a PNG trend chart here")
    p.add_argument("--by-model", action="store_true", help="one line per registered model version (its newest run), versions in order")
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
    t = report.get("timing") or {}
    if t.get("stages_s"):
        busy = sorted(t["stages_s"].items(), key=lambda kv: -kv[1])
        where = ", ".join(f"{k} {v:.1f}" for k, v in busy[:6])
        print(f"time: {t['total_s']:.1f} s ({t['images_per_s']:.1f} images/s); stage seconds{' summed over workers' if t['workers'] > 1 else ''}: "
              f"{where}; overhead {t['overhead_s']:.1f}")


def main(argv: Sequence[str] | None = None, executor_default: str = "local") -> int:
    args = build_parser(executor_default).parse_args(argv)
    try:
        return _run(args)
    except ConfigError as e:
        print(f"raydist {args.verb}: error: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, PermissionError) as e:  # a missing dataset, bucket or model; a refused credential
        from raydist.tracking.mlflow_tracker import redact_uri

        what = "not found" if isinstance(e, FileNotFoundError) else "access denied"
        where = ""
        if e.filename is None:  # storage errors often name no path: say which locations the command used
            uris = [f"--{k} {redact_uri(str(v))}" for k in ("data", "maps", "model", "out") if isinstance(v := getattr(args, k, None), str)]
            where = f" (on one of: {', '.join(uris)})" if uris else ""
        print(f"raydist {args.verb}: error: {what}: {redact_uri(str(e.filename or e))}{where}", file=sys.stderr)
        return 2
    except StalledError as e:  # a Ray job that could not progress (raydist.distributed)
        print(f"raydist {args.verb}: error: stalled: {e}", file=sys.stderr)
        return 4
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

        mode = "overwrite" if a.overwrite else "append" if a.append else "new"
        try:
            rep = ingest(a.src, a.dest, a.format, a.val_fraction, a.seed, train_share=a.train_share, mode=mode)
        except FileExistsError as e:
            raise ConfigError(str(e)) from None
        print(json.dumps({"written": rep.written, "n_errors": len(rep.errors)}, indent=2))
        for e in rep.errors:
            print(f"rejected: {e['error']}", file=sys.stderr)
        return 0
    if a.verb == "synth" and a.scenes:
        from raydist.data.synth3d import Synth3DConfig, write_synth3d

        if a.defect_strength != 1.0:
            raise ConfigError("--defect-strength does not apply to --scenes")
        n = write_synth3d(a.dest, Synth3DConfig(a.classes, a.train, a.val, a.test_good, a.test_bad, a.size, a.seed))
        print(f"wrote {n} rows to {a.dest}")
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
        cfg = model_config(a)
        tracker = _tracker(a)
        given = {k: v for k, v in cfg.to_dict().items() if k != "weights_id"}  # logged once the backbone has said it
        run = _start_run(tracker, a, "fit", {"model": given, "data": a.data, "out": a.out, "executor": a.executor},
                         model_label=a.model_name or _default_model_name(a, cfg), split="train")  # fmt: skip
        with _failing(run):
            summary = _fit_with_executor(a, cfg, a.out, a.batch_size)
        print(json.dumps(summary, indent=2))
        if run is not None:
            from raydist.storage import read_bytes

            run.log_params({"model.weights_id": summary["weights_id"]})
            run.step({f"fit_s/{name}": s for name, s in summary["fit_s"].items()}, step=0, force=True)  # seconds per fitted unit
            if not a.no_register:
                name = a.model_name or _default_model_name(a, cfg)
                version = run.register_model(name, a.out, {rel: read_bytes(f"{a.out}/{rel}") for rel in _model_files(a.out)})
                if version is not None:
                    print(f"registered model {name} version {version}: evaluate it with --model models:/{name}/{version}")
            run.finish()
            print(f"mlflow run {run.run_id} at {tracker.shown_uri}")
            _report_tracking(tracker)
        return 0
    if a.verb in ("evaluate", "nightly", "segment"):
        cfg = eval_config(a)
        if a.executor == "ray" and a.workers is not None:
            raise ConfigError("--workers sizes the local executor; on Ray use --num-actors and --cpus-per-task")
        tracker = _tracker(a)
        version_tags: dict[str, str] = {}
        if a.verb != "segment":
            from raydist.tracking.mlflow_tracker import resolve_model

            a.model_ref = a.model  # as given: a folder URI or models:/NAME/VERSION | models:/NAME@ALIAS
            a.model, version_tags = resolve_model(a.model, tracker.uri if tracker else os.environ.get("MLFLOW_TRACKING_URI"))
        resume = a.verb == "nightly"
        run = None
        if tracker is not None:
            from raydist.model_store import load_meta
            from raydist.tracking.mlflow_tracker import dataset_fingerprint

            model_cfg = load_meta(a.model)["config"] if a.verb != "segment" else {"method": "maps", "maps": a.maps}
            params = {"model": model_cfg, "evaluate": cfg.to_dict(), "data": {"uri": a.data, **dataset_fingerprint(a.data)},
                      "model_uri": getattr(a, "model_ref", None) or a.maps, "executor": {"kind": a.executor}}  # fmt: skip
            label = f"{version_tags['raydist.model_name']}-v{version_tags['raydist.model_version']}" if version_tags else None
            run = _start_run(tracker, a, a.verb, params, model_label=label, split="test", tags=version_tags)
        with _failing(run):
            if a.verb == "segment":
                a.model = _fit_maps_model(a)
            progress = (lambda p: run.step({"progress/units_done": p.units, "progress/images_done": p.images,
                                             "progress/images_per_s": p.images / max(p.elapsed, 1e-9)}, p.units,
                                            force=p.units == p.total_units)) if run else None  # fmt: skip
            if a.executor == "ray":
                from raydist.distributed import evaluate as dist

                dist.init(a.address, a.num_cpus)
                report = dist.evaluate(a.data, a.model, a.out, cfg, dist.Resources(a.num_actors, a.gpus_per_actor, a.cpus_per_actor, a.cpus_per_task),
                                       resume=resume, cache_mb=a.cache_mb, on_progress=progress, stall_s=a.stall_timeout)  # fmt: skip
            else:
                from raydist.engine.evaluate import evaluate

                report = evaluate(a.data, a.model, a.out, cfg, resume=resume, log=print, on_progress=progress, cache_mb=a.cache_mb, workers=a.workers)
        print_table(report)
        print(f"results: {a.out}/results  metrics: {a.out}/metrics.json")
        pooled = report["pooled"]
        n_in = pooled["n_images"] + pooled["n_errors"]
        failed = None if pooled["n_images"] else f"no row could be evaluated: {pooled['n_errors']} of {n_in} failed (see the error column of {a.out}/results)"
        if n_in and pooled["n_errors"] > ERROR_WARN_SHARE * n_in and not failed:
            print(f"raydist {a.verb}: warning: {pooled['n_errors']} of {n_in} rows failed (see the error column of {a.out}/results)", file=sys.stderr)
        if run is not None:
            if failed:
                run.fail(failed)
            else:
                _finish_evaluation(run, a, report)
            print(f"mlflow run {run.run_id} at {tracker.shown_uri}")
            _report_tracking(tracker)
        if failed:
            print(f"raydist {a.verb}: error: {failed}", file=sys.stderr)
            return 4
        return 0
    if a.verb == "compare":
        from raydist.tracking.compare import compare_runs, format_table, trend_chart

        uri = a.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            raise ConfigError("give --tracking-uri or set MLFLOW_TRACKING_URI")
        try:
            cmp = compare_runs(uri, a.experiment, a.last if not a.by_model else 1000, a.threshold, a.by_model)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        print(format_table(cmp))
        if a.chart:
            trend_chart(cmp, a.chart)
            print(f"chart: {a.chart}")
        return 0
    raise AssertionError(a.verb)


def _fit_maps_model(a: argparse.Namespace) -> str:
    """`segment`: the maps "model" (THR statistics of the nominal val maps, per class) under OUT/model."""
    from raydist.storage import join

    if os.path.abspath(a.maps).startswith(os.path.abspath(a.out) + os.sep) or os.path.abspath(a.maps) == os.path.abspath(a.out):
        raise ConfigError("--maps lies inside --out, whose results are rewritten: write the results elsewhere")
    model = join(a.out, "model")
    _fit_with_executor(a, model_config(a), model, batch_size=8)
    return model


def _fit_with_executor(a: argparse.Namespace, cfg, out: str, batch_size: int) -> dict:
    """Fit ``cfg`` on ``a.data`` into ``out`` with the executor the flags chose."""
    if a.executor == "ray":
        from raydist.distributed import evaluate as dist
        from raydist.distributed.fit import fit as fit_ray

        dist.init(a.address, a.num_cpus)
        return fit_ray(a.data, out, cfg, a.classes, batch_size, a.gpus_per_fit_task, a.cpus_per_fit_task, stall_s=a.stall_timeout)
    from raydist.engine.fit import fit

    return fit(a.data, out, cfg, a.classes, batch_size, log=print)


def _default_model_name(a: argparse.Namespace, cfg) -> str:
    from raydist.tracking.mlflow_tracker import dataset_name

    return f"{dataset_name(a.data)}-{cfg.method}"


def _model_files(model_uri: str) -> list[str]:
    """model.json and the current units' files, relative to the model folder."""
    from raydist.model_store import load_meta

    units = load_meta(model_uri)["units"].values()
    return ["model.json", *sorted(f for u in units for f in (u["state"], u["state"].replace(".safetensors", ".json")))]


def _start_run(tracker, a: argparse.Namespace, verb: str, params: dict, model_label: str | None, split: str, tags: dict | None = None):
    """Open the job's MLflow run now: named ``<verb> <dataset> <model> <date>``, the archive as a dataset input."""
    if tracker is None:
        return None
    import datetime as dt

    from raydist.tracking.mlflow_tracker import dataset_name, dataset_record

    model_label = model_label or dataset_name(getattr(a, "model", None) or getattr(a, "maps", "") or a.out)
    name = a.run_name or f"{verb} {dataset_name(a.data)} {model_label} {dt.date.today().isoformat()}"
    context = "training" if verb == "fit" else "evaluation"
    inputs = [dataset_record(a.data, split, context, a.classes)]
    all_tags = {"raydist.dataset": a.data, "raydist.model_uri": getattr(a, "model_ref", None) or a.out, **(tags or {})}
    return tracker.start(verb, params, all_tags, name, inputs)


class _failing:
    """Close the run FAILED, with the reason, when the job raises (the error still propagates)."""

    def __init__(self, run):
        self.run = run

    def __enter__(self):
        return self

    def __exit__(self, kind, err, tb):
        if err is not None and self.run is not None:
            self.run.fail(f"{kind.__name__}: {err}")
        return False


def _finish_evaluation(run, a: argparse.Namespace, report: dict) -> None:
    from raydist.metrics.report import to_jsonable
    from raydist.overlays import render_gallery
    from raydist.storage import join, read_bytes
    from raydist.tracking.mlflow_tracker import class_table_csv

    artifacts = {"metrics.json": read_bytes(join(a.out, "metrics.json")), "per_class.csv": class_table_csv(report).encode()}
    try:
        for name, png in render_gallery(a.data, a.out, report["config"]["model"], a.gallery_per_class).items():
            artifacts[f"overlays/{name}"] = png
    except Exception as e:  # a figure must never cost the run its metrics
        print(f"tracking: overlays skipped: {type(e).__name__}: {e}", file=sys.stderr)
    artifacts["results_uri.txt"] = f"{a.out}/results\n".encode()
    model = report["config"]["model"]
    run.set_tags({"raydist.method": model.get("method", ""), "raydist.backbone": model.get("backbone", ""), "raydist.run_key": report["run_key"]})
    run.finish(to_jsonable(report), artifacts)


if __name__ == "__main__":
    sys.exit(main())
