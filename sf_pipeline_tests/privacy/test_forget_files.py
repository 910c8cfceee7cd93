"""Forgetting a record removes the file bodies only it referred to from the blob store, and says how many."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from sf_pipeline.blobs import LocalBlobStore
from sf_pipeline.privacy.forget import ForgetRequest, forget
from sf_pipeline.salesforce.values import id18
from sf_pipeline.warehouse.files import ensure_file_tables

ERASED, KEPT = id18("00P000000000001"), id18("00P000000000002")
STAMP = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)


def _body(store: LocalBlobStore, data: bytes) -> str:
    return store.put([data]).sha256


def test_forget_removes_the_blobs_only_the_erased_rows_referred_to(pg_conn, tmp_path):
    store = LocalBlobStore(tmp_path / "blobs")
    own_old, own_new, shared, other = (_body(store, d) for d in (b"her scan v1", b"her scan v2", b"logo", b"theirs"))
    ensure_file_tables(pg_conn)
    for schema in ("salesforce", "salesforce_history"):
        pg_conn.execute(f"CREATE SCHEMA {schema}")
        pg_conn.execute(
            f"CREATE TABLE {schema}.attachment (id varchar(18), systemmodstamp timestamptz, "
            "_sfp_body_sha256 char(64), _sfp_body_size bigint)"
        )
    rows = [(ERASED, own_old), (ERASED, own_new), (ERASED, shared), (KEPT, shared), (KEPT, other)]
    for rid, sha in rows:
        pg_conn.execute("INSERT INTO salesforce_history.attachment VALUES (%s, %s, %s, 1)", (rid, STAMP, sha))
        pg_conn.execute(
            "INSERT INTO sf_pipeline.file_bodies (object, record_id, field, systemmodstamp, sha256, size, "
            "how) VALUES ('Attachment', %s, 'Body', now() + random() * interval '1 day', %s, 1, 'fetched')",
            (rid, sha),
        )
    pg_conn.execute(
        "INSERT INTO salesforce.attachment VALUES (%s, %s, %s, 1), (%s, %s, %s, 1)",
        (ERASED, STAMP, own_new, KEPT, STAMP, other),
    )
    request = {"object": "Attachment", "record_ids": [ERASED]}

    dry = forget(
        pg_conn,
        ForgetRequest.from_dict(request, ["Attachment"]),
        backed_up=["Attachment"],
        fields=[],
        requested_by="dpo",
        blob_store=store,
    )
    assert dry.rows_removed["blob store (file bodies only they referred to)"] == 2
    assert dry.rows_removed["sf_pipeline.file_bodies"] == 3
    assert all(store.exists(s) for s in (own_old, own_new, shared, other))  # a dry run removes nothing

    done = forget(
        pg_conn,
        ForgetRequest.from_dict({**request, "dry_run": False}, ["Attachment"]),
        backed_up=["Attachment"],
        fields=[],
        requested_by="dpo",
        blob_store=store,
    )
    assert done.rows_removed["blob store (file bodies only they referred to)"] == 2
    assert not store.exists(own_old) and not store.exists(own_new)
    assert store.exists(shared) and store.exists(other)  # still referred to by the kept attachment
    logged = pg_conn.execute(
        "SELECT rows_removed FROM sf_pipeline.erasure_log WHERE id = %s", (done.erasure_id,)
    ).fetchone()[0]
    assert logged["blob store (file bodies only they referred to)"] == 2
    assert (
        pg_conn.execute("SELECT count(*) FROM sf_pipeline.file_bodies WHERE record_id = %s", (ERASED,)).fetchone()[0]
        == 0
    )
    assert pg_conn.execute("SELECT count(*) FROM sf_pipeline.blob_deletions").fetchone()[0] == 0
    assert hashlib.sha256(b"logo").hexdigest() == shared
