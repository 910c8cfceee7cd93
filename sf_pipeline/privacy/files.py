"""Forgetting files: the blobs that only erased rows referred to leave the blob store too.

Called by `forget` in its transaction: `collect` (before the rows go) notes the file bodies the erased records'
mirror rows, history versions and fetch-ledger rows refer to; `finish` (after) removes the ledger rows and keeps
the hashes nothing else refers to any more (a body shared with another record stays), queued in
`sf_pipeline.blob_deletions` with the erasure's id in the same transaction; `remove_queued` deletes those blobs
from the store once the transaction is committed. A run killed in between leaves the queue, which the next
forget (or `remove_queued` alone) finishes: a blob never outlives its erasure for good.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from sf_pipeline.blobs import BlobStore
from sf_pipeline.warehouse.files import LEDGER, SCHEMA, body_column_tables, ensure_file_tables
from sf_pipeline.warehouse.names import qualified

_QUEUE_DDL = """CREATE TABLE IF NOT EXISTS sf_pipeline.blob_deletions (
    sha256 char(64) PRIMARY KEY,
    erasure_id bigint,
    queued_at timestamptz NOT NULL DEFAULT now())"""


@dataclass
class FileErasure:
    """The file bodies of one forget request."""

    records: Mapping[str, Sequence[str]]
    hashes: set[str] = field(default_factory=set)
    unreferenced: list[str] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return sorted({rid for v in self.records.values() for rid in v})

    def collect(self, conn: psycopg.Connection[Any]) -> None:
        """Before the erased rows are deleted: the bodies they refer to."""
        ensure_file_tables(conn)
        for sobject, ids in self.records.items():
            for schema, table, sha_col, _ in body_column_tables(conn, sobject):
                self.hashes.update(
                    str(r[0]).strip()
                    for r in conn.execute(
                        sql.SQL("SELECT DISTINCT {c}::text FROM {t} WHERE id = ANY(%s) AND {c} IS NOT NULL").format(
                            c=sql.Identifier(sha_col), t=qualified(schema, table)
                        ),
                        (list(ids),),
                    )
                )
        self.hashes.update(
            str(r[0]).strip()
            for r in conn.execute(
                f"SELECT DISTINCT sha256 FROM {SCHEMA}.{LEDGER} WHERE record_id = ANY(%s) AND sha256 IS NOT NULL",
                (self.ids,),
            )
        )

    def finish(self, conn: psycopg.Connection[Any], delete: bool) -> dict[str, int]:
        """After the erased rows are deleted (or counted): ledger rows, and the blobs nobody else refers to."""
        verb = "DELETE FROM" if delete else "SELECT count(*) FROM"
        ledger = conn.execute(f"{verb} {SCHEMA}.{LEDGER} WHERE record_id = ANY(%s)", (self.ids,))
        ledger_rows = ledger.rowcount if delete else ledger.fetchone()[0]
        still: set[str] = set()
        if self.hashes:
            wanted = sorted(self.hashes)
            erased = self.ids
            parts = [
                sql.SQL(
                    "SELECT sha256::text FROM {} WHERE sha256 = ANY(%(h)s) AND NOT record_id = ANY(%(ids)s)"
                ).format(qualified(SCHEMA, LEDGER))
            ]
            for schema, table, sha_col, _ in body_column_tables(conn):
                parts.append(
                    sql.SQL("SELECT {c}::text FROM {t} WHERE {c} = ANY(%(h)s) AND NOT id = ANY(%(ids)s)").format(
                        c=sql.Identifier(sha_col), t=qualified(schema, table)
                    )
                )
            still = {
                str(r[0]).strip() for r in conn.execute(sql.SQL(" UNION ").join(parts), {"h": wanted, "ids": erased})
            }
        self.unreferenced = sorted(self.hashes - still)
        return {
            f"{SCHEMA}.{LEDGER}": ledger_rows,
            "blob store (file bodies only they referred to)": len(self.unreferenced),
        }

    def queue(self, conn: psycopg.Connection[Any], erasure_id: int | None) -> None:
        """In the erasure's transaction: the blobs to delete once it is committed."""
        conn.execute(_QUEUE_DDL)
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO sf_pipeline.blob_deletions (sha256, erasure_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                [(h, erasure_id) for h in self.unreferenced],
            )


def remove_queued(conn: psycopg.Connection[Any], store: BlobStore) -> int:
    """Delete the queued blobs from the store (after their erasure committed); returns how many were removed."""
    conn.execute(_QUEUE_DDL)
    removed = 0
    for (sha,) in conn.execute("SELECT sha256 FROM sf_pipeline.blob_deletions ORDER BY queued_at").fetchall():
        sha = str(sha).strip()
        removed += store.delete(sha)
        conn.execute("DELETE FROM sf_pipeline.blob_deletions WHERE sha256 = %s", (sha,))
        if not conn.autocommit:
            conn.commit()
    return removed
