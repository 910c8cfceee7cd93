"""File bodies of a backed-up window: every new or changed version's bytes into the blob store.

Runs in the mirror step after the window is loaded (so it sees exactly the versions the window brought):
for each base64 field, the versions not yet in the fetch ledger are downloaded from the blob endpoint,
several at a time (`blobs.concurrent_downloads`, inside the step's slot of the org's pool; every download is
one API call, counted and budgeted like the rest), streamed through SHA-256 into the store, recorded in the
ledger once complete, and finally written onto the mirror rows (`_sfp_<field>_sha256`, `_sfp_<field>_size`),
from where the window's snapshot copies them into history. A deleted version keeps the body of the version
before it (the org serves no bytes for deleted records). A killed run leaves complete blobs and their ledger
rows; its rerun fetches only the rest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
import requests

from sf_pipeline.blobs import BlobError, BlobStore
from sf_pipeline.salesforce.blobs import open_blob
from sf_pipeline.salesforce.client import SalesforceClient
from sf_pipeline.salesforce.errors import BlobUnavailable
from sf_pipeline.salesforce.soql import id_list
from sf_pipeline.warehouse.files import (
    PendingBody,
    apply_bodies,
    documents_in_window,
    ensure_file_tables,
    latest_known_body,
    pending_bodies,
    record_bodies,
    record_links,
)
from sf_pipeline.warehouse.schema import MirrorTable

log = logging.getLogger(__name__)
LEDGER_BATCH = 50
DOWNLOAD_ATTEMPTS = 3
_LINKS_PER_QUERY = 100


class FileBackupError(RuntimeError):
    """A file body could not be backed up; the window is not done (its rerun fetches only what is missing)."""


@dataclass
class FileBodiesResult:
    """What one window did for its file bodies (run metadata)."""

    fields: list[str] = field(default_factory=list)
    fetched: int = 0  # bodies downloaded
    bytes_fetched: int = 0
    new_blobs: int = 0  # of which new content in the store (the others were there already: deduplicated)
    carried: int = 0  # deleted versions that keep the body of the version before
    unavailable: int = 0  # versions the org had no bytes for (deleted before their body was read, or empty)
    already_known: int = 0  # versions of the window whose body an earlier (killed or overlapping) run stored
    rows_updated: int = 0
    links_seen: int = 0
    api_calls: int = 0
    seconds: float = 0.0

    def as_metadata(self) -> dict[str, Any]:
        return {
            "fields": self.fields,
            "bodies_fetched": self.fetched,
            "bytes_fetched": self.bytes_fetched,
            "new_blobs": self.new_blobs,
            "deduplicated": self.fetched - self.new_blobs,
            "carried_to_deleted_versions": self.carried,
            "unavailable": self.unavailable,
            "links_seen": self.links_seen,
            "api_calls": self.api_calls,
            "seconds": round(self.seconds, 3),
        }


def _download(
    client: SalesforceClient, store: BlobStore, sobject: str, field: str, body: PendingBody
) -> tuple[str | None, int | None, str, bool]:
    """(sha256, size, how, new blob) for one version; retried whole when the bytes stop flowing."""
    for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
        try:
            with open_blob(client, sobject, body.record_id, field) as (chunks, announced):
                stored = store.put(
                    chunks, expected_size=body.expected_size if body.expected_size is not None else announced
                )
            return stored.sha256, stored.size, "fetched", stored.written
        except BlobUnavailable:
            return None, None, "unavailable", False
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError, requests.Timeout, BlobError) as exc:
            if attempt == DOWNLOAD_ATTEMPTS:
                raise FileBackupError(
                    f"{sobject} {body.record_id} {field}: the body could not be downloaded "
                    f"completely in {attempt} attempts: {exc}"
                ) from exc
            log.warning("%s %s %s: download cut short (%s), attempt %d", sobject, body.record_id, field, exc, attempt)
            time.sleep(0.5 * attempt)
    raise AssertionError("unreachable")


def backup_file_bodies(
    client: SalesforceClient,
    conn: psycopg.Connection[Any],
    store: BlobStore,
    table: MirrorTable,
    fields: Sequence[str],
    start: datetime,
    end: datetime,
    *,
    concurrency: int = 4,
    progress: Callable[[str], None] | None = None,
) -> FileBodiesResult:
    """Fetch and store the bodies of the window's new and changed versions; see the module's docstring."""
    started = time.perf_counter()
    calls_before = client.api_calls
    result = FileBodiesResult(fields=list(fields))
    ensure_file_tables(conn)
    sobject = table.object_name
    for fname in fields:
        pending = pending_bodies(conn, table, fname, start, end)
        # versions the org serves no bytes for: the body of the version before, or unavailable
        carried: list[tuple[str, datetime, str | None, int | None, str]] = []
        for body in (b for b in pending if not b.downloadable):
            sha, size = body.known_sha256, body.known_size
            if sha is None:
                sha, size = latest_known_body(conn, sobject, fname, body.record_id, body.systemmodstamp)
            carried.append((body.record_id, body.systemmodstamp, sha, size, "carried" if sha else "unavailable"))
            result.carried += sha is not None
            result.unavailable += sha is None
        record_bodies(conn, sobject, fname, carried)
        downloads = [b for b in pending if b.downloadable]
        if downloads and progress:
            progress(f"{sobject}.{fname}: downloading {len(downloads)} bodies, {concurrency} at a time")
        _run_downloads(client, conn, store, sobject, fname, downloads, concurrency, result)
        result.rows_updated += apply_bodies(conn, table, fname, start, end)
    if sobject == "ContentVersion":
        result.links_seen = _backup_links(client, conn, table, start, end)
    result.api_calls = client.api_calls - calls_before
    result.seconds = time.perf_counter() - started
    return result


def _run_downloads(
    client: SalesforceClient,
    conn: psycopg.Connection[Any],
    store: BlobStore,
    sobject: str,
    fname: str,
    downloads: Sequence[PendingBody],
    concurrency: int,
    result: FileBodiesResult,
) -> None:
    done: list[tuple[str, datetime, str | None, int | None, str]] = []
    last_commit = time.monotonic()
    failure: BaseException | None = None
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="sfp-files") as pool:
        queue = iter(downloads)
        running: dict[Future, PendingBody] = {}

        def submit_next() -> None:
            body = next(queue, None)
            if body is not None:
                running[pool.submit(_download, client, store, sobject, fname, body)] = body

        for _ in range(concurrency * 2):  # a bounded queue: futures for a million files are never built at once
            submit_next()
        while running:
            finished, _ = wait(list(running), timeout=1.0, return_when=FIRST_COMPLETED)
            for future in finished:
                body = running.pop(future)
                try:
                    sha, size, how, new = future.result()
                except BaseException as exc:  # noqa: BLE001 - recorded progress is kept, then re-raised
                    failure = failure or exc
                    continue
                done.append((body.record_id, body.systemmodstamp, sha, size, how))
                if how == "fetched":
                    result.fetched += 1
                    result.bytes_fetched += size or 0
                    result.new_blobs += new
                else:
                    result.unavailable += 1
                if failure is None:
                    submit_next()
            # every 50 bodies or 2 seconds, even while one long download goes on
            if done and (len(done) >= LEDGER_BATCH or time.monotonic() - last_commit > 2):
                record_bodies(conn, sobject, fname, done)  # committed: a killed run keeps what is complete
                done, last_commit = [], time.monotonic()
    record_bodies(conn, sobject, fname, done)
    if failure is not None:
        if isinstance(failure, FileBackupError):
            raise failure
        raise FileBackupError(f"{sobject}.{fname}: a body could not be backed up: {failure}") from failure


def _backup_links(
    client: SalesforceClient, conn: psycopg.Connection[Any], table: MirrorTable, start: datetime, end: datetime
) -> int:
    """The ContentDocumentLinks of the window's documents (Salesforce answers them per document only)."""
    documents = documents_in_window(conn, table, start, end)
    seen = 0
    for i in range(0, len(documents), _LINKS_PER_QUERY):
        chunk = documents[i : i + _LINKS_PER_QUERY]
        soql = (
            "SELECT Id, ContentDocumentId, LinkedEntityId, ShareType, Visibility FROM ContentDocumentLink "
            f"WHERE ContentDocumentId IN ({id_list(chunk)})"
        )
        for page in client.query_pages(soql, include_deleted=False):
            record_links(conn, page, end)
            seen += len(page)
    return seen


