"""A Ray evaluation that cannot progress ends with a typed one-line error instead of hanging.

Two real ways a job waits forever (Ray queues work it cannot place, silently): scoring actors that
ask for a GPU the cluster lacks, and segment tasks that ask for more CPUs than any node has. Each
runs `raydist evaluate --executor ray` on an embedded 2-CPU Ray (started and ended by the
subprocess) with a short --stall-timeout: exit code 4, one line saying what did not happen and
what the cluster has, within the timeout plus start-up.

A stall is decided by what Ray reports, not by a race with the clock: the waited-on work fits no
live node (its total resources, less what the job's own actors hold). Work that fits but is slow to
start (a cold numba cache on a fresh machine, a busy CPU) is waited for, so these tests pass
however slow the machine is; the last tests check that split directly.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest


def run_stalling(*args: str) -> tuple[subprocess.CompletedProcess, str, float]:
    """`raydist ARGS` on an embedded 2-CPU Ray with an 8 s stall timeout: the process, its last stderr line, seconds."""
    cmd = [sys.executable, "-m", "raydist.cli", *args, "--executor", "ray", "--num-cpus", "2", "--no-tracking", "--stall-timeout", "8"]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    took = time.perf_counter() - t0
    last = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ""
    print(f"{args[0]} {args[-2:]}: rc {p.returncode} after {took:.0f} s: {last}")
    assert p.returncode == 4, (p.stdout[-2000:], p.stderr[-3000:])
    assert "Traceback" not in p.stderr
    return p, last, took


@pytest.mark.parametrize("flags, expect", [
    (["--gpus-per-actor", "1"], "no scoring actor started (asked: 1 CPU, 1 GPU each; 0 of 1 running)"),
    (["--segment-in", "tasks", "--cpus-per-task", "4"], "no unit finished"),
])  # fmt: skip
def test_unplaceable_work_stalls_out(flags, expect, synth_uri, wrn_model_uri, tmp_path):
    _, last, took = run_stalling("evaluate", "--data", synth_uri, "--model", wrn_model_uri, "--out", str(tmp_path / "res"), "--segment", "thr", *flags)
    assert last.startswith("raydist evaluate: error: stalled: ") and expect in last and "within 8 s" in last
    assert "'CPU'" in last  # says what the cluster has free, to see why
    assert took < 120  # 8 s of waiting plus Ray's start-up and the model load (measured ~25-40 s here)


def test_unplaceable_fit_stalls_out_when_asked(synth_uri, tmp_path):
    """The Ray fit waits without limit by default (a unit of a large class can take hours on CPU);
    with --stall-timeout, fit tasks that ask for a GPU the cluster lacks end the same way."""
    _, last, _ = run_stalling("fit", "--data", synth_uri, "--out", str(tmp_path / "model"), "--weights", "none", "--resize", "64", "--crop", "64",
                              "--gpus-per-fit-task", "1")  # fmt: skip
    assert last.startswith("raydist fit: error: stalled: no fit unit finished (3 in flight, 1 CPU / 1 GPU per task) within 8 s")


@pytest.fixture(scope="module")
def ray_2cpu():
    """An embedded 2-CPU Ray of this test process, ended by this module."""
    ray = pytest.importorskip("ray")
    from raydist.distributed import evaluate as dist

    dist.init(num_cpus=2)
    yield ray
    ray.shutdown()


def test_unplaceable_is_what_no_node_can_hold(ray_2cpu):
    from raydist.distributed.evaluate import demand, unplaceable

    node = ray_2cpu.get_runtime_context().get_node_id()
    assert unplaceable([demand(1), demand(2), demand(0)]) == []
    assert unplaceable([demand(1), demand(4), demand(1, 1)]) == [{"CPU": 4}, {"CPU": 1, "GPU": 1}]
    # what the job's own actors hold for the whole run is not there for its tasks
    assert unplaceable([demand(1), demand(2)], held={node: {"CPU": 1.0}}) == [{"CPU": 2}]
    assert unplaceable([demand(1)], held={"another-node": {"CPU": 2.0}}) == []


def test_slow_placeable_work_is_waited_for_and_unplaceable_work_stalls(ray_2cpu):
    """A task that starts after 4 stall windows is waited for; one asking 4 CPUs of 2 ends at the first."""
    from raydist.distributed.evaluate import demand, wait_one
    from raydist.errors import StalledError

    @ray_2cpu.remote(num_cpus=1)
    def slow(seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    ref = slow.remote(4.0)
    assert ray_2cpu.get(wait_one([ref], 1.0, "slow", [demand(1)])[0]) == 4.0
    t0 = time.perf_counter()
    with pytest.raises(StalledError, match="no node can ever place it"):
        wait_one([slow.options(num_cpus=4).remote(0.0)], 1.0, "big", [demand(4)])
    assert time.perf_counter() - t0 < 30  # one 1 s window and a look at the nodes (measured ~1 s)
