"""Blob store fixtures: a local store in a temporary directory, and a real S3-compatible server.

The S3 server is moto's standalone server (`moto[server]`, a dev dependency) started as its own process on a
free port: boto3 talks HTTP to it exactly as to any S3-compatible endpoint. Credentials are dummy values put in
the environment, where the pipeline reads them (never the settings file).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from sf_pipeline.blobs import LocalBlobStore, S3BlobStore

S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    """A running moto server: its endpoint, and buckets made on demand."""

    def __init__(self, endpoint: str, process: subprocess.Popen[bytes]):
        self.endpoint = endpoint
        self.process = process

    def client(self):  # noqa: ANN201
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def new_bucket(self) -> str:
        name = f"sfp-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    port = _free_port()
    moto = Path(sys.executable).with_name("moto_server")
    process = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(endpoint, timeout=1)
            break
        except requests.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"moto_server did not start on port {port}") from None
            time.sleep(0.2)
    try:
        yield S3Server(endpoint, process)
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Dummy S3 credentials in the environment, where boto3 (and so the pipeline) reads them."""
    for key, value in S3_ENV.items():
        monkeypatch.setenv(key, value)
    return dict(os.environ)


@pytest.fixture
def s3_store(s3_server: S3Server, s3_env: dict[str, str], tmp_path: Path) -> S3BlobStore:
    return S3BlobStore(
        s3_server.new_bucket(),
        prefix="backup/",
        endpoint_url=s3_server.endpoint,
        region="us-east-1",
        spool_dir=str(tmp_path),
    )


@pytest.fixture
def local_store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")
