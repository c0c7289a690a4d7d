"""Evaluation: plan the units, run the stages (local executor here), write metrics.json from the results.

``plan`` and ``finish`` are shared by both executors; only the loop in between differs. The
local loop holds two units at a time (one scored, one segmented), so memory is bounded whatever
the archive's size.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from raydist.config import EvalConfig, ModelConfig
from raydist.data.dataset import duplicate_ids
from raydist.engine import results
from raydist.engine.rows import INPUT_COLUMNS
from raydist.engine.scoring import DEFAULT_CACHE_MB, Scorer
from raydist.engine.stages import binarise_all, score_unit, segment_unit
from raydist.engine.units import Unit, list_units, read_unit, run_key
from raydist.errors import ConfigError
from raydist.model_store import load_meta, score_offset
from raydist.progress import Progress
from raydist.timing import StageTimes, timing_block

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass
class Plan:
    """What a run will do: every unit of the archive, the ones still to evaluate, and their context."""

    cfg: EvalConfig
    meta: dict[str, Any]
    key: str  # run key: model files + evaluation options
    units: list[Unit]
    todo: list[Unit]
    duplicates: dict[str, int]
    offset: float  # added to scores before histogram binning (signed maps)
    seconds: float = 0.0  # spent planning (listing units, fingerprints, duplicate ids)

    @property
    def n_images(self) -> int:
        return sum(u.n_rows for u in self.todo)


def plan(data_uri: str, model_uri: str, out_uri: str, cfg: EvalConfig, resume: bool, storage_options=None, log: Log = _quiet) -> Plan:
    """List the archive's units; without ``resume`` start from scratch, with it (nightly) keep the
    finished units that still describe the archive and drop the rest, saying why."""
    t0 = time.perf_counter()
    meta = load_meta(model_uri, storage_options)
    ModelConfig.from_dict(meta["config"])  # a stored config is re-validated before any work
    no_thr = sorted(name for name, u in meta["units"].items() if u["info"].get("thr") is None)
    if "thr" in cfg.segment and no_thr:
        raise ConfigError(f"THR needs nominal validation maps, and {no_thr} have none: add them, or leave thr out of --segment")
    key = run_key(model_uri, cfg.to_dict(), storage_options)
    units = list_units(data_uri, cfg.classes, storage_options, key)
    if resume:
        finished = results.done_units(out_uri, storage_options)
        current = {u.uid for u in units}
        stale = sorted(finished - current)
        if stale:
            previous = results.last_run_key(out_uri, storage_options)
            why = ("model or options changed since the last run" if previous not in (None, key) else
                   "input files changed or disappeared since the last run")  # fmt: skip
            log(f"[evaluate] {why}: dropping the results of {len(stale)} units, {len(current - finished)} units to do")
            results.drop_units(out_uri, stale, storage_options)
        todo = [u for u in units if u.uid not in finished]
    else:
        results.reset(out_uri, storage_options)
        todo = units
    dups = duplicate_ids(data_uri, cfg.classes, ["test"], storage_options)
    p = Plan(cfg, meta, key, units, todo, dups, score_offset(meta), time.perf_counter() - t0)
    log(f"[evaluate] {len(units)} units ({sum(u.n_rows for u in units)} images), {len(todo)} to do ({p.n_images} images)")
    return p


def finish(p: Plan, out_uri: str, executor: dict[str, Any], evaluated: int, t0: float, stages: dict[str, float], workers: int = 1,
           storage_options=None, overlapped_s: float = 0.0) -> dict[str, Any]:  # fmt: skip
    """``metrics.json`` from the results on storage; the same for every executor but ``timing``/``executor``.
    ``t0`` is when the run started (``time.perf_counter``); ``stages`` its stage seconds;
    ``overlapped_s`` the stage seconds that ran alongside others (the local executor's segmenting thread)."""
    t_metrics = time.perf_counter()
    report = results.metrics_from_results(out_uri, list(p.cfg.segment), storage_options)
    report["duplicates"] = p.duplicates
    report["config"] = {"model": p.meta["config"], "evaluate": p.cfg.to_dict()}
    report["run_key"] = p.key
    report["executor"] = executor
    driver = {"plan": p.seconds, "metrics": time.perf_counter() - t_metrics}
    report["timing"] = timing_block(time.perf_counter() - t0, evaluated, stages, driver, workers, overlapped_s)
    results.write_metrics(report, out_uri, storage_options)
    return report


def evaluate(
    data_uri: str, model_uri: str, out_uri: str, cfg: EvalConfig | None = None, resume: bool = False, storage_options=None, log: Log = _quiet,
    on_progress: Callable[[Progress], None] | None = None, cache_mb: float = DEFAULT_CACHE_MB,
) -> dict[str, Any]:
    """The local executor: every unit in turn, in this process (no Ray); returns the report.
    ``on_progress`` is called after each unit (e.g. to log progress to the tracking run)."""
    cfg = cfg or EvalConfig()
    t0 = time.perf_counter()
    p = plan(data_uri, model_uri, out_uri, cfg, resume, storage_options, log)
    progress = Progress(len(p.todo), p.n_images)
    evaluated = 0
    times, seg_times = StageTimes(), StageTimes()  # the scoring (this) thread's and the segmenting thread's
    waited = 0.0  # seconds this thread spent waiting for the segmenting thread

    def segment_and_write(unit: Unit, scored: list, binarised: list[Future]) -> Unit:
        table, summary = segment_unit(unit.uid, scored, cfg, p.offset, seg_times, [b for f in binarised for b in f.result()])
        with seg_times("write"):
            results.write_unit(out_uri, unit.uid, unit.class_name, table, summary, storage_options)
        return unit

    def written(job: Future) -> None:
        nonlocal evaluated, waited
        t = time.perf_counter()
        unit = job.result()
        waited += time.perf_counter() - t
        evaluated += unit.n_rows
        log(f"[evaluate] {progress.step(unit.n_rows)}")
        if on_progress is not None:
            on_progress(progress)

    if p.todo:
        with times("start_scorer"):
            scorer = Scorer(model_uri, cfg, cache_mb=cache_mb, storage_options=storage_options, duplicates=p.duplicates)
        # A second thread decodes the next batch and binarises each scored one while this thread
        # scores, and writes the units: decoding, liblinear and PNG encoding release the GIL, so
        # both threads run on two cores. Its queue is first in, first out, so the next batch's
        # decode is always ahead of the last batch's binarising. At most two units are held; the
        # stages are the same pure functions, so the results are those of a serial loop.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="raydist-segment") as pool:
            job = None
            for unit in p.todo:
                with times("read"):
                    rows = read_unit(unit, data_uri, INPUT_COLUMNS, storage_options)
                binarised: list[Future] = []
                scored = score_unit(scorer, rows, cfg.batch_size, times, lambda b, out=binarised: out.append(pool.submit(binarise_all, b, cfg, seg_times)),
                                    ahead=pool, ahead_times=seg_times)  # fmt: skip
                if job is not None:
                    written(job)
                job = pool.submit(segment_and_write, unit, scored, binarised)
            written(job)
    overlapped = max(0.0, sum(seg_times.values()) - waited)
    return finish(p, out_uri, {"kind": "local"}, evaluated, t0, times.merge(seg_times), 1, storage_options, overlapped)
