"""`ray start --head` on 127.0.0.1, then `ray job submit` of jobs/evaluate.py: the job SUCCEEDS."""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_s3 import free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture
def ray_head(tmp_path):
    port, dash = free_port(), free_port()
    # Ray 2.5x+ dashboards want a token: give the head and the client the same random one
    env = {
        **os.environ,
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(16),
    }
    subprocess.run(
        [str(BIN / "ray"), "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
         f"--dashboard-port={dash}", "--num-cpus=2", "--disable-usage-stats"],
        check=True, env=env, capture_output=True, timeout=120,
    )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{dash}", env
    finally:
        # `ray stop` ends this machine's Ray processes; the tests start no other head meanwhile
        subprocess.run([str(BIN / "ray"), "stop", "--force"], env=env, capture_output=True, timeout=120)


def test_ray_job_submit_evaluate(ray_head, synth_uri, wrn_model_uri, tmp_path):
    address, env = ray_head
    out = tmp_path / "res"
    proc = subprocess.run(
        [str(BIN / "ray"), "job", "submit", "--address", address, "--",
         sys.executable, str(ROOT / "jobs" / "evaluate.py"), "--data", synth_uri, "--model", wrn_model_uri, "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "succeeded" in (proc.stdout + proc.stderr).lower()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["executor"] == "ray"
    assert metrics["pooled"]["n_images"] == 30 and metrics["pooled"]["i_auroc"] > 0.6
    assert len(list((out / "results").rglob("*.parquet"))) == 3
