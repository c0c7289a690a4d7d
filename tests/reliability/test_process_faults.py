"""Items 4 and 5: the job process killed mid-run then rerun; the MLflow server lost mid-run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from raydist.data.dataset import read_table, rows_to_table, write_table
from tests.integration.test_mlflow import start_mlflow

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def many_units(synth_uri, tmp_path_factory):
    """The synthetic test split re-written in row groups of 1 image: 30 units."""
    data = str(tmp_path_factory.mktemp("units") / "data")
    write_table(rows_to_table(read_table(synth_uri).to_pylist()), data, max_rows_per_group=1)
    return data


def test_job_killed_then_nightly_rerun(many_units, wrn_model_uri, tmp_path):
    out = tmp_path / "res"
    cmd = [sys.executable, str(ROOT / "jobs" / "nightly.py"), "--data", many_units, "--model", wrn_model_uri,
           "--out", str(out), "--no-tracking", "--num-cpus", "2"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.time() + 600  # a bound for a hung start only: a busy machine takes minutes to get here
    while time.time() < deadline and len(list((out / "_parts").glob("*.json"))) < 2:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its embedded Ray die at once
    proc.wait(timeout=60)
    # a task already running in a worker may still finish its unit: wait until nothing changes
    done_before, stable_since = -1, time.time()
    while time.time() - stable_since < 3:
        n = len(list((out / "_parts").glob("*.json")))
        if n != done_before:
            done_before, stable_since = n, time.time()
        time.sleep(0.1)
    assert 2 <= done_before < 30, done_before
    rerun = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    assert f"30 units (30 images), {30 - done_before} to do" in rerun.stdout  # finished work not redone
    ids = read_table(str(out / "results"), columns=["image_id"]).column("image_id").to_pylist()
    assert len(ids) == len(set(ids)) == 30  # exactly one row per image


def test_mlflow_lost_mid_run(many_units, wrn_model_uri, tmp_path):
    import urllib.request

    server, mlflow_server = start_mlflow(tmp_path / "mlflow")
    out = tmp_path / "res"
    cmd = [sys.executable, "-m", "raydist.cli", "evaluate", "--data", many_units, "--model", wrn_model_uri,
           "--out", str(out), "--tracking-uri", mlflow_server, "--batch-size", "2"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600  # a bound for a hung start only: a busy machine takes minutes to get here
    while time.time() < deadline and not (out / "results").exists():
        time.sleep(0.01)
    assert (out / "results").exists(), "the job wrote no result in 600 s"  # the server must go while the job scores
    os.killpg(server.pid, signal.SIGKILL)  # the server goes away while the job is scoring
    server.wait(timeout=30)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-2000:]
    assert "NOT logged" in stderr
    assert (out / "metrics.json").exists()
    assert len(read_table(str(out / "results"), columns=["image_id"])) == 30
    with pytest.raises(OSError):  # the server really was gone
        urllib.request.urlopen(mlflow_server + "/health", timeout=2)
