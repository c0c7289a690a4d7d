"""Distributed evaluation on Ray: scoring actors hold the backbone and banks; SVM tasks on CPUs.

Flow per work unit (one Parquet row group of the test split):
    ScoringActor.score_unit(unit) -> [Scored] in the object store (score map, float16 feature grid)
    segment_unit task (num_cpus=1) -> THR + TTT4AS masks, results Parquet part, metric summary
The driver only moves unit descriptors and small summaries; in-flight work is bounded, so memory
stays flat however large the archive is.
"""

from __future__ import annotations

import io
import json
import os
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray

from raydist.data.dataset import duplicate_ids
from raydist.distributed.units import Unit, list_units, read_unit, run_key
from raydist.errors import ConfigError
from raydist.metrics.aggregates import PixelAggregate
from raydist.metrics.binary import confusion
from raydist.metrics.summary import report_from_summaries
from raydist.model_store import load_meta
from raydist.pipeline import (
    BINARISERS,
    INPUT_COLUMNS,
    RESULT_SCHEMA,
    EvalOptions,
    Scored,
    alignment_block,
    make_scorer,
    reset_results,
    result_row,
    segment_scored,
    write_metrics,
)
from raydist.progress import Progress
from raydist.segment.mebin import MEBin
from raydist.segment.ttt4as import TTT4AS
from raydist.storage import filesystem, join, read_bytes, write_bytes


