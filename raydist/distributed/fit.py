"""The Ray executor for fitting: one task per missing fit unit (GPU tasks when ``gpus_per_task`` > 0).

Each task fits and saves its unit itself and returns only the small saved record, so the driver
never holds a bank and a crash loses only the units in flight; the engine plans and finishes.
"""

from __future__ import annotations

from typing import Any

import ray

from raydist.config import ModelConfig
from raydist.distributed import WORKER_RUNTIME_ENV
from raydist.distributed.evaluate import demand, wait_one
from raydist.engine.fit import FitUnit, finish_fit, fit_unit, pending, plan_fit, with_weights_id
from raydist.errors import ConfigError
from raydist.features.encoder import Encoder
from raydist.storage import process_options, transient_errors, use_options


@ray.remote(max_retries=2, retry_exceptions=list(transient_errors()), runtime_env=WORKER_RUNTIME_ENV)  # retries: a storage outage longer than botocore's
def fit_task(data_uri: str, out_uri: str, cfg: ModelConfig, unit: FitUnit, batch_size: int, threads: int,
             storage_options=None) -> tuple[str, dict | str]:  # fmt: skip
    import torch

    torch.set_num_threads(threads)  # the driver's: a unit fitted here equals one fitted locally, bit for bit
    use_options(storage_options)
    try:
        return unit.name, fit_unit(data_uri, out_uri, cfg, unit, Encoder(cfg, batch_size=batch_size), storage_options)
    except ConfigError as e:
        return unit.name, str(e)


def fit(
    data_uri: str, out_uri: str, cfg: ModelConfig, classes=None, batch_size: int = 8, gpus_per_task: float = 0.0, cpus_per_task: float = 1.0,
    storage_options=None, log=print, stall_s: float | None = None,
) -> dict[str, Any]:
    """Fit the missing units on Ray; ``stall_s``: raise :class:`~raydist.errors.StalledError` when no
    unit finishes for that long and the tasks fit no node (placeable tasks are waited for: one unit
    of a large class can take hours on CPU)."""
    import torch

    storage_options = {**process_options(), **(storage_options or {})}  # the workers get the driver's
    cfg = with_weights_id(cfg, device="cpu")
    units = plan_fit(data_uri, cfg, classes, storage_options)
    todo, records = pending(out_uri, units, storage_options)
    log(f"[fit] {len(units)} units, {len(records)} already fitted with this config and data, {len(todo)} to fit on Ray")
    errors: dict[str, str] = {}
    refs = [fit_task.options(num_gpus=gpus_per_task, num_cpus=cpus_per_task).remote(data_uri, out_uri, cfg, u, batch_size, torch.get_num_threads(), storage_options)
            for u in todo]  # fmt: skip
    while refs:
        ready = wait_one(refs, stall_s, f"no fit unit finished ({len(refs)} in flight, {cpus_per_task:g} CPU / {gpus_per_task:g} GPU per task)",
                         [demand(cpus_per_task, gpus_per_task)])
        refs = [r for r in refs if r != ready[0]]
        name, res = ray.get(ready[0])
        if isinstance(res, str):
            errors[name] = res
            log(f"[fit] {name}: skipped: {res}")
        else:
            records[name] = res
            log(f"[fit] {name}: {res['describe']} ({res['seconds']:.1f}s)")
    return finish_fit(out_uri, cfg, records, errors, len(units) - len(todo), storage_options)
