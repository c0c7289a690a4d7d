"""A raydist client follows the Ray cluster it connects to, whatever Ray's default token file says.

Each cluster runs in its own process (Ray's ``cluster_utils.Cluster``, 127.0.0.1, its own HOME
and Ray's default temp dir) and each client in another, as a user's shell and a cluster are: the
client calls ``raydist.distributed.evaluate.init`` with an explicit address and creates one actor
(where a client in the wrong token mode fails: its actors are cancelled before they run). Every process
is started here and stopped here by its own pid.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray")
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

CLUSTER = """
import json, sys
from ray.cluster_utils import Cluster
c = Cluster(initialize_head=True, head_node_args={"node_ip_address": "127.0.0.1", "num_cpus": 1,
            "object_store_memory": 80 * 2**20, "include_dashboard": False})
print(json.dumps({"address": c.address}), flush=True)
sys.stdin.read()  # until the test closes stdin
c.shutdown()
"""

CLIENT = """
import sys, time
import ray
from raydist.distributed.evaluate import init
from raydist.errors import ConfigError
t = time.perf_counter()
try:
    init(sys.argv[1])
except ConfigError as e:
    print(f"CONFIG_ERROR after {time.perf_counter() - t:.2f} s:", e, flush=True)
    sys.exit(3)

@ray.remote(num_cpus=1)
class Probe:
    def ping(self):
        return "pong"

print("RESULT", ray.get(Probe.remote().ping.remote(), timeout=120), flush=True)
"""


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH") and k != "RAY_ADDRESS"}
    return {**env, "HOME": str(home), "PYTHONPATH": str(Path(__file__).resolve().parents[2]), **extra}


@pytest.fixture
def start_cluster(tmp_path):
    """Start a one-node cluster with ``RAY_AUTH_MODE`` = mode in its own process; stop it after."""
    started: list[subprocess.Popen] = []

    def start(mode: str, token_file: Path | None = None) -> str:
        home = tmp_path / f"cluster-home-{len(started)}"
        home.mkdir()
        extra = {"RAY_AUTH_MODE": mode, **({"RAY_AUTH_TOKEN_PATH": str(token_file)} if token_file else {})}
        env = _env(home, **extra)
        p = subprocess.Popen([sys.executable, "-c", CLUSTER], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        started.append(p)
        return json.loads(p.stdout.readline())["address"]

    yield start
    for p in started:  # ours only: closing stdin lets each shut its own cluster down
        p.stdin.close()
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def refused_within(r: subprocess.CompletedProcess, seconds: float) -> bool:
    """The client was refused by raydist's check, within ``seconds`` of calling init (Ray's own
    path retries for ~20 s, then says only "Failed to connect")."""
    m = re.search(r"CONFIG_ERROR after ([0-9.]+) s", r.stdout)
    return r.returncode == 3 and m is not None and float(m.group(1)) < seconds


def client(address: str, home: Path, token: str | None, **extra: str) -> subprocess.CompletedProcess:
    """A client process whose HOME holds Ray's default token file with ``token`` (none: no file)."""
    home.mkdir(exist_ok=True)
    if token is not None:
        (home / ".ray").mkdir(exist_ok=True)
        (home / ".ray" / "auth_token").write_text(token)
    return subprocess.run([sys.executable, "-c", CLIENT, address], env=_env(home, **extra), capture_output=True, text=True, timeout=300)


def test_a_default_token_file_does_not_break_a_cluster_without_tokens(start_cluster, tmp_path):
    """Ray writes ~/.ray/auth_token the first time anything starts a local Ray; a client that took
    it as a reason for token mode had its actors cancelled on a cluster started without tokens."""
    address = start_cluster("disabled")
    for who, token in (("file present", secrets.token_hex(32)), ("no file", None)):
        r = client(address, tmp_path / who, token)
        assert r.returncode == 0 and "RESULT pong" in r.stdout, (who, r.stdout[-2000:], r.stderr[-3000:])


def test_a_token_cluster_gets_the_token_when_asked_and_names_the_fix_when_not(start_cluster, tmp_path):
    token = secrets.token_hex(32)
    (tmp_path / "cluster-token").write_text(token)
    address = start_cluster("token", tmp_path / "cluster-token")
    # the right token in Ray's default file, token mode asked for: it runs
    r = client(address, tmp_path / "asked", token, RAY_AUTH_MODE="token")
    assert r.returncode == 0 and "RESULT pong" in r.stdout, (r.stdout[-2000:], r.stderr[-3000:])
    # the same file, not asked for: refused, and the message names the file and the fix
    r = client(address, tmp_path / "unasked", token)
    assert refused_within(r, 5) and "~/.ray/auth_token" in r.stdout and "RAY_AUTH_MODE=token" in r.stdout, r.stdout[-2000:]
    # a wrong token: refused, and the message says to check it; no token is ever printed
    wrong = secrets.token_hex(32)
    r = client(address, tmp_path / "wrong", wrong, RAY_AUTH_MODE="token")
    assert refused_within(r, 5) and "check that the token is this cluster's" in r.stdout, r.stdout[-2000:]
    for out in (r.stdout, r.stderr):
        assert token not in out and wrong not in out
