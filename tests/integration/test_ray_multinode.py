"""A three-node Ray cluster on 127.0.0.1 (Ray's own ``cluster_utils.Cluster``): a head without
GPU, a worker declaring one (logical) GPU, a CPU-only worker. Scoring actors that ask for a GPU
land on the GPU node, segment tasks (the per-image SVMs) on CPU nodes, and the results equal a
single-process run; losing the CPU worker mid-run changes nothing in the results.

Every Ray process here is started by this module's ``Cluster`` and stopped by it (``remove_node``,
``shutdown``): nothing else on the machine is touched.
"""

from __future__ import annotations

import time

import pytest

ray = pytest.importorskip("ray")

from ray.cluster_utils import Cluster  # noqa: E402

from raydist.config import EvalConfig  # noqa: E402
from raydist.data.dataset import read_table, rows_to_table, write_table  # noqa: E402
from raydist.distributed import evaluate as dist  # noqa: E402
from raydist.engine.evaluate import evaluate  # noqa: E402
from tests.integration.test_ray_pipeline import assert_same_run  # noqa: E402

# quiet 2-core machine: ~37 s. Beside a CPU hog spinning both cores each run's scoring actor sat in
# PENDING_CREATION ~5 min (its resources granted, the worker importing and loading the model among
# three raylets' processes) and the test needed more than 420 s: the bound is for a hang, not for speed
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]

CFG = EvalConfig(segment=("thr", "ttt4as"))
NODE = {"node_ip_address": "127.0.0.1", "object_store_memory": 100 * 2**20}


@pytest.fixture(scope="module")
def small_units(synth_uri, tmp_path_factory) -> str:
    """The synthetic archive rewritten in row groups of 4: 9 test units, so a run has a middle."""
    uri = str(tmp_path_factory.mktemp("units") / "data")
    write_table(rows_to_table(read_table(synth_uri).to_pylist()), uri, max_rows_per_group=4)
    return uri


@pytest.fixture(scope="module")
def reference(small_units, wrn_model_uri, tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("ref") / "local")
    evaluate(small_units, wrn_model_uri, out, CFG)
    return out


@pytest.fixture
def cluster():
    if ray.is_initialized():
        ray.shutdown()  # this process's own driver connection (another module's embedded Ray), nothing else
    c = Cluster(initialize_head=True, head_node_args={**NODE, "num_cpus": 1})
    # the GPU node has exactly the CPU its one scoring actor asks for (--cpus-per-actor 1): Ray
    # keeps CPU-only tasks off GPU nodes, and here no CPU is left there for them either
    gpu = c.add_node(**NODE, num_cpus=1, num_gpus=1)
    cpu = c.add_node(**NODE, num_cpus=2)
    ray.init(address=c.address)
    try:
        yield c, gpu.node_id, cpu
    finally:
        ray.shutdown()
        c.shutdown()


def test_actors_on_the_gpu_node_svms_on_cpu_nodes_and_a_lost_node_changes_nothing(cluster, small_units, wrn_model_uri, reference, tmp_path):
    c, gpu_node, cpu = cluster
    head_node, cpu_node = c.head_node.node_id, cpu.node_id
    res = dist.Resources(num_actors=1, gpus_per_actor=1, cpus_per_actor=1, cpus_per_task=1)

    out = str(tmp_path / "multi")
    rep = dist.evaluate(small_units, wrn_model_uri, out, CFG, res, log=lambda *_: None)
    placement = rep["executor"]["placement"]
    assert placement["scoring_actors"] == [gpu_node]
    assert gpu_node not in placement["segment_units"] and sum(placement["segment_units"].values()) == 9
    assert set(placement["segment_units"]) <= {head_node, cpu_node}
    assert_same_run(reference, out)

    # the CPU worker is lost after the first unit: the remaining units are segmented elsewhere
    removed: list[int] = []

    def lose_cpu_node(progress):
        if not removed:
            removed.append(progress.units)
            c.remove_node(cpu, allow_graceful=False)

    out = str(tmp_path / "lost")
    rep = dist.evaluate(small_units, wrn_model_uri, out, CFG, res, on_progress=lose_cpu_node, log=lambda *_: None)
    assert removed == [1]

    def alive() -> set[str]:
        return {n["NodeID"] for n in ray.nodes() if n["Alive"]}

    # the GCS marks a killed node dead after its health checks fail (seconds); the run may finish first
    deadline = time.monotonic() + 60
    while cpu_node in alive() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert cpu_node not in alive() and {head_node, gpu_node} <= alive()
    seg = rep["executor"]["placement"]["segment_units"]
    assert sum(seg.values()) == 9 and set(seg) <= {head_node, cpu_node} and seg[head_node] >= 6
    assert_same_run(reference, out)
