"""Item 2: a scoring actor killed while scoring, an SVM task's worker killed while fitting:
Ray restarts / retries them and the results equal a clean run's."""

import os
import signal
import threading
import time

import psutil
import pytest

ray = pytest.importorskip("ray")

from raydist.config import EvalConfig  # noqa: E402
from raydist.data.dataset import read_table  # noqa: E402
from raydist.distributed import evaluate as dist  # noqa: E402
from tests.reliability.test_process_faults import many_units  # noqa: E402, F401  (fixture)


def ray_processes(title: str) -> list[psutil.Process]:
    """This test's own Ray workers with ``title``: descendants of this process (the embedded Ray's
    raylet and its workers), never another Ray on the machine."""
    out = []
    for p in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if any(title in part for part in (p.cmdline() or [])):
                out.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return out


def results(out):
    t = read_table(str(out / "results"), columns=["image_id", "image_score", "mask_thr", "mask_ttt4as", "error"])
    return {r["image_id"]: r for r in t.to_pylist()}


@pytest.mark.parametrize("victim, segment_in", [("ray::ScoringActor", "actor"), ("ray::ScoringActor", "tasks"), ("ray::segment_task", "tasks")])
def test_killed_worker_recovers(victim, segment_in, many_units, wrn_model_uri, tmp_path):  # noqa: F811
    dist.init(num_cpus=2)
    res = dist.Resources(segment_in=segment_in)
    try:
        clean = tmp_path / "clean"
        dist.evaluate(many_units, wrn_model_uri, str(clean), EvalConfig(), res, log=lambda _: None)
        out = tmp_path / "faulty"
        killed = []

        def assassin():
            deadline = time.time() + 600  # a bound for a hung run only: a busy machine takes minutes
            while time.time() < deadline and not killed:
                if len(list((out / "_parts").glob("*.json"))) >= 2:
                    for p in ray_processes(victim):
                        os.kill(p.pid, signal.SIGKILL)
                        killed.append(p.pid)
                time.sleep(0.05)

        t = threading.Thread(target=assassin)
        t.start()
        rep = dist.evaluate(many_units, wrn_model_uri, str(out), EvalConfig(), res, log=lambda _: None)
        t.join()
        assert killed, f"no {victim} process was found to kill"
        a, b = results(clean), results(out)
        assert sorted(a) == sorted(b) and len(a) == 30
        for k in a:
            assert a[k]["image_score"] == pytest.approx(b[k]["image_score"], rel=1e-6)
            assert a[k]["mask_thr"] == b[k]["mask_thr"] and a[k]["mask_ttt4as"] == b[k]["mask_ttt4as"]
        assert rep["pooled"]["n_images"] == 30 and rep["pooled"]["n_errors"] == 0
    finally:
        ray.shutdown()
