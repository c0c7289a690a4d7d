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
