"""A real `mlflow server` (sqlite) on 127.0.0.1; evaluations logged through the CLI and read back."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from raydist.cli import main
from tests.integration.test_s3 import free_port

BIN = Path(sys.executable).parent


def start_mlflow(d: Path) -> tuple[subprocess.Popen, str]:
    """`mlflow server` on a free 127.0.0.1 port in its own process group (stop with os.killpg)."""
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--backend-store-uri",
         f"sqlite:///{d}/mlflow.db", "--artifacts-destination", str(d / "artifacts"), "--workers", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            urllib.request.urlopen(uri + "/health", timeout=2)
            return proc, uri
        except Exception:
            time.sleep(1)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail("mlflow server did not become healthy in 90 s")


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    proc, uri = start_mlflow(tmp_path_factory.mktemp("mlflow"))
    yield uri
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    d = tmp_path_factory.mktemp("small")
    data, model = str(d / "data"), str(d / "model")
    assert main(["synth", data, "--classes", "2", "--train", "4", "--val", "2", "--test-good", "2", "--test-bad", "3", "--size", "96"]) == 0
    assert main(["fit", "--data", data, "--out", model, "--weights", "none", "--resize", "96", "--crop", "96", "--no-tracking"]) == 0
    return data, model


def test_evaluations_are_logged_and_compared(mlflow_server, small, tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    data, model = small
    base = ["evaluate", "--data", data, "--model", model, "--tracking-uri", mlflow_server, "--experiment", "t1", "--gallery-per-class", "2"]
    assert main([*base, "--out", str(tmp_path / "r1"), "--percentile", "99"]) == 0
    assert main([*base, "--out", str(tmp_path / "r2"), "--percentile", "95"]) == 0
    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("t1")
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])
    assert len(runs) == 2
    first, second = runs
    m1 = json.loads((tmp_path / "r1" / "metrics.json").read_text())
    assert first.data.params["evaluate.ttt4as.percentile"] == "99.0" and second.data.params["evaluate.ttt4as.percentile"] == "95.0"
    assert first.data.params["model.backbone"] == "efficientnet_lite0" and int(first.data.params["data.rows"]) == 22
    assert first.data.metrics["_mean/f1_ttt4as"] == pytest.approx(m1["mean"]["ttt4as"]["f1"])
    assert first.data.metrics["stripes/i_auroc"] == pytest.approx(m1["classes"]["stripes"]["i_auroc"])
    assert first.data.metrics["_pooled/f1_thr"] == pytest.approx(m1["pooled"]["thr"]["f1"])
    assert first.data.tags["raydist.job"] == "evaluate" and first.data.tags["raydist.dataset"] == data
    arts = {a.path for a in client.list_artifacts(first.info.run_id)}
    assert {"metrics.json", "per_class.csv", "overlays"} <= arts
    pngs = client.list_artifacts(first.info.run_id, "overlays")
    assert len(pngs) == 4  # 2 classes x 2
    local = client.download_artifacts(first.info.run_id, pngs[0].path, str(tmp_path / "dl"))
    w, h = Image.open(local).size
    assert w > 3 * h > 100  # five panels side by side
    capsys.readouterr()
    chart = tmp_path / "trend.png"
    assert main(["compare", "--tracking-uri", mlflow_server, "--experiment", "t1", "--chart", str(chart)]) == 0
    out = capsys.readouterr().out
    assert first.info.run_id[:8] in out and second.info.run_id[:8] in out
    m2 = json.loads((tmp_path / "r2" / "metrics.json").read_text())
    delta = m2["classes"]["stripes"]["ttt4as"]["f1"] - m1["classes"]["stripes"]["ttt4as"]["f1"]
    assert "stripes/f1_ttt4as" in out and f"{delta:+.3f}" in out
    assert Image.open(chart).size[0] > 300


def test_server_down_fails_before_any_work(small, tmp_path, capsys):
    data, model = small
    port = free_port()  # nothing listens there
    rc = main(["evaluate", "--data", data, "--model", model, "--out", str(tmp_path / "r"), "--tracking-uri", f"http://127.0.0.1:{port}"])
    assert rc == 3 and "unreachable" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # no scoring happened
    assert main(["evaluate", "--data", data, "--model", model, "--out", str(tmp_path / "r"), "--tracking-uri", f"http://127.0.0.1:{port}", "--no-tracking"]) == 0
    assert (tmp_path / "r" / "metrics.json").exists()


def test_credentials_in_a_tracking_uri_are_never_printed(small, tmp_path, capsys):
    data, model = small
    port = free_port()
    secret = "s3cr3t-sentinel"
    rc = main(["evaluate", "--data", data, "--model", model, "--out", str(tmp_path / "r"),
               "--tracking-uri", f"http://alice:{secret}@127.0.0.1:{port}"])  # fmt: skip
    out = capsys.readouterr()
    assert rc == 3 and "alice:***@127.0.0.1" in out.err
    assert secret not in out.out + out.err


def test_redact_uri():
    from raydist.tracking.mlflow_tracker import redact_uri

    assert redact_uri("https://u:p@host:5000/x") == "https://u:***@host:5000/x"
    assert redact_uri("https://tok@host") == "https://***@host"
    assert redact_uri("sqlite:////tmp/a/mlflow.db") == "sqlite:////tmp/a/mlflow.db"
