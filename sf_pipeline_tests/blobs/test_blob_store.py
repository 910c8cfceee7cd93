"""The blob store: content-addressed, deduplicated, never a half-written blob under a hash (local and S3)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sf_pipeline.blobs import (
    BlobError,
    BlobMissingError,
    BlobSettingsError,
    LocalBlobStore,
    S3BlobStore,
    blob_settings,
    blob_store_from_settings,
)


def _chunks(data: bytes, size: int = 64 * 1024):
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest):
    return request.getfixturevalue(f"{request.param}_store")


def test_blob_is_stored_under_its_sha256_once_and_reads_back(store) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    sha = hashlib.sha256(data).hexdigest()
    first = store.put(_chunks(data))
    assert (first.sha256, first.size, first.written) == (sha, len(data), True)
    again = store.put(_chunks(data))
    assert (again.sha256, again.written) == (sha, False)  # identical content is stored once
    assert store.exists(sha) and store.size(sha) == len(data)
    assert b"".join(store.chunks(sha)) == data
    assert store.verify(sha)
    assert store.delete(sha) and not store.exists(sha)
    with pytest.raises(BlobMissingError, match=sha):
        with store.open(sha):
            pass


def test_cut_short_or_wrong_bytes_leave_nothing_under_any_hash(store) -> None:
    data = b"contract v1 " * 1000
    sha = hashlib.sha256(data).hexdigest()
    with pytest.raises(BlobError, match="expected 99999"):
        store.put(_chunks(data), expected_size=99_999)
    with pytest.raises(BlobError, match="expected " + "0" * 64):
        store.put(_chunks(data), expected_sha256="0" * 64)

    def broken():
        yield data[:100]
        raise ConnectionError("download dropped")

    with pytest.raises(ConnectionError):
        store.put(broken())
    assert not store.exists(sha)
    assert not store.exists(hashlib.sha256(data[:100]).hexdigest())


def test_s3_store_uses_multipart_upload_for_large_blobs(s3_store: S3BlobStore, s3_server) -> None:
    data = os.urandom(20 * 1024 * 1024)  # above the 8 MB multipart threshold
    stored = s3_store.put(_chunks(data, 1024 * 1024))
    head = s3_server.client().head_object(Bucket=s3_store.bucket, Key=s3_store.key(stored.sha256))
    assert head["ContentLength"] == len(data)
    assert head["Metadata"]["sha256"] == stored.sha256
    assert "-" in head["ETag"]  # a multipart upload's ETag is "<md5 of part md5s>-<parts>"
    assert s3_server.client().list_multipart_uploads(Bucket=s3_store.bucket).get("Uploads", []) == []
    assert s3_store.verify(stored.sha256)


def test_local_store_killed_mid_write_leaves_only_an_unreferenced_temp_file(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    script = textwrap.dedent(f"""
        import sys, time
        from sf_pipeline.blobs import LocalBlobStore
        def slow():
            for _ in range(1000):
                yield b"x" * 65536
                sys.stdout.write("."); sys.stdout.flush()
                time.sleep(0.01)
        LocalBlobStore({str(root)!r}).put(slow())
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.read(5)  # it is writing
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (root / "sha256").exists() or not any(p.is_file() for p in (root / "sha256").rglob("*"))
    leftovers = list((root / "tmp").glob("incoming-*"))
    assert len(leftovers) == 1
    store = LocalBlobStore(root)
    os.utime(leftovers[0], (time.time() - 7200, time.time() - 7200))
    assert store.sweep_incomplete(older_than_seconds=3600) == 1


def test_settings_block_names_what_is_wrong(tmp_path: Path) -> None:
    assert blob_settings(None).store == "local"
    s3 = blob_settings({"store": "s3", "bucket": "b", "prefix": "p"})
    assert s3.prefix == "p/"
    with pytest.raises(BlobSettingsError, match="blobs.bucket"):
        blob_settings({"store": "s3"})
    with pytest.raises(BlobSettingsError, match="never goes in the settings file"):
        blob_settings({"store": "s3", "bucket": "b", "aws_secret_access_key": "x"})
    with pytest.raises(BlobSettingsError, match="unknown blobs settings"):
        blob_settings({"stor": "s3"})
    with pytest.raises(BlobSettingsError, match="concurrent_downloads"):
        blob_settings({"concurrent_downloads": 0})
    local = blob_store_from_settings(blob_settings({"path": "files"}), tmp_path)
    assert isinstance(local, LocalBlobStore) and local.root == tmp_path / "files"
