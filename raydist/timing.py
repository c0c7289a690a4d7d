"""Where an evaluation's time goes: seconds per stage, summed over units (and over workers on Ray).

Stages (``metrics.json["timing"]["stages_s"]`` and MLflow ``timing/stages_s/<name>``):
    start_scorer    building a scorer (backbone and its weights, the model's metadata), once per process or actor
    read            a unit's rows from the dataset (Parquet, local or S3)
    decode          image bytes -> processed arrays (and point clouds), per row
    load_detector   first use of a class's fitted detector in a scorer (banks from storage)
    features        the backbone forward passes (on the scorer's device)
    search_and_maps the detector's own work after the features: bank search, upsampling, smoothing
    thr             THR masks
    ttt4as, mebin   the per-image binarisers
    encode          result rows: PNG masks, .npy maps
    metric_counts   confusion counts and pixel histograms of the unit summary
    write           the unit's results part and summary to storage
On a GPU, ``features`` ends when the host has the grids, so it includes the device's queue.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager


class StageTimes(dict[str, float]):
    """Seconds per stage name; add with ``with times("decode"): ...`` or ``times.add(...)``."""

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - t0)

    def add(self, stage: str, seconds: float) -> None:
        self[stage] = self.get(stage, 0.0) + seconds

    def merge(self, other: Mapping[str, float]) -> StageTimes:
        for k, v in other.items():
            self.add(k, v)
        return self


def timing_block(total_s: float, evaluated: int, stages: Mapping[str, float], driver: Mapping[str, float], workers: int) -> dict:
    """``metrics.json["timing"]``: wall time, throughput, stage seconds, the driver's own steps and
    what is left once the stages' seconds are spread over ``workers`` parallel workers: start-up
    (model and backbone loading in the workers), scheduling, transfers and idle workers, i.e. the
    executor's overhead, so stages / workers + driver + overhead is the wall time whenever the
    workers were busy for less than all of it. Local: its worker threads (the driver thread's unit
    writing runs alongside them). Ray: the scoring actors plus the segment-task slots the cluster's
    free CPUs allow, so an unevenly busy cluster shows up here too."""
    busy = sum(stages.values()) / max(workers, 1)
    return {
        "total_s": total_s,
        "images_evaluated": evaluated,
        "images_per_s": evaluated / max(total_s, 1e-9),
        "stages_s": dict(sorted(stages.items())),
        "driver_s": dict(driver),
        "overhead_s": max(0.0, total_s - sum(driver.values()) - busy),
        "workers": workers,
    }
