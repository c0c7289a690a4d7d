"""Evaluation: plan the units, run the stages (local executor here), write metrics.json from the results.

``plan`` and ``finish`` are shared by both executors; only the loop in between differs. The
local loop holds two units at a time (one scored, one written), so memory is bounded whatever
the archive's size.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from raydist.config import EvalConfig, ModelConfig
from raydist.data.dataset import duplicate_ids
from raydist.engine import results
from raydist.engine.scoring import DEFAULT_CACHE_MB, Scorer
from raydist.engine.stages import batches, score_and_binarise, segment_unit
from raydist.engine.units import Unit, list_units, read_unit, run_key
from raydist.errors import ConfigError
from raydist.methods import detector_class
from raydist.model_store import load_meta, score_offset
from raydist.progress import Progress
from raydist.timing import StageTimes, timing_block

Log = Callable[[str], None]
# torch threads per local worker: each is given one CPU, as a Ray scoring actor or segment task is
# by default (--cpus-per-actor/--cpus-per-task 1), so both executors add up in the same order
WORKER_THREADS = 1


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
    no_thr = sorted(name for name, u in meta["units"].items() if u.get("calibration") is None)
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
           storage_options=None) -> dict[str, Any]:  # fmt: skip
    """``metrics.json`` from the results on storage; the same for every executor but ``timing``/``executor``.
    ``t0`` is when the run started (``time.perf_counter``); ``stages`` its stage seconds, summed
    over ``workers`` workers running side by side."""
    t_metrics = time.perf_counter()
    report = results.metrics_from_results(out_uri, list(p.cfg.segment), detector_class(p.meta["config"]["method"]), storage_options)
    report["duplicates"] = p.duplicates
    report["config"] = {"model": p.meta["config"], "evaluate": p.cfg.to_dict()}
    report["run_key"] = p.key
    report["executor"] = executor
    driver = {"plan": p.seconds, "metrics": time.perf_counter() - t_metrics}
    report["timing"] = timing_block(time.perf_counter() - t0, evaluated, stages, driver, workers)
    results.write_metrics(report, out_uri, storage_options)
    return report


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, e.g. a container's or taskset's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run torch with ``n`` intra-op threads (this thread's and the process's), restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _worker_threads() -> None:
    """A worker thread's own torch thread count (OpenMP keeps one per thread)."""
    import torch

    torch.set_num_threads(WORKER_THREADS)


def worker_pool(n: int) -> ThreadPoolExecutor:
    """``n`` worker threads, each running one batch at a time with one torch thread."""
    return ThreadPoolExecutor(n, "raydist-score", _worker_threads)


def submit_unit(pool: ThreadPoolExecutor, scorer: Scorer, rows: list[dict[str, Any]], cfg: EvalConfig) -> list[Future]:
    """A unit's batches onto the worker threads, each scored and binarised there."""
    return [pool.submit(score_and_binarise, scorer, b, cfg) for b in batches(rows, cfg.batch_size)]


def collect_unit(uid: str, jobs: list[Future], cfg: EvalConfig, offset: float, times: StageTimes) -> tuple[pa.Table, dict[str, Any]]:
    """A submitted unit's result table and summary, its rows in their order (both executors)."""
    scored, binarised = [], []
    for job in jobs:  # in batch order: the unit's rows keep their order
        s, b, t = job.result()
        scored += s
        binarised += b
        times.merge(t)
    return segment_unit(uid, scored, cfg, offset, times, binarised)


def evaluate(
    data_uri: str, model_uri: str, out_uri: str, cfg: EvalConfig | None = None, resume: bool = False, storage_options=None, log: Log = _quiet,
    on_progress: Callable[[Progress], None] | None = None, cache_mb: float = DEFAULT_CACHE_MB, workers: int | None = None,
) -> dict[str, Any]:
    """The local executor: the archive's units in turn, their batches spread over ``workers``
    threads of this process (default: one per usable CPU); returns the report.
    ``on_progress`` is called after each unit (e.g. to log progress to the tracking run).

    Each worker runs one batch at a time through both stages' per-image work (decode, features,
    bank search, the configured binarisers) with one torch thread, as a Ray scoring actor with one CPU
    does, so the two executors' numbers are identical. Independent single-threaded pipelines use
    the CPUs better than one pipeline of multi-threaded operations: decoding, liblinear and PNG
    encoding release the GIL, and no thread waits at another's barrier (bottle, the default binarisers, 2
    CPUs, once the scorer is built, medians of 6 interleaved runs: 23.9 -> 25.9 images/s against
    one two-threaded scoring thread with a binarising thread beside it). Workers share one scorer (one backbone,
    one set of resident banks). This thread writes each unit while the workers score the next
    one, so at most two units are held.
    """
    cfg = cfg or EvalConfig()
    n_workers = usable_cpus() if workers is None else workers
    if n_workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {n_workers}")
    t0 = time.perf_counter()
    p = plan(data_uri, model_uri, out_uri, cfg, resume, storage_options, log)
    progress = Progress(len(p.todo), p.n_images)
    times = StageTimes()  # summed over the workers and this thread
    evaluated = 0

    def write(unit: Unit, jobs: list[Future]) -> None:
        nonlocal evaluated
        table, summary = collect_unit(unit.uid, jobs, cfg, p.offset, times)
        with times("write"):
            results.write_unit(out_uri, unit.uid, unit.class_name, table, summary, storage_options)
        evaluated += unit.n_rows
        log(f"[evaluate] {progress.step(unit.n_rows)}")
        if on_progress is not None:
            on_progress(progress)

    if p.todo:
        with torch_threads(WORKER_THREADS), worker_pool(n_workers) as pool:
            with times("start_scorer"):
                scorer = Scorer(model_uri, cfg, cache_mb=cache_mb, storage_options=storage_options, duplicates=p.duplicates)
            held: tuple[Unit, list[Future]] | None = None
            for unit in p.todo:
                with times("read"):
                    rows = read_unit(unit, data_uri, scorer.columns, storage_options)
                jobs = submit_unit(pool, scorer, rows, cfg)
                if held is not None:
                    write(*held)
                held = (unit, jobs)
            if held is not None:
                write(*held)
    return finish(p, out_uri, {"kind": "local", "workers": n_workers}, evaluated, t0, times, n_workers, storage_options)
