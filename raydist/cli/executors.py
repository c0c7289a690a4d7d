"""Which executor runs a verb, chosen once from its flags: the local loop, or Ray (embedded, or
the cluster at --address / RAY_ADDRESS)."""

from __future__ import annotations

import argparse
from typing import Any

from raydist.errors import ConfigError


def check(a: argparse.Namespace) -> None:
    """Refuse flags the chosen executor would ignore (before any work or tracking starts)."""
    if a.executor == "ray" and getattr(a, "workers", None) is not None:
        raise ConfigError("--workers sizes the local executor; on Ray use --num-actors and --cpus-per-actor")
    if a.executor == "ray" and hasattr(a, "segment_in"):
        resources(a)  # its own refusals (e.g. --cpus-per-task where actors binarise)
    ray_only = {"--num-actors": getattr(a, "num_actors", None), "--cpus-per-task": getattr(a, "cpus_per_task", None),
                "--segment-in": None if getattr(a, "segment_in", "auto") == "auto" else a.segment_in}  # fmt: skip
    given = [flag for flag, v in ray_only.items() if v is not None]
    if a.executor == "local" and given:
        raise ConfigError(f"{', '.join(given)} apply to the Ray executor only; add --executor ray, or size the local one with --workers")


def resources(a: argparse.Namespace):
    """The Ray scoring resources these flags ask for (validated)."""
    from raydist.distributed.evaluate import Resources

    return Resources(a.num_actors, a.gpus_per_actor, a.cpus_per_actor, a.cpus_per_task, a.segment_in)


def fit(a: argparse.Namespace, cfg, out: str, batch_size: int) -> dict[str, Any]:
    """Fit ``cfg`` on ``a.data`` into ``out``."""
    if a.executor == "ray":
        from raydist.distributed import evaluate as dist
        from raydist.distributed.fit import fit as fit_ray

        dist.init(a.address, a.num_cpus)
        return fit_ray(a.data, out, cfg, a.classes, batch_size, a.gpus_per_fit_task, a.cpus_per_fit_task, stall_s=a.stall_timeout)
    from raydist.engine.fit import fit as fit_local

    return fit_local(a.data, out, cfg, a.classes, batch_size, log=print)


def evaluate(a: argparse.Namespace, model: str, cfg, resume: bool, on_progress=None) -> dict[str, Any]:
    """Evaluate ``model`` on ``a.data`` into ``a.out`` (``resume``: nightly) and return the report."""
    check(a)
    if a.executor == "ray":
        from raydist.distributed import evaluate as dist

        dist.init(a.address, a.num_cpus)
        return dist.evaluate(a.data, model, a.out, cfg, resources(a), resume=resume, cache_mb=a.cache_mb, on_progress=on_progress, stall_s=a.stall_timeout)
    from raydist.engine.evaluate import evaluate as evaluate_local

    return evaluate_local(a.data, model, a.out, cfg, resume=resume, log=print, on_progress=on_progress, cache_mb=a.cache_mb, workers=a.workers)
