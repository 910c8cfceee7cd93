"""Blob stores: content-addressed by SHA-256, written so that a blob is visible only once complete.

- Local directory (`LocalBlobStore`): bytes go to a temporary file under `<root>/tmp/` while they are hashed,
  are flushed to disk, and are renamed to `<root>/sha256/<2 hex>/<hash>` only when complete (a rename within one
  file system is atomic). A killed process leaves at most a file in `tmp/`, which nothing refers to.
- S3-compatible (`S3BlobStore`, boto3): bytes are hashed into a local spool file, then uploaded under
  `<prefix>sha256/<2 hex>/<hash>` with S3's multipart upload, which makes the object exist only when its
  upload is completed, i.e. after the hash is known and checked. Nothing half-written is ever under a hash key.

Either way a blob already present is not written again (identical content is stored once), and reading
is streaming: `open()` gives a binary stream, `chunks()` an iterator of at most CHUNK_SIZE bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from sf_pipeline.blobs.errors import BlobError, BlobMissingError
from sf_pipeline.blobs.settings import BlobSettings

CHUNK_SIZE = 1024 * 1024
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def is_sha256(value: Any) -> bool:
    return isinstance(value, str) and bool(_SHA256.match(value))


def _check(sha256: str) -> str:
    if not is_sha256(sha256):
        raise BlobError(f"{sha256!r} is not a SHA-256 in hex (64 lower-case hex digits)")
    return sha256


@dataclass(frozen=True)
class StoredBlob:
    """A blob as stored: its hash, its size, and whether this put wrote it (False: it was there already)."""

    sha256: str
    size: int
    written: bool


class BlobStore(Protocol):
    """What the backup, restores, seeding and privacy need from a blob store."""

    description: str

    def put(
        self, chunks: Iterable[bytes], *, expected_sha256: str | None = None, expected_size: int | None = None
    ) -> StoredBlob: ...

    def exists(self, sha256: str) -> bool: ...

    def size(self, sha256: str) -> int | None: ...

    def open(self, sha256: str) -> contextlib.AbstractContextManager[IO[bytes]]: ...

    def chunks(self, sha256: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]: ...

    def delete(self, sha256: str) -> bool: ...

    def verify(self, sha256: str) -> bool: ...


def _spool(chunks: Iterable[bytes], out: IO[bytes]) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    for chunk in chunks:
        if not chunk:
            continue
        digest.update(chunk)
        out.write(chunk)
        size += len(chunk)
    out.flush()
    os.fsync(out.fileno())
    return digest.hexdigest(), size


def _expect(sha256: str, size: int, expected_sha256: str | None, expected_size: int | None) -> None:
    if expected_size is not None and size != expected_size:
        raise BlobError(
            f"received {size} bytes, expected {expected_size}: the transfer was cut short; nothing was stored"
        )
    if expected_sha256 is not None and sha256 != expected_sha256:
        raise BlobError(f"received bytes hash to {sha256}, expected {expected_sha256}; nothing was stored")


class _ReadingMixin:
    def chunks(self, sha256: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        with self.open(sha256) as stream:  # type: ignore[attr-defined]
            while True:
                chunk = stream.read(chunk_size)
                if not chunk:
                    return
                yield chunk

    def verify(self, sha256: str) -> bool:
        """Read the blob back and hash it: True when the bytes still hash to their name."""
        digest = hashlib.sha256()
        for chunk in self.chunks(sha256):
            digest.update(chunk)
        return digest.hexdigest() == sha256


class LocalBlobStore(_ReadingMixin):
    """Blobs as files under a directory (the default; the demo and the tests)."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.description = f"local directory {self.root}"
        self._tmp = self.root / "tmp"

    def path(self, sha256: str) -> Path:
        return self.root / "sha256" / _check(sha256)[:2] / sha256

    def put(
        self, chunks: Iterable[bytes], *, expected_sha256: str | None = None, expected_size: int | None = None
    ) -> StoredBlob:
        self._tmp.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=self._tmp, prefix="incoming-")
        try:
            with os.fdopen(fd, "wb") as out:
                sha256, size = _spool(chunks, out)
            _expect(sha256, size, expected_sha256, expected_size)
            final = self.path(sha256)
            if final.exists() and final.stat().st_size == size:
                return StoredBlob(sha256, size, written=False)
            final.parent.mkdir(parents=True, exist_ok=True)
            # atomic: the hash name appears only with all its bytes; a link fails when a concurrent put of the same
            # content got there first (then this one wrote nothing)
            try:
                os.link(tmp_name, final)
            except FileExistsError:
                if final.stat().st_size == size:
                    return StoredBlob(sha256, size, written=False)
                os.replace(tmp_name, final)  # a damaged blob under this name: the verified bytes replace it
            except OSError:  # a file system without hard links
                os.replace(tmp_name, final)
            return StoredBlob(sha256, size, written=True)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def size(self, sha256: str) -> int | None:
        try:
            return self.path(sha256).stat().st_size
        except FileNotFoundError:
            return None

    @contextlib.contextmanager
    def open(self, sha256: str) -> Iterator[IO[bytes]]:
        try:
            stream = self.path(sha256).open("rb")
        except FileNotFoundError:
            raise BlobMissingError(f"blob {sha256} is not in the {self.description}") from None
        with stream:
            yield stream

    def delete(self, sha256: str) -> bool:
        try:
            self.path(sha256).unlink()
            return True
        except FileNotFoundError:
            return False

    def sweep_incomplete(self, older_than_seconds: float = 3600) -> int:
        """Remove temporary files a killed process left in tmp/ (never referenced by anything)."""
        removed = 0
        cutoff = time.time() - older_than_seconds
        for leftover in self._tmp.glob("incoming-*") if self._tmp.exists() else ():
            if leftover.stat().st_mtime < cutoff:
                leftover.unlink(missing_ok=True)
                removed += 1
        return removed


