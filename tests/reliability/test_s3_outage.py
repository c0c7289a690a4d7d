"""Item 3: the S3 server stops and comes back while a job reads and writes; retries ride it out.

moto's state lives in this process, so stopping the HTTP server and starting a new one on the
same port is a real outage-and-restart of the endpoint with the data intact."""

import threading
import time

import pytest

from raydist.config import EvalConfig, ModelConfig
from raydist.data.dataset import read_table, rows_to_table, write_table
from raydist.engine.evaluate import evaluate
from raydist.engine.fit import fit as fit_model
from raydist.storage import filesystem
from tests.integration.test_s3 import free_port


@pytest.fixture
def restartable_s3(monkeypatch):
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    box = {"server": ThreadedMotoServer(ip_address="127.0.0.1", port=port)}
    box["server"].start()
    endpoint = f"http://127.0.0.1:{port}"
    for k, v in {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t", "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(k, v)
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="outage")

    def restart(down_s: float) -> None:
        box["server"].stop()
        time.sleep(down_s)
        box["server"] = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
        box["server"].start()

    yield restart
    box["server"].stop()


def test_outage_during_read_and_write(restartable_s3, synth_uri, tmp_path):
    data, model, out = "s3://outage/data", str(tmp_path / "model"), "s3://outage/res"
    rows = read_table(synth_uri).to_pylist()
    write_table(rows_to_table(rows), data, max_rows_per_group=2)  # many small reads
    fit_model(synth_uri, model, ModelConfig(backbone="efficientnet_lite0", weights="none", resize=64, crop=64))
    outages = []
    done = threading.Event()

    def chaos():
        time.sleep(0.5)  # the job is reading and writing by now
        for _ in range(2):
            if done.is_set():
                return
            t0 = time.time()
            restartable_s3(2.0)
            outages.append((t0, time.time() - t0))
            time.sleep(0.5)

    t = threading.Thread(target=chaos)
    t.start()
    rep = evaluate(data, model, out, EvalConfig(batch_size=1))
    finished = time.time()
    done.set()
    t.join()
    hit = [o for o in outages if o[0] < finished]
    assert hit and min(d for _, d in hit) >= 2.0  # at least one real 2 s outage hit the running job
    res = read_table(out + "/results", columns=["image_id", "error"]).to_pylist()
    assert len(res) == 30 and all(r["error"] is None for r in res)
    assert rep["pooled"]["n_images"] == 30
    fs, path = filesystem(out)
    leftovers = [p for p in fs.find(path) if ".tmp-" in p]
    assert leftovers == []  # no temporary object is left visible
