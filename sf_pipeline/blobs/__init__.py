"""Content-addressed storage for file bodies (ContentVersion.VersionData, Attachment.Body, Document.Body, ...).

A blob is stored once under its SHA-256, whatever record or version refers to it: in a local directory
(the default, for the demo and tests) or in S3-compatible object storage (production). No Dagster and no
Salesforce here: the backup streams bytes in, restores and `sf-pipeline file` stream them out.

    store = blob_store_from_settings(settings.blobs, base_dir=settings.path.parent)
    stored = store.put(chunks)            # hashes while it writes; visible under its hash only when complete
    with store.open(stored.sha256) as f:  # a readable binary stream
        ...
"""

from sf_pipeline.blobs.errors import BlobError, BlobMissingError, BlobSettingsError
from sf_pipeline.blobs.settings import BlobSettings, blob_settings
from sf_pipeline.blobs.store import (
    CHUNK_SIZE,
    BlobStore,
    LocalBlobStore,
    S3BlobStore,
    StoredBlob,
    blob_store_from_settings,
    is_sha256,
)

__all__ = [
    "CHUNK_SIZE",
    "BlobError",
    "BlobMissingError",
    "BlobSettings",
    "BlobSettingsError",
    "BlobStore",
    "LocalBlobStore",
    "S3BlobStore",
    "StoredBlob",
    "blob_settings",
    "blob_store_from_settings",
    "is_sha256",
]
