"""Records erased on a data subject's request: the list the backup keeps so it never brings them back.

Erasing a record from the backup (sf_pipeline.privacy.forget) does not erase it in Salesforce; while it
exists there, the next window that sees it change would extract it again. Each window load therefore drops
the mirror rows of listed records before they are snapshotted into history, and reports how many it
dropped. The list holds object names, record ids and dates only (no personal data).

The id reconciliation (backup/reconciliation.py) counts the org's ids against the mirror's: a listed record the
org still holds is counted on the mirror's side (it is known, not missing from the backup), and once the org no
longer holds it (the org erased it too) it is marked `gone_from_org_at` and counted on neither side.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from sf_pipeline.warehouse.names import MIRROR_SCHEMA, qualified, table_name

SCHEMA = "sf_pipeline"
TABLE = "erased_records"
_DDL_LOCK_KEY = 0x5F_4552_4153_4544  # "_ERASED": serializes concurrent ensure_erased_table

_DDL = [
    f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}",
    f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.{TABLE} (
        object text NOT NULL,
        record_id varchar(18) NOT NULL,
        erasure_id bigint NOT NULL,
        erased_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (object, record_id))""",
    # the record's CreatedDate (a reconciliation bounded by creation counts it only from then on) and when a
    # reconciliation found the org no longer holds it; both added to lists made before they existed
    f"ALTER TABLE {SCHEMA}.{TABLE} ADD COLUMN IF NOT EXISTS created_date timestamptz",
    f"ALTER TABLE {SCHEMA}.{TABLE} ADD COLUMN IF NOT EXISTS gone_from_org_at timestamptz",
]


def ensure_erased_table(conn: psycopg.Connection[Any]) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK_KEY,))
        for statement in _DDL:
            conn.execute(statement)


def add_erased(
    conn: psycopg.Connection[Any],
    object_name: str,
    record_ids: Sequence[str],
    erasure_id: int,
    created: Mapping[str, datetime | None] | None = None,
) -> None:
    """List records as erased (idempotent: an id erased twice keeps its first erasure); `created` gives their
    CreatedDate where the backup knew it."""
    created = created or {}
    with conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO {SCHEMA}.{TABLE} (object, record_id, erasure_id, created_date) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (object, record_id) DO NOTHING",
            [(object_name, rid, erasure_id, created.get(rid)) for rid in record_ids],
        )


def _listed(conn: psycopg.Connection[Any]) -> bool:
    return conn.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.{TABLE}",)).fetchone()[0] is not None


def erased_in_org(conn: psycopg.Connection[Any], object_name: str, created_before: datetime | None) -> list[str]:
    """Ids of erased records of an object the org held when last reconciled (created before the bound, or of
    unknown creation), sorted: what a reconciliation counts on the mirror's side."""
    # whether the list exists, and has the columns added after it was first made: one catalog query
    listed, current = conn.execute(
        "SELECT t IS NOT NULL, (SELECT count(*) FROM pg_attribute WHERE attrelid = t AND NOT attisdropped "
        "AND attname IN ('created_date', 'gone_from_org_at')) = 2 FROM to_regclass(%s) AS t",
        (f"{SCHEMA}.{TABLE}",),
    ).fetchone()
    if not listed:
        return []
    if not current:
        ensure_erased_table(conn)  # a list made before these columns existed
    rows = conn.execute(
        f"SELECT record_id FROM {SCHEMA}.{TABLE} WHERE object = %s AND gone_from_org_at IS NULL "
        "AND (created_date IS NULL OR %s::timestamptz IS NULL OR created_date < %s) ORDER BY record_id",
        (object_name, created_before, created_before),
    ).fetchall()
    return sorted(r[0] for r in rows)


def mark_gone_from_org(
    conn: psycopg.Connection[Any], object_name: str, record_ids: Sequence[str], found_at: datetime
) -> int:
    """Note that the org no longer holds these erased records (found by a reconciliation); how many."""
    if not record_ids or not _listed(conn):
        return 0
    with conn.transaction():
        return conn.execute(
            f"UPDATE {SCHEMA}.{TABLE} SET gone_from_org_at = %s WHERE object = %s "
            "AND record_id = ANY(%s) AND gone_from_org_at IS NULL",
            (found_at, object_name, list(record_ids)),
        ).rowcount


def drop_erased_rows(conn: psycopg.Connection[Any], object_name: str) -> list[str]:
    """Delete the mirror rows of erased records of an object (a window re-extracted them); their ids."""
    if not _listed(conn):
        return []
    query = sql.SQL(
        "DELETE FROM {} AS m USING {} AS e WHERE e.object = %s AND m.id = e.record_id RETURNING m.id"
    ).format(qualified(MIRROR_SCHEMA, table_name(object_name)), qualified(SCHEMA, TABLE))
    with conn.transaction():
        return [r[0] for r in conn.execute(query, (object_name,))]
