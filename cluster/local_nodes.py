"""Run a raydist verb on a three-node Ray cluster on this machine: placement and node loss by hand.

    python cluster/local_nodes.py evaluate --data D --model M --out O --gpus-per-actor 1
    python cluster/local_nodes.py --lose-cpu-node-after 20 evaluate --data D --model M --out O --gpus-per-actor 1

Nodes: a head (1 CPU, no GPU), a "GPU" node (1 CPU, 1 logical GPU: torch sees no CUDA unless the
machine has one) and a CPU node (2 CPUs), all on 127.0.0.1, from Ray's own
``ray.cluster_utils.Cluster`` (as tests/integration/test_ray_multinode.py). The verb runs in this
process against them (``--executor ray --address`` are added); ``metrics.json["executor"]["placement"]``
then shows where the scoring actors and the segment tasks ran. Every process this starts is
stopped on exit, and nothing else. The nodes have no token auth: a development tool.

(Several ``ray start`` on one host do not give a loopback-only cluster: the nodes advertise the
machine's address, and with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` a second node refuses to join.)
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path

# before Ray is imported: every node and this driver then use 127.0.0.1 instead of the machine's address
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo, when not pip-installed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--head-cpus", type=int, default=1)
    ap.add_argument("--gpu-node-cpus", type=int, default=1)
    ap.add_argument("--cpu-node-cpus", type=int, default=2)
    ap.add_argument("--lose-cpu-node-after", type=float, default=None, metavar="SECONDS", help="kill the CPU node this long after the verb starts")
    ap.add_argument("verb", nargs=argparse.REMAINDER, help="a raydist verb and its flags")
    a = ap.parse_args()
    from raydist.cli import main as raydist

    node = {"node_ip_address": "127.0.0.1", "object_store_memory": 200 * 2**20}
    c = Cluster(initialize_head=True, head_node_args={**node, "num_cpus": a.head_cpus})
    try:
        gpu = c.add_node(**node, num_cpus=a.gpu_node_cpus, num_gpus=1)
        cpu = c.add_node(**node, num_cpus=a.cpu_node_cpus)
        print(f"[nodes] head {c.head_node.node_id}\n[nodes] gpu  {gpu.node_id}\n[nodes] cpu  {cpu.node_id}", flush=True)
        ray.init(address=c.address)
        if a.lose_cpu_node_after is not None:
            def lose() -> None:
                c.remove_node(cpu, allow_graceful=False)
                print(f"[nodes] CPU node {cpu.node_id} killed", flush=True)

            threading.Timer(a.lose_cpu_node_after, lose).start()
        return raydist([*a.verb, "--executor", "ray", "--address", c.address])
    finally:
        ray.shutdown()  # before the cluster: the other order leaves Ray's current-cluster file behind
        c.shutdown()


if __name__ == "__main__":
    sys.exit(main())
