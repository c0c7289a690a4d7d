"""The Ray pipeline reading its dataset and model from, and writing results to, a real S3 server
(moto on 127.0.0.1). Credentials reach the workers through the environment, as on a cluster."""

import json
import os

import pytest

ray = pytest.importorskip("ray")

from raydist.config import EvalConfig, ModelConfig  # noqa: E402
from raydist.data.dataset import read_table  # noqa: E402
from raydist.data.synth import SynthConfig, write_synth  # noqa: E402
from raydist.distributed import evaluate as dist  # noqa: E402
from raydist.engine.fit import fit as fit_model  # noqa: E402
from raydist.storage import read_bytes  # noqa: E402
from tests.integration.test_s3 import free_port  # noqa: E402


@pytest.fixture(scope="module")
def s3_ray():
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}  # fmt: skip
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # before ray.init, so the workers inherit it
    boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1").create_bucket(Bucket="archive")
    dist.init(num_cpus=2)
    yield
    ray.shutdown()
    server.stop()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def test_pipeline_through_s3(s3_ray):
    data, model, out = "s3://archive/datasets/synth", "s3://archive/models/m1", "s3://archive/results/r1"
    write_synth(data, SynthConfig(n_classes=2, n_train=4, n_val=2, n_test_good=2, n_test_bad=3, size=64))
    fit_model(data, model, ModelConfig(backbone="efficientnet_lite0", weights="none", resize=64, crop=64))
    rep = dist.evaluate(data, model, out, EvalConfig(), dist.Resources(num_actors=1))
    assert rep["pooled"]["n_images"] == 10 and rep["pooled"]["n_errors"] == 0
    metrics = json.loads(read_bytes(out + "/metrics.json"))
    assert metrics["pooled"]["n_images"] == 10
    res = read_table(out + "/results", columns=["image_id", "mask_ttt4as", "error"]).to_pylist()
    assert len(res) == 10 and all(r["error"] is None and r["mask_ttt4as"] for r in res)
    again = dist.evaluate(data, model, out, EvalConfig(), resume=True)
    assert again["timing"]["images_evaluated"] == 0
