"""Records erased on a data subject's request: the list the backup keeps so it never brings them back.

Erasing a record from the backup (sf_pipeline.privacy.forget) does not erase it in Salesforce; while it
exists there, the next window that sees it change would extract it again. Each window load therefore drops
the mirror rows of listed records before they are snapshotted into history, and reports how many it
dropped. The list holds object names and record ids only (no personal data).
"""

from __future__ import annotations

from collections.abc import Sequence
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
]


def ensure_erased_table(conn: psycopg.Connection[Any]) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK_KEY,))
        for statement in _DDL:
            conn.execute(statement)


def add_erased(conn: psycopg.Connection[Any], object_name: str, record_ids: Sequence[str], erasure_id: int) -> None:
    """List records as erased (idempotent: an id erased twice keeps its first erasure)."""
    with conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO {SCHEMA}.{TABLE} (object, record_id, erasure_id) VALUES (%s, %s, %s) "
            "ON CONFLICT (object, record_id) DO NOTHING",
            [(object_name, rid, erasure_id) for rid in record_ids])


def drop_erased_rows(conn: psycopg.Connection[Any], object_name: str) -> list[str]:
    """Delete the mirror rows of erased records of an object (a window re-extracted them); their ids."""
    if conn.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.{TABLE}",)).fetchone()[0] is None:
        return []
    query = sql.SQL("DELETE FROM {} AS m USING {} AS e WHERE e.object = %s AND m.id = e.record_id "
                    "RETURNING m.id").format(qualified(MIRROR_SCHEMA, table_name(object_name)),
                                             qualified(SCHEMA, TABLE))
    with conn.transaction():
        return [r[0] for r in conn.execute(query, (object_name,))]
