"""`raydist evaluate` (and `nightly`, `segment`, which share its run): score the test split,
binarise, write results + metrics.json, log the run."""

from __future__ import annotations

import argparse
import os
import sys

from raydist.cli import executors, tracking
from raydist.cli.args import add_eval_args, add_ray_args, add_tracking_args, eval_config

ERROR_WARN_SHARE = 0.1  # more failed rows than this share of the input: a warning on stderr


def add_parser(sub, executor_default: str) -> None:
    p = sub.add_parser("evaluate", help="score the test split, binarise (THR, TTT4AS), write results + metrics.json")
    add_eval_args(p)
    add_ray_args(p, executor_default)
    add_tracking_args(p)


def run(a: argparse.Namespace) -> int:
    """evaluate | nightly (resume: only units new or changed) | segment (another detector's maps)."""
    cfg = eval_config(a)
    executors.check(a)
    t = tracking.tracker(a)
    model_ref, model, version_tags = None, None, {}
    if a.model:
        from raydist.tracking.mlflow_tracker import resolve_model

        model_ref = a.model  # as given: a folder URI or models:/NAME/VERSION | models:/NAME@ALIAS
        model, version_tags = resolve_model(a.model, t.uri if t else os.environ.get("MLFLOW_TRACKING_URI"))
        if a.verb == "segment":  # the model that made the maps: its calibration (fit_maps_model)
            a.model, model, version_tags = model, None, {}
    run = None
    if t is not None:
        from raydist.model_store import load_meta
        from raydist.tracking.mlflow_tracker import dataset_fingerprint

        model_cfg = load_meta(model)["config"] if model else {"method": "maps", "maps": a.maps}
        params = {"model": model_cfg, "evaluate": cfg.to_dict(), "data": {"uri": a.data, **dataset_fingerprint(a.data)},
                  "model_uri": model_ref or a.maps, "executor": {"kind": a.executor}}  # fmt: skip
        label = f"{version_tags['raydist.model_name']}-v{version_tags['raydist.model_version']}" if version_tags else None
        run = tracking.start_run(t, a, params, model_label=label, split="test", model_uri=model_ref, tags=version_tags)
    with tracking.failing(run):
        if a.verb == "segment":
            from raydist.cli.segment import fit_maps_model

            model = fit_maps_model(a)
        progress = (lambda p: run.step({"progress/units_done": p.units, "progress/images_done": p.images,
                                         "progress/images_per_s": p.images / max(p.elapsed, 1e-9)}, p.units,
                                        force=p.units == p.total_units)) if run else None  # fmt: skip
        report = executors.evaluate(a, model, cfg, resume=a.verb == "nightly", on_progress=progress)
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
            tracking.finish_evaluation(run, a, report)
        print(f"mlflow run {run.run_id} at {t.shown_uri}")
        tracking.report(t)
    if failed:
        print(f"raydist {a.verb}: error: {failed}", file=sys.stderr)
        return 4
    return 0


def print_table(report: dict) -> None:
    """Per-class table, the summary users read first: each binariser's F1 (anomalous images) and
    SegF1 (all images), then the image decision's recall and share of good parts marked."""
    cols = ["i_auroc", "p_auroc", "aupro_30"]
    from raydist.metrics.report import BINARISERS

    bins = [b for b in BINARISERS if b in report["mean"]]
    head = f"{'class':<16}" + "".join(f"{c:>10}" for c in cols) + "".join(f"{b + ' F1/SegF1':>18}" for b in bins) + f"{'errors':>8}"
    print(head)
    print("-" * len(head))

    def fmt(v) -> str:
        return "       nan" if v is None else f"{v:10.3f}"

    def pair(b: dict) -> str:
        return f"{'nan' if b['f1'] is None else format(b['f1'], '.3f')}/{'nan' if b.get('segf1') is None else format(b['segf1'], '.3f')}"

    blocks = list(report["classes"].items()) + [("MEAN", report["mean"]), ("POOLED", report["pooled"])]
    for name, m in blocks:
        line = f"{name:<16}" + "".join(fmt(m[c]) for c in cols)
        line += "".join(f"{pair(m[b]):>18}" for b in bins)
        print(line + f"{m['n_errors']:>8}")
    d = report["pooled"].get("image") or {}
    if d.get("recall") is not None:
        marked = "n/a" if d.get("nominal_marked") is None else f"{d['nominal_marked']:.0%}"
        print(f"image decision: recall {d['recall']:.0%} of anomalous images, {marked} of good ones marked "
              f"({'masks only on images judged anomalous' if report['config']['evaluate'].get('gate', True) else '--no-gate: every image binarised'})")
    t = report.get("timing") or {}
    if t.get("stages_s"):
        busy = sorted(t["stages_s"].items(), key=lambda kv: -kv[1])
        where = ", ".join(f"{k} {v:.1f}" for k, v in busy[:6])
        print(f"time: {t['total_s']:.1f} s ({t['images_per_s']:.1f} images/s); stage seconds{' summed over workers' if t['workers'] > 1 else ''}: "
              f"{where}; overhead {t['overhead_s']:.1f}")