def token_auth_env(environ: dict[str, str] | None = None) -> str | None:
    """Where this client's Ray token comes from (None: nowhere), turning token mode on when one exists.

    Ray clients need both ``RAY_AUTH_MODE=token`` and a token (``RAY_AUTH_TOKEN``,
    ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``); with a token alone a token-auth cluster
    refuses them. The token itself is never read, printed or logged here.
    """
    from pathlib import Path

    env = os.environ if environ is None else environ
    source = next((v for v in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH") if env.get(v)), None)
    if source is None and (Path.home() / ".ray" / "auth_token").is_file():
        source = "~/.ray/auth_token"
    if source is not None and not env.get("RAY_AUTH_MODE"):
        env["RAY_AUTH_MODE"] = "token"
    return source


def init(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to the cluster (``RAY_ADDRESS`` / ``address``) or start an embedded local Ray."""
    if ray.is_initialized():
        return
    target = address or os.environ.get("RAY_ADDRESS")
    if target:
        source = token_auth_env()
        try:
            ray.init(address=target, log_to_driver=True)
        except ConnectionError as e:
            hint = (f"a token is set ({source}); check that it is this cluster's" if source else
                    "no Ray token is set here: clusters started from cluster/ use token authentication; "
                    "export RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH (the token file `ray get-auth-token` wrote)")  # fmt: skip
            raise ConfigError(f"cannot connect to the Ray cluster at {target}: {e}; {hint}") from None
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=True, _node_ip_address="127.0.0.1")


@ray.remote(max_restarts=2, max_task_retries=2)
class ScoringActor:
    """Loads the backbone once (on its GPU if it was given one) and keeps an LRU of class banks."""

    def __init__(self, model_uri: str, data_uri: str, storage_options=None, max_banks: int = 16, align: str | None = None,
                 max_pixels: int | None = None, duplicates: dict[str, int] | None = None):  # fmt: skip
        self.data_uri = data_uri
        self.storage_options = storage_options
        kw = {} if "unified" in load_meta(model_uri, storage_options) else {"max_banks": max_banks}
        if max_pixels:
            kw["max_pixels"] = max_pixels
        self.scorer = make_scorer(model_uri, align, storage_options=storage_options, duplicates=duplicates, **kw)

    def score_unit(self, unit: Unit) -> list[Scored]:
        rows = read_unit(unit, self.data_uri, INPUT_COLUMNS, self.storage_options)
        return self.scorer.score_rows(rows)


def bins_reference(meta: dict) -> tuple[float, float]:
    """One bin layout for all classes (so the pooled view can merge them): (reference, offset).

    Raw distances: the geometric mean of the classes' THR mu, no offset. Aligned (unified) maps
    are ~0 for normal pixels, ~1 at a normal image's max and can be negative: offset 10 and
    reference 10 cover aligned scores from -10 to ~10,000 with the same relative resolution.
    """
    if "unified" in meta:
        return 10.0, 10.0
    mus = [c["thr"]["mu"] for c in meta["classes"].values() if c["thr"]["mu"] > 0]
    return (float(np.exp(np.mean(np.log(mus)))) if mus else 1.0), 0.0


@ray.remote(num_cpus=1, max_retries=3)
def segment_unit(
    unit: Unit, scored: list[Scored], ttt4as_params: dict | None, segment: list[str], out_uri: str, bins: tuple[float, float], storage_options=None
) -> dict[str, Any]:
    """Binarise one unit's images, write its results part and summary; idempotent (fixed names)."""
    import os

    import torch

    # Ray sets OMP_NUM_THREADS to this task's CPUs; a reused worker's torch pool may still be larger
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    ttt4as = TTT4AS(**ttt4as_params) if ttt4as_params is not None else None
    mebin = MEBin() if "mebin" in segment else None
    rows, images = [], []
    aggs: dict[str, PixelAggregate] = {}
    for s in scored:
        masks, info = segment_scored(s, ttt4as, mebin)
        rows.append(result_row(s, masks, info))
        im = {"image_id": s.image_id, "class_name": s.class_name, "label": s.label, "error": s.error, "image_score": s.image_score, "counts": {}}
        if s.variant_scores:
            im["variant_scores"] = s.variant_scores
        if s.error is None:
            agg = aggs.setdefault(s.class_name, PixelAggregate.around(bins[0], offset=bins[1]))
            agg.add(s.gt, s.score_map)
            if "thr" in segment:
                im["counts"]["thr"] = confusion(s.gt, s.thr_mask)
            for b, m in masks.items():
                im["counts"][b] = confusion(s.gt, m)
        images.append(im)
    table = pa.Table.from_pylist(rows, schema=RESULT_SCHEMA).drop_columns(["class_name"])
    buf = io.BytesIO()
    pq.write_table(table, buf)
    write_bytes(join(out_uri, "results", f"class_name={unit.class_name}", f"part-{unit.uid}.parquet"), buf.getvalue(), storage_options)
    summary = {"unit": unit.uid, "n_rows": len(rows), "images": images, "aggregates": {c: a.to_dict() for c, a in aggs.items()}}
    write_bytes(join(out_uri, "_parts", f"{unit.uid}.json"), json.dumps(summary).encode(), storage_options)  # marks the unit done
    return {"unit": unit.uid, "n_rows": len(rows), "n_errors": sum(im["error"] is not None for im in images)}


def done_units(out_uri: str, storage_options=None) -> set[str]:
    fs, path = filesystem(join(out_uri, "_parts"), storage_options)
    if not fs.exists(path):
        return set()
    return {p.rsplit("/", 1)[-1][: -len(".json")] for p in fs.ls(path, detail=False) if p.endswith(".json")}


def last_run_key(out_uri: str, storage_options=None) -> str | None:
    """The run key recorded in the previous ``metrics.json`` (None when there is none)."""
    try:
        return json.loads(read_bytes(join(out_uri, "metrics.json"), storage_options)).get("run_key")
    except (FileNotFoundError, ValueError):
        return None


def drop_units(out_uri: str, uids: list[str], storage_options=None) -> None:
    """Remove the results and summaries of units that no longer describe the archive (summary
    first: a crash in between leaves results that the next run overwrites or drops, never a
    summary without results)."""
    fs, root = filesystem(out_uri, storage_options)
    for uid in uids:
        summary = f"{root}/_parts/{uid}.json"
        if fs.exists(summary):
            fs.rm(summary)
        for part in fs.glob(f"{root}/results/class_name=*/part-{uid}.parquet"):
            fs.rm(part)


def read_summaries(out_uri: str, storage_options=None):
    for uid in sorted(done_units(out_uri, storage_options)):
        yield json.loads(read_bytes(join(out_uri, "_parts", f"{uid}.json"), storage_options))


def evaluate(
    data_uri: str,
    model_uri: str,
    out_uri: str,
    opts: EvalOptions | None = None,
    num_actors: int = 1,
    gpus_per_actor: float = 0.0,
    cpus_per_actor: float = 1.0,
    max_in_flight: int | None = None,
    resume: bool = False,
    storage_options=None,
    log=print,
) -> dict[str, Any]:
    """Evaluate the test split on the connected Ray cluster; ``resume`` skips finished units (nightly)."""
    opts = opts or EvalOptions()
    t0 = time.perf_counter()
    meta = load_meta(model_uri, storage_options)
    ttt_params = opts.make_ttt4as().get_params() if "ttt4as" in opts.segment else None
    options = {"ttt4as": ttt_params, "segment": list(opts.segment), "align": opts.align, "max_pixels": opts.max_pixels,
               "classes": sorted(opts.classes) if opts.classes else None}  # fmt: skip
    key = run_key(model_uri, options, storage_options)
    units = list_units(data_uri, opts.classes, storage_options, key)
    dups = duplicate_ids(data_uri, opts.classes, ["test"], storage_options)
    if resume:
        finished = done_units(out_uri, storage_options)
        current = {u.uid for u in units}
        stale = sorted(finished - current)
        if stale:
            previous = last_run_key(out_uri, storage_options)
            why = ("model or options changed since the last run" if previous not in (None, key) else
                   "input files changed or disappeared since the last run")  # fmt: skip
            log(f"[ray] {why}: dropping the results of {len(stale)} units, {len(current - finished)} units to do")
            drop_units(out_uri, stale, storage_options)
        todo = [u for u in units if u.uid not in finished]
    else:
        reset_results(out_uri, storage_options)
        fs, parts = filesystem(join(out_uri, "_parts"), storage_options)
        if fs.exists(parts):
            fs.rm(parts, recursive=True)
        todo = units
    log(f"[ray] {len(units)} units ({sum(u.n_rows for u in units)} images), {len(todo)} to do")
    progress = Progress(len(todo), sum(u.n_rows for u in todo))
    bins = bins_reference(meta)
    n_rows = 0
    if todo:
        actors = [
            ScoringActor.options(num_gpus=gpus_per_actor, num_cpus=cpus_per_actor).remote(
                model_uri, data_uri, storage_options, align=opts.align, max_pixels=opts.max_pixels, duplicates=dups
            )
            for _ in range(max(1, num_actors))
        ]
        limit = max_in_flight or 2 * len(actors)
        pending_score: dict[ray.ObjectRef, Unit] = {}
        pending_seg: list[ray.ObjectRef] = []
        queue = list(todo)
        turn = 0
        while queue or pending_score or pending_seg:
            while queue and len(pending_score) < limit:
                u = queue.pop(0)
                pending_score[actors[turn % len(actors)].score_unit.remote(u)] = u
                turn += 1
            waitables = list(pending_score) + pending_seg
            ready, _ = ray.wait(waitables, num_returns=1)
            for ref in ready:
                if ref in pending_score:
                    u = pending_score.pop(ref)
                    pending_seg.append(segment_unit.remote(u, ref, ttt_params, list(opts.segment), out_uri, bins, storage_options))
                else:
                    pending_seg.remove(ref)
                    res = ray.get(ref)
                    n_rows += res["n_rows"]
                    log(f"[ray] unit {res['unit']}: {res['n_rows']} images, {res['n_errors']} errors; {progress.step(res['n_rows'])}")
        for a in actors:
            ray.kill(a)
    binarisers = [b for b in BINARISERS if b in opts.segment]
    summaries = list(read_summaries(out_uri, storage_options))
    report = report_from_summaries(summaries, binarisers)
    align = alignment_block([im for s in summaries for im in s["images"] if im.get("error") is None])
    if align is not None:
        report["alignment"] = align
    elapsed = time.perf_counter() - t0
    report["duplicates"] = dups
    report["timing"] = {"total_s": elapsed, "images_evaluated": n_rows, "images_per_s": n_rows / max(elapsed, 1e-9)}
    report["config"] = {"model": meta["config"], "ttt4as": ttt_params, "segment": list(opts.segment), "executor": "ray", "num_actors": num_actors}
    report["run_key"] = key
    write_metrics(report, out_uri, storage_options)
    return report


__all__ = ["evaluate", "init"]
