"""Item 6: secrets never leak; model files are never unpickled; config is validated up front."""

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from raydist.config import EvalConfig
from raydist.engine.evaluate import evaluate
from raydist.errors import ConfigError
from tests.integration.test_s3 import free_port

SENTINEL = "SENTINEL-5e3cr3t-do-not-leak"


def test_credentials_never_written_or_printed(tmp_path):
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "AKIA" + SENTINEL, "AWS_SECRET_ACCESS_KEY": SENTINEL,
               "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint, "HF_HUB_OFFLINE": "1"}  # fmt: skip
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
        s3.create_bucket(Bucket="raydist-sec")
        track = ["--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]
        run = [sys.executable, "-m", "raydist.cli"]
        logs = []
        for args in (
            ["synth", "s3://raydist-sec/data", "--classes", "1", "--train", "4", "--val", "2", "--test-good", "1", "--test-bad", "2", "--size", "64"],
            ["fit", "--data", "s3://raydist-sec/data", "--out", "s3://raydist-sec/model", "--weights", "none", "--resize", "64", "--crop", "64", *track],
            ["evaluate", "--data", "s3://raydist-sec/data", "--model", "s3://raydist-sec/model", "--out", "s3://raydist-sec/res", *track],
            ["evaluate", "--data", "s3://missing-bucket/x", "--model", "s3://raydist-sec/model", "--out", "s3://raydist-sec/r2", *track],  # fails
        ):
            p = subprocess.run([*run, *args], env=env, capture_output=True, text=True, cwd=tmp_path, timeout=600)
            logs.append(p.stdout + p.stderr)
        assert "metrics.json" in logs[2], logs[2][-2000:]
        assert "error" in logs[3].lower()  # the failing run failed, and its message is checked below
        leaks = [i for i, log in enumerate(logs) if SENTINEL in log]
        for f in Path(tmp_path).rglob("*"):
            if f.is_file() and SENTINEL.encode() in f.read_bytes():
                leaks.append(str(f))
        objs = s3.list_objects_v2(Bucket="raydist-sec")["Contents"]
        assert len(objs) > 5
        for o in objs:
            if SENTINEL.encode() in s3.get_object(Bucket="raydist-sec", Key=o["Key"])["Body"].read():
                leaks.append(o["Key"])
        assert leaks == []
    finally:
        server.stop()


def test_planted_pickle_model_is_refused(wrn_model_uri, synth_uri, tmp_path):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(wrn_model_uri, model)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    bank = next((model / "units").glob("*.safetensors"))
    bank.write_bytes(pickle.dumps({"bank": Evil()}))
    with pytest.raises(ConfigError, match="refusing to load"):
        evaluate(synth_uri, str(model), str(tmp_path / "r"), EvalConfig(classes=("blobs", "checker", "stripes")))
    assert not marker.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--thr-k", "-1"], "--thr-k must be >= 0"),
        (["--backbone", "resnet9000"], "invalid choice"),
    ],
)
def test_fit_config_validation(args, message, tmp_path, capsys):
    from raydist.cli import main

    try:
        rc = main(["fit", "--data", str(tmp_path), "--out", str(tmp_path / "m"), "--no-tracking", *args])
    except SystemExit as e:  # argparse refuses unknown choices itself
        rc = e.code
    assert rc != 0 and message in capsys.readouterr().err
