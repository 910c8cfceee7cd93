"""Point-in-time reads over the history that dbt snapshots build in `salesforce_history`.

A version of a record is valid from its SystemModstamp (`dbt_valid_from`) until the next version's
(`dbt_valid_to`, null for the current one). A record exists at instant T when one of its versions is
valid at T and that version is not flagged deleted. Restore and seeding both start from here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from sf_pipeline.warehouse.errors import HistoryNotFoundError
from sf_pipeline.warehouse.names import HISTORY_SCHEMA, column_name, idents, qualified, table_name
from sf_pipeline.warehouse.schema import table_columns

_VALID_AT = sql.SQL(
    "h.dbt_valid_from <= %(as_of)s AND (h.dbt_valid_to > %(as_of)s OR h.dbt_valid_to IS NULL) "
    # IS NOT TRUE rather than NOT: a version whose flag is unknown is shown, not hidden.
    "AND h.isdeleted IS NOT TRUE"
)


def history_columns(conn: psycopg.Connection[Any], object_name: str) -> list[str]:
    """The record columns of an object's history table (without dbt's bookkeeping columns)."""
    columns = table_columns(conn, HISTORY_SCHEMA, table_name(object_name))
    if not columns:
        raise HistoryNotFoundError(
            f"no history for {object_name}: {HISTORY_SCHEMA}.{table_name(object_name)} does not exist "
            "yet; run the dbt snapshot of a window of this object first"
        )
    # dbt_*: the snapshot's validity; _sfp_*: the backup's vanished-record flags (warehouse/vanished.py)
    return [name for name, _ in columns if not name.startswith(("dbt_", "_sfp_"))]


def as_of_sql(object_name: str, columns: Sequence[str] | None = None, *, by_ids: bool = False) -> sql.Composed:
    """SELECT of the records of an object as they were at the instant `%(as_of)s`, ordered by id.

    `columns` are field or column names (any case); None selects every column of the history table.
    With `by_ids`, only the records whose id is in `%(ids)s` (a list). Pass `{"as_of": ts}`.
    """
    selected = sql.SQL("h.*") if columns is None else idents([column_name(c) for c in columns], prefix="h")
    only = sql.SQL(" AND h.id = ANY(%(ids)s)") if by_ids else sql.SQL("")
    return sql.SQL("SELECT {} FROM {} AS h WHERE {}{} ORDER BY h.id").format(
        selected, qualified(HISTORY_SCHEMA, table_name(object_name)), _VALID_AT, only
    )


def _check_instant(ts: datetime) -> None:
    if ts.tzinfo is None:
        # A naive time would be read in the session's time zone and silently shift the instant.
        raise ValueError(f"as_of needs a timezone-aware instant, got {ts!r}")


def as_of(
    conn: psycopg.Connection[Any],
    object_name: str,
    ts: datetime,
    columns: Sequence[str] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield the records of an object as they were at `ts`, one dict per record, ordered by id.

    Rows are streamed from the server, so the whole object is never held in memory; the
    connection is busy until the iterator is exhausted or closed.
    """
    _check_instant(ts)
    wanted = list(columns) if columns is not None else history_columns(conn, object_name)
    with conn.cursor(row_factory=dict_row) as cursor:
        yield from cursor.stream(as_of_sql(object_name, wanted), {"as_of": ts}, size=1000)


def history_versions(conn: psycopg.Connection[Any], object_name: str, record_id: str) -> list[dict[str, Any]]:
    """Every version of one record, oldest first, with dbt's validity columns."""
    history_columns(conn, object_name)  # a clear error when there is no history table yet
    query = sql.SQL("SELECT * FROM {} AS h WHERE h.id = %(id)s ORDER BY h.dbt_valid_from").format(
        qualified(HISTORY_SCHEMA, table_name(object_name))
    )
    with conn.cursor(row_factory=dict_row) as cursor:
        return cursor.execute(query, {"id": record_id}).fetchall()
