"""S3 that checks credentials (moto with its IAM authentication switched on, on 127.0.0.1).

moto never authenticates by default, so a refused credential was never exercised. Here two IAM
users are created first (one allowed everything on the bucket, one allowed to read only), then
moto's ``reset-auth`` switches signature and policy checks on for every later request. raydist
runs as a user would, in a subprocess with the credentials in its environment:
  - the right key pair: synth + fit + evaluate work (so the checks accept a valid signature);
  - the right key id with a wrong secret: refused at once with a one-line "access denied", exit
    code 2, not retried as a transient error, and the wrong secret appears nowhere;
  - the read-only user: reading the dataset and model works, writing the results is refused with
    the same one-line error, and nothing is written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import requests

from tests.integration.test_s3 import free_port

WRONG_SECRET = "SENTINEL-wr0ng-s3cret-do-not-leak"
BUCKET = "raydist-auth"


def _policy(actions: list[str]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": actions, "Resource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"]}
    ]})  # fmt: skip


@pytest.fixture(scope="module")
def s3_with_auth():
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        kw = {"endpoint_url": endpoint, "region_name": "us-east-1", "aws_access_key_id": "setup", "aws_secret_access_key": "setup"}
        iam, s3 = boto3.client("iam", **kw), boto3.client("s3", **kw)
        s3.create_bucket(Bucket=BUCKET)
        keys = {}
        for user, actions in (("writer", ["s3:*"]), ("reader", ["s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation"])):
            iam.create_user(UserName=user)
            iam.put_user_policy(UserName=user, PolicyName="bucket", PolicyDocument=_policy(actions))
            k = iam.create_access_key(UserName=user)["AccessKey"]
            keys[user] = (k["AccessKeyId"], k["SecretAccessKey"])
        # from here on every request must be signed by a known key and allowed by its policy
        requests.post(f"{endpoint}/moto-api/reset-auth", data=b"0", timeout=10).raise_for_status()
        yield endpoint, keys
    finally:
        requests.post(f"{endpoint}/moto-api/reset-auth", data=b"inf", timeout=10)  # moto's settings live in this process
        server.stop()


def _raydist(endpoint: str, key: tuple[str, str], cwd, *args: str, tracking: str | None = None) -> tuple[int, str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {"AWS_ACCESS_KEY_ID": key[0], "AWS_SECRET_ACCESS_KEY": key[1], "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint, "HF_HUB_OFFLINE": "1"}  # fmt: skip
    track = [] if args[0] == "synth" else (["--tracking-uri", tracking] if tracking else ["--no-tracking"])
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "raydist.cli", *args, *track], env=env, capture_output=True, text=True, cwd=cwd, timeout=600)
    return p.returncode, p.stdout + p.stderr, time.perf_counter() - t0


def test_refused_credentials_fail_fast_with_one_line_and_no_secret(s3_with_auth, tmp_path):
    import boto3

    endpoint, keys = s3_with_auth
    data, model = f"s3://{BUCKET}/data", f"s3://{BUCKET}/model"
    ev = ["evaluate", "--data", data, "--model", model, "--segment", "thr"]

    # the writer's valid key pair: the whole path works under enforced authentication
    rc, log, _ = _raydist(endpoint, keys["writer"], tmp_path, "synth", data, "--classes", "1", "--train", "4", "--val", "2",
                          "--test-good", "1", "--test-bad", "2", "--size", "64")  # fmt: skip
    assert rc == 0, log[-2000:]
    rc, log, _ = _raydist(endpoint, keys["writer"], tmp_path, "fit", "--data", data, "--out", model, "--weights", "none",
                          "--resize", "64", "--crop", "64")  # fmt: skip
    assert rc == 0, log[-2000:]
    rc, log, _ = _raydist(endpoint, keys["writer"], tmp_path, *ev, "--out", f"s3://{BUCKET}/res-writer")
    assert rc == 0 and "metrics.json" in log, log[-2000:]

    # the refused runs are tracked in a local MLflow store: every file written is searched for secrets below
    track = f"sqlite:///{tmp_path}/mlflow.db"

    # the same key id with a wrong secret: SignatureDoesNotMatch -> one line, exit 2, no retries
    rc, log, took = _raydist(endpoint, (keys["writer"][0], WRONG_SECRET), tmp_path, *ev, "--out", f"s3://{BUCKET}/res-wrong", tracking=track)
    print(f"wrong secret: rc {rc}, {took:.1f} s: {log.strip().splitlines()[-1]}")
    assert rc == 2, log[-3000:]
    assert "error: access denied" in log and "Traceback" not in log, log[-3000:]
    assert WRONG_SECRET not in log and keys["writer"][1] not in log
    assert took < 60  # refused, not retried as an outage (measured: a few seconds, mostly imports)

    # the reader may read the dataset and the model, not write results
    rc, log, _ = _raydist(endpoint, keys["reader"], tmp_path, *ev, "--out", f"s3://{BUCKET}/res-reader", tracking=track)
    print(f"read-only user: rc {rc}: {log.strip().splitlines()[-1]}")
    assert rc == 2 and "error: access denied" in log and "Traceback" not in log, log[-3000:]
    assert keys["reader"][1] not in log

    w = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=keys["writer"][0],
                     aws_secret_access_key=keys["writer"][1])  # fmt: skip
    names = [o["Key"] for o in w.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert any(n.startswith("res-writer/") for n in names)
    assert not any(n.startswith(("res-wrong/", "res-reader/")) for n in names), names
    for n in names:  # no credential was written into any object
        body = w.get_object(Bucket=BUCKET, Key=n)["Body"].read()
        assert WRONG_SECRET.encode() not in body and keys["writer"][1].encode() not in body
    written = [f for f in tmp_path.rglob("*") if f.is_file()]
    assert any(f.name == "mlflow.db" for f in written)  # the reader's run started (and failed) in MLflow
    for f in written:  # nor into any local file: the MLflow store (params, tags, the failed run) included
        data = f.read_bytes()
        assert WRONG_SECRET.encode() not in data and keys["writer"][1].encode() not in data, f
