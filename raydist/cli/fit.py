"""`raydist fit`: one detector per fit unit (class, or the archive), saved as each finishes; the
model registered in MLflow."""

from __future__ import annotations

import argparse
import json

from raydist.cli import executors, tracking
from raydist.cli.args import add_fit_args, add_ray_args, add_tracking_args, model_config


def add_parser(sub, executor_default: str) -> None:
    p = sub.add_parser("fit", help="fit per-class PatchCore banks and THR statistics")
    add_fit_args(p)
    add_ray_args(p, executor_default, scoring=False, fitting=True)
    add_tracking_args(p)


def default_model_name(a: argparse.Namespace, cfg) -> str:
    from raydist.tracking.mlflow_tracker import dataset_name

    return f"{dataset_name(a.data)}-{cfg.method}"


def model_files(model_uri: str) -> list[str]:
    """model.json and the current units' files, relative to the model folder."""
    from raydist.model_store import load_meta

    units = load_meta(model_uri)["units"].values()
    return ["model.json", *sorted(f for u in units for f in (u["state"], u["state"].replace(".safetensors", ".json")))]


def run(a: argparse.Namespace) -> int:
    cfg = model_config(a)
    t = tracking.tracker(a)
    name = a.model_name or default_model_name(a, cfg)
    given = {k: v for k, v in cfg.to_dict().items() if k != "weights_id"}  # logged once the backbone has said it
    run = tracking.start_run(t, a, {"model": given, "data": a.data, "out": a.out, "executor": a.executor}, model_label=name, split="train")
    with tracking.failing(run):
        summary = executors.fit(a, cfg, a.out, a.batch_size)
    print(json.dumps(summary, indent=2))
    if run is None:
        return 0
    from raydist.storage import read_bytes

    run.log_params({"model.weights_id": summary["weights_id"]})
    run.step({f"fit_s/{unit}": s for unit, s in summary["fit_s"].items()}, step=0, force=True)  # seconds per fitted unit
    if not a.no_register:
        version = run.register_model(name, a.out, {rel: read_bytes(f"{a.out}/{rel}") for rel in model_files(a.out)})
        if version is not None:
            print(f"registered model {name} version {version}: evaluate it with --model models:/{name}/{version}")
    run.finish()
    print(f"mlflow run {run.run_id} at {t.shown_uri}")
    tracking.report(t)
    return 0