class S3BlobStore(_ReadingMixin):
    """Blobs as objects in an S3-compatible bucket (boto3; credentials from the environment only)."""

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        spool_dir: str | None = None,
        client: Any = None,
        multipart_chunk_mb: int = 8,
    ):
        import boto3
        from boto3.s3.transfer import TransferConfig

        self.bucket = bucket
        self.prefix = prefix
        self.spool_dir = spool_dir
        self.client = client or boto3.client("s3", endpoint_url=endpoint_url, region_name=region)
        self.description = f"bucket s3://{bucket}/{prefix}" + (f" at {endpoint_url}" if endpoint_url else "")
        chunk = multipart_chunk_mb * 1024 * 1024
        self._transfer = TransferConfig(
            multipart_threshold=chunk, multipart_chunksize=chunk, max_concurrency=4, io_chunksize=CHUNK_SIZE
        )

    def key(self, sha256: str) -> str:
        return f"{self.prefix}sha256/{_check(sha256)[:2]}/{sha256}"

    def _head(self, sha256: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            return self.client.head_object(Bucket=self.bucket, Key=self.key(sha256))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise BlobError(f"cannot read {self.description}: {exc}") from None

    def put(
        self, chunks: Iterable[bytes], *, expected_sha256: str | None = None, expected_size: int | None = None
    ) -> StoredBlob:
        with tempfile.NamedTemporaryFile(dir=self.spool_dir, prefix="sf-pipeline-spool-") as spool:
            sha256, size = _spool(chunks, spool)
            _expect(sha256, size, expected_sha256, expected_size)
            head = self._head(sha256)
            if head is not None and head.get("ContentLength") == size:
                return StoredBlob(sha256, size, written=False)
            spool.seek(0)
            # A multipart upload becomes an object only when CompleteMultipartUpload succeeds: after the last part,
            # so after the hash was computed and checked above. An aborted upload leaves no object under the key.
            self.client.upload_fileobj(
                spool,
                self.bucket,
                self.key(sha256),
                Config=self._transfer,
                ExtraArgs={"Metadata": {"sha256": sha256}, "ContentType": "application/octet-stream"},
            )
        head = self._head(sha256)
        if head is None or head.get("ContentLength") != size:
            raise BlobError(f"blob {sha256} did not arrive complete in the {self.description}")
        return StoredBlob(sha256, size, written=True)

    def exists(self, sha256: str) -> bool:
        return self._head(sha256) is not None

    def size(self, sha256: str) -> int | None:
        head = self._head(sha256)
        return None if head is None else int(head["ContentLength"])

    @contextlib.contextmanager
    def open(self, sha256: str) -> Iterator[IO[bytes]]:
        from botocore.exceptions import ClientError

        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.key(sha256))["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise BlobMissingError(f"blob {sha256} is not in the {self.description}") from None
            raise BlobError(f"cannot read {self.description}: {exc}") from None
        try:
            yield body
        finally:
            body.close()

    def delete(self, sha256: str) -> bool:
        if not self.exists(sha256):
            return False
        self.client.delete_object(Bucket=self.bucket, Key=self.key(sha256))
        return True


def blob_store_from_settings(settings: BlobSettings, base_dir: Path) -> LocalBlobStore | S3BlobStore:
    """The store the settings file's `blobs:` block describes (local paths relative to the settings file)."""
    if settings.store == "s3":
        assert settings.bucket
        return S3BlobStore(
            settings.bucket,
            prefix=settings.prefix,
            endpoint_url=settings.endpoint_url,
            region=settings.region,
            spool_dir=settings.spool_dir,
        )
    return LocalBlobStore(settings.local_path(base_dir))
