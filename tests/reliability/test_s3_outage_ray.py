"""The S3 endpoint goes away for 10 s while a Ray fit and a Ray evaluate run; both ride it out
and give what a clean run gives, and the test counts the requests the outage refused.

The workers reach moto through a TCP proxy owned by this test. During an outage the proxy keeps
accepting connections and closes each at once, counting it: every count is a request that failed
and had to be retried (by botocore, or by Ray's ``retry_exceptions`` once botocore gave up), so
"> 0" proves the outage hit the job rather than passing beside it.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

ray = pytest.importorskip("ray")

from raydist.config import EvalConfig, ModelConfig  # noqa: E402
from raydist.data.dataset import read_table, rows_to_table, write_table  # noqa: E402
from raydist.distributed import evaluate as dist  # noqa: E402
from raydist.distributed.fit import fit as fit_ray  # noqa: E402
from tests.integration.test_s3 import free_port  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
OUTAGE_S = 10.0


class FlakyProxy:
    """127.0.0.1:port -> 127.0.0.1:target; ``down(s)`` refuses (accepts and closes) for s seconds."""

    def __init__(self, target: int):
        self.target, self.refused, self._down_until = target, 0, 0.0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self._lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def down(self, seconds: float) -> None:
        self._down_until = time.time() + seconds

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return  # closed
            if time.time() < self._down_until:
                with self._lock:
                    self.refused += 1
                client.close()
                continue
            threading.Thread(target=self._pipe_pair, args=(client,), daemon=True).start()

    def _pipe_pair(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target))
        except OSError:
            client.close()
            return
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def s3_behind_proxy(monkeypatch):
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    proxy = FlakyProxy(port)
    endpoint = f"http://127.0.0.1:{proxy.port}"
    for k, v in {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t", "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(k, v)  # before Ray starts: its workers inherit the endpoint
    boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1").create_bucket(Bucket="flaky")
    if ray.is_initialized():
        ray.shutdown()  # this process's own driver (another module's embedded Ray), so workers see the new env
    dist.init(num_cpus=2)
    try:
        yield proxy
    finally:
        ray.shutdown()
        proxy.close()
        server.stop()


def _metrics(out: str) -> dict:
    from raydist.storage import read_bytes

    m = json.loads(read_bytes(out + "/metrics.json"))
    for k in ("timing", "executor", "run_key"):
        m.pop(k)
    return m


def test_ray_fit_and_evaluate_ride_out_a_10s_s3_outage(s3_behind_proxy, synth_uri, tmp_path):
    proxy = s3_behind_proxy
    data = "s3://flaky/data"
    rows = [r for r in read_table(synth_uri).to_pylist() if r["class_name"] == "blobs"]
    write_table(rows_to_table(rows), data, max_rows_per_group=2)  # many small reads
    cfg = ModelConfig(backbone="efficientnet_lite0", weights="none", resize=64, crop=64)
    fit_ray(data, str(tmp_path / "clean-model"), cfg, log=lambda *_: None)
    dist.evaluate(data, str(tmp_path / "clean-model"), "s3://flaky/clean", EvalConfig(batch_size=1), log=lambda *_: None)
    assert proxy.refused == 0

    proxy.down(OUTAGE_S)  # the fit starts into the outage: its first reads are refused
    t0 = time.time()
    summary = fit_ray(data, str(tmp_path / "model"), cfg, log=lambda *_: None)
    fit_refused = proxy.refused
    assert fit_refused > 0 and time.time() - t0 >= OUTAGE_S - 1 and not summary.get("errors")
    model_files = sorted(p.name for p in (tmp_path / "model" / "units").iterdir())
    assert model_files == sorted(p.name for p in (tmp_path / "clean-model" / "units").iterdir())
    assert all((tmp_path / "model" / "units" / f).read_bytes() == (tmp_path / "clean-model" / "units" / f).read_bytes() for f in model_files)

    proxy.down(OUTAGE_S)
    t0 = time.time()
    dist.evaluate(data, str(tmp_path / "model"), "s3://flaky/res", EvalConfig(batch_size=1), log=lambda *_: None)
    assert proxy.refused > fit_refused and time.time() - t0 >= OUTAGE_S - 1
    assert _metrics("s3://flaky/res") == _metrics("s3://flaky/clean")
    clean = read_table("s3://flaky/clean/results").sort_by("image_id").to_pylist()
    after = read_table("s3://flaky/res/results").sort_by("image_id").to_pylist()
    assert after == clean and len(after) == 10 and all(r["error"] is None for r in after)
    print(f"requests refused by the outage: fit {fit_refused}, evaluate {proxy.refused - fit_refused}")
