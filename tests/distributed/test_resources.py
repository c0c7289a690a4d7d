"""What the Ray executor asks for, resolved from the flags and the cluster (no Ray started)."""

import pytest

pytest.importorskip("ray")

from raydist.distributed.evaluate import Resources, units_per_actor  # noqa: E402
from raydist.engine.units import Unit  # noqa: E402
from raydist.errors import ConfigError  # noqa: E402

CPU_NODE = {"CPU": 8.0, "memory": 1e10}
GPU_CLUSTER = {"CPU": 24.0, "GPU": 3.0}


@pytest.mark.parametrize("res, cluster, expect", [
    (Resources(), CPU_NODE, (8, "actor", None)),  # no GPU asked: actors binarise, one per CPU
    (Resources(cpus_per_actor=4), CPU_NODE, (2, "actor", None)),  # 4 worker threads each
    (Resources(cpus_per_actor=0.5), CPU_NODE, (8, "actor", None)),  # a fractional actor still runs a whole thread
    (Resources(num_actors=3), CPU_NODE, (3, "actor", None)),  # asked: kept
    (Resources(gpus_per_actor=1), GPU_CLUSTER, (3, "tasks", 1.0)),  # one per GPU, CPU segment tasks
    (Resources(gpus_per_actor=0.5), GPU_CLUSTER, (6, "tasks", 1.0)),
    (Resources(gpus_per_actor=1), CPU_NODE, (1, "tasks", 1.0)),  # no GPU at all: one, which the stall check reports
    (Resources(segment_in="tasks", cpus_per_task=2), CPU_NODE, (1, "tasks", 2.0)),  # the old layout on CPUs
    (Resources(gpus_per_actor=1, segment_in="actor"), GPU_CLUSTER, (3, "actor", None)),
])  # fmt: skip
def test_resolved(res, cluster, expect):
    r = res.resolved(cluster)
    assert (r.num_actors, r.segment_in, r.cpus_per_task) == expect
    assert r.resolved(cluster) == r  # resolving is idempotent: the report's record asks for the same again


def test_refusals():
    with pytest.raises(ConfigError, match="--cpus-per-task sizes segment tasks.*--segment-in tasks"):
        Resources(cpus_per_task=2)  # would be ignored: the actors binarise
    with pytest.raises(ConfigError, match="--segment-in must be one of"):
        Resources(segment_in="gpu")
    with pytest.raises(ConfigError, match="--num-actors must be >= 1"):
        Resources(num_actors=0)


def units(*rows: int) -> list[Unit]:
    return [Unit(path=f"f{i}", row_group=0, class_name="c", n_rows=n) for i, n in enumerate(rows)]


@pytest.mark.parametrize("threads, rows, expect", [
    (None, [64] * 4, 2),  # scoring only: one scored while the next is read
    (1, [64] * 4, 2),  # one thread: one unit scoring, one read or written
    (8, [64] * 4, 2),  # 8 batches of 8 keep 8 threads busy
    (16, [64] * 4, 3),
    (16, [8, 64, 64], 3),  # the median unit decides
    (4, [8] * 3, 5),  # one batch per unit: 4 scoring + 1
])  # fmt: skip
def test_units_per_actor(threads, rows, expect):
    assert units_per_actor(threads, units(*rows), batch_size=8) == expect
