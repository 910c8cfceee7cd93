"""The settings file's `blobs:` block (contract; README "Files").

```yaml
blobs:
  store: local                  # local (default) | s3
  path: .sf-pipeline/blobs      # local: a directory, relative to the settings file
  bucket: my-backup-bucket      # s3: bucket, optional key prefix, endpoint for S3-compatible servers
  prefix: sf-pipeline/
  endpoint_url: https://s3.eu-central-1.amazonaws.com
  region: eu-central-1
  spool_dir: /var/tmp           # s3: where a download is hashed before it is uploaded (default: the system's)
  concurrent_downloads: 4       # file bodies fetched at a time per backup step
  seed_files: true              # seed_sandbox copies the files of the records it seeds
  seed_max_file_mb: 25          # ... up to this size each (bigger ones are listed, not copied)
```
Credentials for S3 come from the environment only (boto3's chain: `AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, a profile, an instance role), never from this file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from sf_pipeline.blobs.errors import BlobSettingsError

STORES = ("local", "s3")
DEFAULT_LOCAL_PATH = ".sf-pipeline/blobs"
_SECRET_KEYS = {
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "access_key",
    "secret_key",
    "secret_access_key",
    "password",
    "token",
}


@dataclass(frozen=True)
class BlobSettings:
    store: str = "local"
    path: str = DEFAULT_LOCAL_PATH
    bucket: str | None = None
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    spool_dir: str | None = None
    concurrent_downloads: int = 4
    seed_files: bool = True
    seed_max_file_mb: float = 25.0

    def local_path(self, base_dir: Path) -> Path:
        path = Path(self.path).expanduser()
        return path if path.is_absolute() else (base_dir / path)


def blob_settings(section: Mapping[str, Any] | None, where: str = "settings file") -> BlobSettings:
    """Parse and check the `blobs:` block; an unknown or bad key is an error naming it."""
    if section is None:
        return BlobSettings()
    if not isinstance(section, Mapping):
        raise BlobSettingsError(f"{where}: 'blobs' must be a mapping, e.g. {{store: local, path: .sf-pipeline/blobs}}")
    secrets = sorted(k for k in section if str(k).lower() in _SECRET_KEYS)
    if secrets:
        raise BlobSettingsError(
            f"{where}: blobs.{secrets[0]} is a secret and never goes in the settings file: set "
            "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or a profile or instance role) in the "
            "environment"
        )
    known = {f.name for f in fields(BlobSettings)}
    unknown = sorted(set(section) - known)
    if unknown:
        raise BlobSettingsError(f"{where}: unknown blobs settings {unknown}; known: {sorted(known)}")
    values = dict(section)
    store = str(values.get("store", "local"))
    if store not in STORES:
        raise BlobSettingsError(f"{where}: blobs.store must be one of {', '.join(STORES)}, not {store!r}")
    if store == "s3" and not values.get("bucket"):
        raise BlobSettingsError(f"{where}: blobs.store s3 needs blobs.bucket (the bucket to store file bodies in)")
    try:
        downloads = int(values.get("concurrent_downloads", 4))
        cap = float(values.get("seed_max_file_mb", 25.0))
    except (TypeError, ValueError):
        raise BlobSettingsError(f"{where}: blobs.concurrent_downloads and blobs.seed_max_file_mb are numbers") from None
    if not 1 <= downloads <= 32:
        raise BlobSettingsError(f"{where}: blobs.concurrent_downloads must be 1 to 32, not {downloads}")
    if cap <= 0:
        raise BlobSettingsError(f"{where}: blobs.seed_max_file_mb must be positive, not {cap}")
    seed_files = values.get("seed_files", True)
    if not isinstance(seed_files, bool):
        raise BlobSettingsError(f"{where}: blobs.seed_files is true or false, not {seed_files!r}")
    prefix = str(values.get("prefix") or "")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return BlobSettings(
        store=store,
        path=str(values.get("path") or DEFAULT_LOCAL_PATH),
        bucket=values.get("bucket"),
        prefix=prefix,
        endpoint_url=values.get("endpoint_url"),
        region=values.get("region"),
        spool_dir=values.get("spool_dir"),
        concurrent_downloads=downloads,
        seed_files=seed_files,
        seed_max_file_mb=cap,
    )
