"""Parquet round trip through a real S3 server (moto) on 127.0.0.1."""

import socket

import pytest

from tests.data.test_dataset import roundtrip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_server():
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1").create_bucket(Bucket="raydist-test")
    return s3_server


def test_s3_roundtrip_is_byte_identical(s3_env):
    roundtrip("s3://raydist-test/datasets/ds1")


def test_s3_explicit_endpoint_option(s3_env, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    roundtrip("s3://raydist-test/datasets/ds2", storage_options={"endpoint_url": s3_env})


def test_a_missing_dataset_or_bucket_fails_fast_with_one_line(s3_env, tmp_path, capsys):
    """Permanent storage errors are not retried for minutes nor shown as a traceback: one line, exit 2."""
    from raydist.cli import main

    for data in (str(tmp_path / "nowhere"), "s3://no-such-bucket/data"):
        assert main(["fit", "--data", data, "--out", str(tmp_path / "m"), "--weights", "none", "--no-tracking"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("raydist fit: error: not found:") and data.split("://")[-1] in err[0]
        assert "testing" not in err[0]  # no credential in the message


def test_storage_options_flag_reaches_every_read_and_write_and_is_never_written(s3_env, monkeypatch, capsys):
    """--storage-options alone says where S3 is (the environment points elsewhere): synth writes
    there, summary and fit read there, fit writes its model there; the options appear in no output."""
    import json

    import boto3

    from raydist.cli import main
    from raydist.storage import read_bytes

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens: the flag must win
    opts = json.dumps({"endpoint_url": s3_env, "key": "testing", "secret": "s3cr3t-marker"})
    data, model = "s3://raydist-test/flag/data", "s3://raydist-test/flag/model"
    assert main(["synth", data, "--classes", "1", "--size", "32", "--train", "4", "--val", "2", "--storage-options", opts]) == 0
    assert main(["summary", data, "--storage-options", opts]) == 0
    assert main(["fit", "--data", data, "--out", model, "--resize", "32", "--crop", "32", "--no-tracking", "--storage-options", opts]) == 0
    out = capsys.readouterr()
    client = boto3.client("s3", endpoint_url=s3_env, region_name="us-east-1")
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="raydist-test", Prefix="flag/")["Contents"]]
    assert "flag/model/model.json" in keys and any(k.startswith("flag/data/") for k in keys)
    model_json = read_bytes(model + "/model.json", {"endpoint_url": s3_env}).decode()
    assert "s3cr3t-marker" not in model_json + out.out + out.err
    from raydist.storage import process_options

    assert process_options() == {}  # main() restores the process's options: nothing leaks into later calls
