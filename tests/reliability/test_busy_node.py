"""On a node busy with other work a raydist job keeps its share of the CPU: its Ray workers run at
the priority of the process that started them, not Ray's default niceness of 15."""

from __future__ import annotations

import os

import pytest

ray = pytest.importorskip("ray")


def test_every_raydist_worker_asks_for_the_drivers_priority():
    from raydist.distributed import WORKER_RUNTIME_ENV
    from raydist.distributed.evaluate import ScoringActor, segment_task
    from raydist.distributed.fit import fit_task

    for remote in (ScoringActor, segment_task, fit_task):
        assert remote._default_options.get("runtime_env") == WORKER_RUNTIME_ENV, remote


def test_a_worker_with_that_environment_runs_at_the_drivers_niceness():
    from raydist.distributed import WORKER_RUNTIME_ENV

    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=1, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    try:

        @ray.remote(runtime_env=WORKER_RUNTIME_ENV)
        def niceness() -> int:
            return os.nice(0)

        @ray.remote
        def ray_default() -> int:
            return os.nice(0)

        if os.nice(0) < 15:  # what raydist avoids: Ray's own workers yield to every ordinary process
            assert ray.get(ray_default.remote()) > os.nice(0)
        assert ray.get(niceness.remote()) <= os.nice(0)
    finally:
        if started:
            ray.shutdown()