def backup_window_files(
    context: Any,
    client: SalesforceClient,
    conn: psycopg.Connection[Any],
    settings: Any,
    obj: Any,
    describe_fields: Sequence[Any],
    start: datetime,
    end: datetime,
) -> FileBodiesResult | None:
    """The mirror step's hook: the object's file bodies for the window, or None when it has no base64 field."""
    from sf_pipeline.warehouse.files import base64_fields, ensure_body_columns
    from sf_pipeline.warehouse.schema import get_mirror_table

    body_fields = base64_fields(describe_fields, obj.exclude)
    if not body_fields:
        return None
    ensure_body_columns(conn, get_mirror_table(conn, obj.name), body_fields)
    result = backup_file_bodies(
        client,
        conn,
        settings.blob_store(),
        get_mirror_table(conn, obj.name),
        body_fields,
        start,
        end,
        concurrency=settings.blobs.concurrent_downloads,
        progress=context.log.info,
    )
    context.log.info(
        f"{obj.name} file bodies: {result.fetched} fetched ({result.bytes_fetched:,} bytes, "
        f"{result.new_blobs} new blobs), {result.carried} deleted versions carried, "
        f"{result.unavailable} unavailable, {result.api_calls} API calls"
    )
    return result


# ====================================================================== backup_complete: every referenced blob
REHASH_BUDGET_BYTES = 256 * 1024 * 1024


