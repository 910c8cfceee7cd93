"""Loading an object that has no timestamp: every window reads it whole and compares it with the mirror.

Such an object (describe: no SystemModstamp, no CreatedDate) cannot say what changed, so a window reads every
record (`sf_pipeline.salesforce.extract.extract_all`) and this module decides: a record the mirror lacks is
inserted, a record whose values differ is updated, both stamped `stamp` (a time inside the window, the
`systemmodstamp` column the history snapshot orders versions by); an unchanged record keeps its row and stamp,
so history gains no version for it; a record the mirror holds and the org no longer does is closed as
vanished ("gone, cause unknown": such objects have no delete log).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pyarrow as pa
from psycopg import sql

from sf_pipeline.warehouse.csvpage import CsvPage
from sf_pipeline.warehouse.errors import WarehouseLoadError
from sf_pipeline.warehouse.load import _LOAD_WORK_MEM, _TEXT_TYPES, _VARCHAR, LoadResult, _copy_into_staging
from sf_pipeline.warehouse.names import ident, idents
from sf_pipeline.warehouse.schema import MirrorTable
from sf_pipeline.warehouse.vanished import VanishedRecord, ensure_vanished_columns, mark_vanished

TICK = timedelta(milliseconds=1)


def _stamped(pages: Iterable[pa.RecordBatch | CsvPage], stamp: datetime) -> Iterable[pa.RecordBatch | CsvPage]:
    for page in pages:
        if isinstance(page, CsvPage):
            from sf_pipeline.warehouse.csvpage import read_text_csv

            batches = read_text_csv(page.data, list(page.columns)).to_batches()
        else:
            batches = [page]
        for batch in batches:
            yield batch.append_column("SystemModstamp", pa.array([stamp.isoformat()] * batch.num_rows, pa.string()))


def load_full_read(
    conn: psycopg.Connection[Any],
    table: MirrorTable,
    pages: Iterable[pa.RecordBatch | CsvPage],
    window_start: datetime,
    window_end: datetime,
    found_at: datetime,
) -> LoadResult:
    """Apply a whole read of an object to its mirror (all or nothing); see the module docstring.

    Changed and new rows are stamped at the window's last millisecond (never before their previous version),
    so the window's history snapshot takes them."""
    started = time.perf_counter()
    stamp = window_end - TICK
    ensure_vanished_columns(conn, table)
    from sf_pipeline.warehouse.schema import get_mirror_table

    table = get_mirror_table(conn, table.object_name, table.schema)
    with conn.transaction():
        conn.execute("SELECT set_config('timezone', 'UTC', true), set_config('work_mem', %s, true)", (_LOAD_WORK_MEM,))
        conn.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(table.identifier))
        staging, extracted, size = _copy_into_staging(conn, table, _stamped(pages, stamp))
        inserted = updated = 0
        if staging is not None:
            repeated = conn.execute(
                sql.SQL("SELECT count(*) - count(DISTINCT id) FROM {}").format(staging.identifier)
            ).fetchone()[0]
            if repeated:
                raise WarehouseLoadError(
                    f"{table.object_name}: the whole read returned {repeated} ids twice", object_name=table.object_name
                )
            cast = {}
            for name, pg_type in zip(staging.columns, staging.casts, strict=True):
                column = sql.Identifier("s", name)
                cast[name] = (
                    column
                    if pg_type in _TEXT_TYPES or _VARCHAR.match(pg_type)
                    else sql.SQL("{}::{}").format(column, sql.SQL(pg_type))
                )
            values = [c for c in staging.columns if c not in ("id", "systemmodstamp")]
            inserted = conn.execute(
                sql.SQL(
                    "INSERT INTO {t} ({cols}) SELECT {vals} FROM {s} AS s "
                    "WHERE NOT EXISTS (SELECT FROM {t} AS m WHERE m.id = s.id)"
                ).format(
                    t=table.identifier,
                    cols=idents(staging.columns),
                    s=staging.identifier,
                    vals=sql.SQL(", ").join(cast[c] for c in staging.columns),
                )
            ).rowcount
            if values:
                updated = conn.execute(
                    sql.SQL(
                        "UPDATE {t} AS m SET {assign}, systemmodstamp = greatest(%(stamp)s, m.systemmodstamp + %(tick)s) "
                        "FROM {s} AS s WHERE m.id = s.id AND ({mine}) IS DISTINCT FROM ({theirs})"
                    ).format(
                        t=table.identifier,
                        s=staging.identifier,
                        assign=sql.SQL(", ").join(sql.SQL("{} = {}").format(ident(c), cast[c]) for c in values),
                        mine=sql.SQL(", ").join(sql.Identifier("m", c) for c in values),
                        theirs=sql.SQL(", ").join(cast[c] for c in values),
                    ),
                    {"stamp": stamp, "tick": TICK},
                ).rowcount
            gone = [
                r[0]
                for r in conn.execute(
                    sql.SQL(
                        "SELECT m.id FROM {t} AS m WHERE m._sfp_gone IS NOT TRUE "
                        "AND NOT EXISTS (SELECT FROM {s} AS s WHERE s.id = m.id)"
                    ).format(t=table.identifier, s=staging.identifier)
                )
            ]
            conn.execute(sql.SQL("DROP TABLE {}").format(staging.identifier))
        else:
            gone = [
                r[0]
                for r in conn.execute(sql.SQL("SELECT id FROM {} WHERE _sfp_gone IS NOT TRUE").format(table.identifier))
            ]
    # A record no longer in the org: no delete log tells when or why (the object has no timestamp).
    vanished = mark_vanished(conn, table, [VanishedRecord(rid, "unknown") for rid in gone], found_at, window_end)
    return LoadResult(
        table.object_name,
        window_start,
        window_end,
        extracted=extracted,
        inserted=inserted,
        updated=updated,
        unchanged=extracted - inserted - updated,
        deleted=vanished,
        bytes=size,
        seconds=time.perf_counter() - started,
    )
