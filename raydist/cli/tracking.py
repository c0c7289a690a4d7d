"""MLflow for every verb, written once: the tracker (checked before any work), the job's run, and
closing it FAILED when the job raises."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys


def tracker(a: argparse.Namespace):
    """The verb's tracker, None with --no-tracking; fails fast when its server is unreachable."""
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


def report(t) -> None:
    """Say on stderr what could not be logged (the results on disk are complete either way)."""
    if t is not None and t.not_logged:
        print("tracking: NOT logged (results on disk are complete): " + "; ".join(t.not_logged), file=sys.stderr)


def start_run(t, a: argparse.Namespace, params: dict, model_label: str | None, split: str, model_uri: str | None = None, tags: dict | None = None):
    """Open the job's MLflow run now: named ``<verb> <dataset> <model> <date>``, the archive as a
    dataset input; ``model_uri`` as the user gave it (a folder or a registry reference)."""
    if t is None:
        return None
    from raydist.tracking.mlflow_tracker import dataset_name, dataset_record

    model_label = model_label or dataset_name(model_uri or getattr(a, "maps", "") or a.out)
    name = a.run_name or f"{a.verb} {dataset_name(a.data)} {model_label} {dt.date.today().isoformat()}"
    context = "training" if a.verb == "fit" else "evaluation"
    inputs = [dataset_record(a.data, split, context, a.classes)]
    all_tags = {"raydist.dataset": a.data, "raydist.model_uri": model_uri or a.out, **(tags or {})}
    return t.start(a.verb, params, all_tags, name, inputs)


class failing:
    """Close the run FAILED, with the reason, when the job raises (the error still propagates)."""

    def __init__(self, run):
        self.run = run

    def __enter__(self):
        return self

    def __exit__(self, kind, err, tb):
        if err is not None and self.run is not None:
            self.run.fail(f"{kind.__name__}: {err}")
        return False


def finish_evaluation(run, a: argparse.Namespace, report: dict) -> None:
    """Log the evaluation's metrics, its metrics.json and per-class table, an overlay gallery, and close the run."""
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
