"""The project's own local head script (token auth, 127.0.0.1), then `ray job submit` of
jobs/evaluate.py: refused without the token, SUCCEEDS with it."""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from raydist.segment.registry import DEFAULT_SEGMENT
from tests.integration.test_s3 import free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def own_processes(markers: tuple[str, ...]) -> list:
    """This head's processes: those whose command line names one of ``markers`` (its unique temp
    dir, its GCS address) and all their descendants (agents, workers), never another Ray."""
    import psutil

    found: dict[int, psutil.Process] = {}
    for p in psutil.process_iter():
        try:
            if any(m in part for part in p.cmdline() for m in markers):
                found[p.pid] = p
                found.update({c.pid: c for c in p.children(recursive=True)})
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    found.pop(os.getpid(), None)
    return list(found.values())


def wait_until_serving(url: str, limit_s: float = 180.0) -> None:
    """`ray start` returns before its dashboard (the Jobs API) listens; on a busy machine that takes
    tens of seconds. Any HTTP answer (401 without the token included) means it serves."""
    import time
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + limit_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=5).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.fixture
def ray_head(tmp_path):
    import shutil
    import tempfile

    import psutil

    temp_dir = tempfile.mkdtemp(prefix="rdh", dir="/tmp")  # short: Ray's socket paths must fit 107 characters
    port, dash = free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")},
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "RAY_PORT": str(port), "RAY_DASHBOARD_PORT": str(dash), "RAY_NUM_CPUS": "2",
        "RAY_AUTH_TOKEN_PATH": str(tmp_path / "token"), "RAY_TEMP_DIR": temp_dir,
    }  # fmt: skip
    proc = subprocess.run(["bash", str(ROOT / "cluster" / "start-local-head.sh")], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    token = (tmp_path / "token").read_text().strip()
    assert token not in proc.stdout + proc.stderr  # the script never prints the token
    env["RAY_AUTH_MODE"] = "token"  # a client needs the mode and the token (here from the file)
    wait_until_serving(f"http://127.0.0.1:{dash}/api/version")
    try:
        yield f"http://127.0.0.1:{dash}", env
    finally:
        # end only this head's processes (they name its temp dir), never another Ray on the machine
        procs = own_processes((temp_dir, f"127.0.0.1:{port}"))
        for p in procs:
            p.terminate()
        _, alive = psutil.wait_procs(procs, timeout=20)
        for p in alive:
            p.kill()
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_ray_job_submit_evaluate(ray_head, synth_uri, wrn_model_uri, tmp_path):
    address, env = ray_head
    out = tmp_path / "res"
    anonymous = {k: v for k, v in env.items() if not k.startswith("RAY_AUTH")}
    for who, e in (("no token", anonymous), ("a wrong token", {**anonymous, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)})):
        refused = subprocess.run([str(BIN / "ray"), "job", "submit", "--address", address, "--", sys.executable, "-c", "print(1)"],
                                 env=e, capture_output=True, text=True, timeout=120)  # fmt: skip
        assert refused.returncode != 0, f"a job with {who} was accepted"
        assert "AuthenticationError" in refused.stdout + refused.stderr, who
    proc = subprocess.run(
        [str(BIN / "ray"), "job", "submit", "--address", address, "--",
         sys.executable, str(ROOT / "jobs" / "evaluate.py"), "--data", synth_uri, "--model", wrn_model_uri, "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "succeeded" in (proc.stdout + proc.stderr).lower()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["executor"]["kind"] == "ray" and metrics["config"]["evaluate"]["segment"] == list(DEFAULT_SEGMENT)
    assert metrics["pooled"]["n_images"] == 30 and metrics["pooled"]["i_auroc"] > 0.6
    assert len(list((out / "results").rglob("*.parquet"))) == 3