def file_bodies_finding(
    conn: psycopg.Connection[Any], store: BlobStore, object_name: str, *, rehash_budget: int = REHASH_BUDGET_BYTES
) -> Any:
    """`backup_complete`'s condition on file bodies: every blob the object's mirror and history refer to is in the
    store with its size; a random sample of them (up to `rehash_budget` bytes per check) is read back and hashed.
    None when the object has no file-body columns."""
    import random

    from sf_pipeline.warehouse.files import body_column_tables

    from .checks import Finding

    tables = body_column_tables(conn, object_name)
    if not tables:
        return None
    refs: dict[str, int | None] = {}
    for schema, table, sha_col, size_col in tables:
        for sha, size in conn.execute(
            f'SELECT DISTINCT "{sha_col}"::text, "{size_col}" FROM "{schema}"."{table}" WHERE "{sha_col}" IS NOT NULL'
        ).fetchall():
            refs[str(sha).strip()] = size
    missing, wrong_size, wrong_hash = [], [], []
    for sha, size in refs.items():
        have = store.size(sha)
        if have is None:
            missing.append(sha)
        elif size is not None and have != size:
            wrong_size.append(sha)
    sample = [s for s in refs if s not in missing and s not in wrong_size]
    random.shuffle(sample)
    rehashed, budget = 0, rehash_budget
    for sha in sample:
        size = refs[sha] or 0
        if size > budget:
            continue
        budget -= size
        rehashed += 1
        if not store.verify(sha):
            wrong_hash.append(sha)
    bad = missing + wrong_size + wrong_hash
    if not bad:
        return Finding(
            "file_bodies",
            True,
            f"all {len(refs)} file bodies referenced by mirror and history are in the "
            f"{store.description} ({rehashed} re-read and hashed this time)",
        )
    shown = "; ".join(
        [f"missing {s}" for s in missing[:10]]
        + [f"wrong size {s}" for s in wrong_size[:10]]
        + [f"bytes no longer hash to {s}" for s in wrong_hash[:10]]
    )
    return Finding(
        "file_bodies",
        False,
        f"{len(bad)} of {len(refs)} file bodies referenced by {object_name}'s backup are not "
        f"intact in the {store.description}: {shown}",
        "put the blobs back from the store's own copy (bucket versioning, snapshots); or delete their rows from "
        "sf_pipeline.file_bodies and back up the windows holding those versions again: bodies the org still has "
        "are fetched again",
    )


def file_bodies_findings(settings: Any) -> Callable[[Sequence[Any]], dict[Any, list[Any]]]:
    """For `backup_complete_check`: the file-body finding of each mirror key whose object has file bodies."""

    def findings(mirror_keys: Sequence[Any]) -> dict[Any, list[Any]]:
        from sf_pipeline.resources import WarehouseResource

        out: dict[Any, list[Any]] = {}
        store = settings.blob_store()
        with WarehouseResource().connect() as conn:
            for key in mirror_keys:
                finding = file_bodies_finding(conn, store, key.path[-1])
                if finding is not None:
                    out[key] = [finding]
        return out

    return findings
