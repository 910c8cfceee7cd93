"""Vanished records in the mirror: the `_sfp_` flag columns, and the closing version they make in history.

A record the org no longer has (deleted, merged away, purged from the recycle bin, hard-deleted, or gone for a
reason no API tells) must never stay a live row. Its mirror row keeps its last values and gets:

- `isdeleted = true` and `systemmodstamp` = the closing time (when it vanished, as narrowly as the evidence
  allows), so the dbt snapshot closes the previous version there and adds a closing version flagged deleted;
- `_sfp_vanished`: how the backup learnt it: `deleted`, `merged`, `purged`, `hard-deleted` or `unknown`;
- `_sfp_merged_into`: the master record of a merge; `_sfp_vanished_by`: who, where Salesforce tells;
- `_sfp_vanished_at`: the closing time; `_sfp_vanished_after`: the last time the record was known to exist
  (the closing time is only "found at" when nothing narrower is known);
- `_sfp_found_at`: when the backup found it; `_sfp_found_in_window`: the end of the window whose run found it,
  which makes the history step of that window snapshot the row even when its closing time lies earlier;
- `_sfp_gone`: the org holds the record in no form any more (not even the recycle bin).

Columns start with `_sfp_`: Salesforce field names start with a letter, so they never clash. No Dagster here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from sf_pipeline.warehouse.names import ident
from sf_pipeline.warehouse.schema import MirrorTable

VANISHED_COLUMNS: dict[str, str] = {
    "_sfp_vanished": "text",
    "_sfp_merged_into": "varchar(18)",
    "_sfp_vanished_by": "varchar(18)",
    "_sfp_vanished_at": "timestamptz",
    "_sfp_vanished_after": "timestamptz",
    "_sfp_found_at": "timestamptz",
    "_sfp_found_in_window": "timestamptz",
    "_sfp_gone": "boolean",
}
CAUSES = ("deleted", "merged", "purged", "hard-deleted", "unknown")
STATE_SCHEMA = "sf_pipeline"
_TICK = timedelta(milliseconds=1)


def is_bookkeeping_column(name: str) -> bool:
    """Columns the backup adds to a mirror table (not Salesforce fields)."""
    return name.startswith("_sfp_")


def ensure_vanished_columns(conn: psycopg.Connection[Any], table: MirrorTable) -> bool:
    """Add the `_sfp_` columns to a mirror table that lacks them (one ALTER, only the first time); whether it
    added any (then `table` no longer lists every column)."""
    have = set(table.column_types)
    missing = [(c, t) for c, t in VANISHED_COLUMNS.items() if c not in have]
    if not missing:
        return False
    with conn.transaction():
        conn.execute(
            sql.SQL("ALTER TABLE {} {}").format(
                table.identifier,
                sql.SQL(", ").join(
                    sql.SQL("ADD COLUMN IF NOT EXISTS {} {}").format(ident(c), sql.SQL(t)) for c, t in missing
                ),
            )
        )
        # The history step selects a window's rows OR those found in it: both sides indexed (a bitmap OR),
        # so a window's snapshot still reads only its own rows.
        conn.execute(
            sql.SQL(
                "CREATE INDEX IF NOT EXISTS {} ON {} (_sfp_found_in_window) WHERE _sfp_found_in_window IS NOT NULL"
            ).format(ident(f"{table.name[:40]}_sfp_found_idx"), table.identifier)
        )
    return True


def flag_window_deletions(
    conn: psycopg.Connection[Any], table: MirrorTable, start: datetime, end: datetime, found_at: datetime
) -> dict[str, int]:
    """Flag the rows queryAll returned deleted in [start, end) (`deleted`, or `merged` into MasterRecordId), and
    unflag rows an undelete brought back. Returns the counts per cause."""
    columns = set(table.column_types)
    if "isdeleted" not in columns:
        return {}
    master = sql.SQL("m.masterrecordid") if "masterrecordid" in columns else sql.SQL("NULL::varchar(18)")
    by = sql.SQL("m.lastmodifiedbyid") if "lastmodifiedbyid" in columns else sql.SQL("NULL::varchar(18)")
    with conn.transaction():
        rows = conn.execute(
            sql.SQL(
                "UPDATE {t} AS m SET _sfp_vanished = CASE WHEN {master} IS NOT NULL THEN 'merged' ELSE 'deleted' END, "
                "_sfp_merged_into = {master}, _sfp_vanished_by = {by}, _sfp_vanished_at = m.systemmodstamp, "
                "_sfp_found_at = %(found)s, _sfp_found_in_window = %(end)s, _sfp_gone = false "
                "WHERE m.isdeleted AND m._sfp_vanished IS NULL "
                "AND m.systemmodstamp >= %(start)s AND m.systemmodstamp < %(end)s RETURNING m._sfp_vanished"
            ).format(t=table.identifier, master=master, by=by),
            {"start": start, "end": end, "found": found_at},
        ).fetchall()
        conn.execute(
            sql.SQL(
                "UPDATE {t} AS m SET {cleared} WHERE m.isdeleted IS NOT TRUE AND m._sfp_vanished IS NOT NULL "
                "AND m.systemmodstamp >= %(start)s AND m.systemmodstamp < %(end)s"
            ).format(
                t=table.identifier,
                cleared=sql.SQL(", ").join(sql.SQL("{} = NULL").format(ident(c)) for c in VANISHED_COLUMNS),
            ),
            {"start": start, "end": end},
        )
    counts: dict[str, int] = {}
    for (cause,) in rows:
        counts[cause] = counts.get(cause, 0) + 1
    return counts


@dataclass(frozen=True)
class VanishedRecord:
    """One record found gone, with the evidence: cause, closing time (None: unknown, the time it was found),
    whether that time is exact or only the latest it can have happened, who, and the master of a merge."""

    record_id: str
    cause: str
    vanished_at: datetime | None = None
    by: str | None = None
    merged_into: str | None = None
    exact: bool = True

    def __post_init__(self) -> None:
        if self.cause not in CAUSES:
            raise ValueError(f"cause must be one of {', '.join(CAUSES)}, not {self.cause!r}")


def mark_vanished(
    conn: psycopg.Connection[Any],
    table: MirrorTable,
    records: Iterable[VanishedRecord],
    found_at: datetime,
    window_end: datetime,
) -> int:
    """Close the mirror rows of records the org no longer holds; returns the rows changed.

    A row still live in the mirror gets `isdeleted = true` and a new SystemModstamp at the closing time (the
    known time, else `found_at`), never earlier than its last version; a row already deleted (its closing
    version exists) keeps its time and only gains the cause. Every changed row is `_sfp_gone`.
    """
    items = list(records)
    if not items:
        return 0
    changed = 0
    with conn.transaction():
        conn.execute(
            "CREATE TEMPORARY TABLE IF NOT EXISTS sfp_vanished_input (id text, cause text, at timestamptz,"
            " by_user text, merged_into text, exact boolean) ON COMMIT DROP"
        )
        conn.execute("TRUNCATE sfp_vanished_input")
        with conn.cursor().copy("COPY sfp_vanished_input FROM STDIN") as copy:
            for r in items:
                copy.write_row(
                    (r.record_id, r.cause, r.vanished_at, r.by, r.merged_into, r.exact and r.vanished_at is not None)
                )
        isdeleted = "isdeleted" in table.column_types
        live = sql.SQL("m.isdeleted IS NOT TRUE") if isdeleted else sql.SQL("true")
        set_deleted = sql.SQL("isdeleted = true, ") if isdeleted else sql.SQL("")
        params = {"found": found_at, "end": window_end, "tick": _TICK}
        # Live rows: the closing version. Never before the last version (dbt would not see a change).
        changed += conn.execute(
            sql.SQL(
                "UPDATE {t} AS m SET {set_deleted}"
                "systemmodstamp = greatest(coalesce(i.at, %(found)s), m.systemmodstamp + %(tick)s), "
                "_sfp_vanished = i.cause, _sfp_merged_into = i.merged_into, _sfp_vanished_by = i.by_user, "
                "_sfp_vanished_at = greatest(coalesce(i.at, %(found)s), m.systemmodstamp + %(tick)s), "
                "_sfp_vanished_after = CASE WHEN i.exact THEN NULL ELSE m.systemmodstamp END, "
                "_sfp_found_at = %(found)s, _sfp_found_in_window = %(end)s, _sfp_gone = true "
                "FROM sfp_vanished_input AS i WHERE m.id = i.id AND {live} AND m._sfp_gone IS NOT TRUE"
            ).format(t=table.identifier, set_deleted=set_deleted, live=live),
            params,
        ).rowcount
        if isdeleted:
            # Already deleted (the recycle bin's version is in history): now gone for good.
            changed += conn.execute(
                sql.SQL(
                    "UPDATE {t} AS m SET _sfp_vanished = CASE WHEN m._sfp_vanished = 'merged' THEN 'merged' "
                    "ELSE i.cause END, _sfp_vanished_after = coalesce(m._sfp_vanished_at, m.systemmodstamp), "
                    "_sfp_found_at = %(found)s, _sfp_gone = true "
                    "FROM sfp_vanished_input AS i WHERE m.id = i.id AND m.isdeleted AND m._sfp_gone IS NOT TRUE"
                ).format(t=table.identifier),
                params,
            ).rowcount
    return changed


def reconcilable_ids(conn: psycopg.Connection[Any], table: MirrorTable, created_before: datetime | None) -> list[str]:
    """The ids the org should still hold in some form (live or in the recycle bin), in byte order (the order
    Salesforce compares ids in: base-62 digits 0-9A-Za-z)."""
    created = (
        sql.SQL(" AND m.createddate < {}").format(sql.Literal(created_before))
        if (created_before is not None and "createddate" in table.column_types)
        else sql.SQL("")
    )
    query = sql.SQL("COPY (SELECT m.id FROM {} AS m WHERE m._sfp_gone IS NOT TRUE{}) TO STDOUT").format(
        table.identifier, created
    )
    ids: list[str] = []
    with conn.cursor() as cursor:
        with cursor.copy(query) as copy:
            for (rid,) in copy.rows():
                ids.append(rid)
    ids.sort()
    return ids


def reconcilable_count(conn: psycopg.Connection[Any], table: MirrorTable, created_before: datetime | None) -> int:
    """How many ids `reconcilable_ids` would return, counted in PostgreSQL (nothing read into Python)."""
    created = (
        sql.SQL(" AND m.createddate < {}").format(sql.Literal(created_before))
        if (created_before is not None and "createddate" in table.column_types)
        else sql.SQL("")
    )
    return conn.execute(
        sql.SQL("SELECT count(*) FROM {} AS m WHERE m._sfp_gone IS NOT TRUE{}").format(table.identifier, created)
    ).fetchone()[0]


def mirror_rows(conn: psycopg.Connection[Any], table: MirrorTable, record_ids: Iterable[str]) -> dict[str, dict]:
    """id -> {isdeleted, systemmodstamp} of mirror rows, for classifying what was found."""
    wanted = list(record_ids)
    if not wanted:
        return {}
    deleted = sql.SQL("m.isdeleted") if "isdeleted" in table.column_types else sql.SQL("false")
    rows = conn.execute(
        sql.SQL("SELECT m.id, {}, m.systemmodstamp, m._sfp_vanished FROM {} AS m WHERE m.id = ANY(%s)").format(
            deleted, table.identifier
        ),
        (wanted,),
    ).fetchall()
    return {r[0]: {"isdeleted": bool(r[1]), "systemmodstamp": r[2], "vanished": r[3]} for r in rows}


# ----------------------------------------------------------------- reconciliation state
def _ensure_state(conn: psycopg.Connection[Any]) -> None:
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident(STATE_SCHEMA)))
    conn.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.reconciliations (object text NOT NULL, finished_at timestamptz NOT NULL, "
            "window_end timestamptz, reason text, mirror_ids bigint, org_ids bigint, vanished bigint, "
            "missing_from_backup bigint, api_calls int, seconds double precision)"
        ).format(ident(STATE_SCHEMA))
    )


# The table is created by the first reconciliation of a database (under a lock: CREATE ... IF NOT EXISTS is not
# safe against a concurrent twin); afterwards each window's read or record is one statement, not the lock and
# the DDL again (BENCHMARKS.md, launch-window).
_STATE_LOCK_KEY = 0x5F_5346_5052_4543
_NO_STATE = (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName)


def last_reconciliation(conn: psycopg.Connection[Any], object_name: str) -> datetime | None:
    try:
        with conn.transaction():  # a savepoint inside the caller's transaction: a missing table undoes only it
            row = conn.execute(
                sql.SQL("SELECT max(finished_at) FROM {}.reconciliations WHERE object = %s").format(
                    ident(STATE_SCHEMA)
                ),
                (object_name,),
            ).fetchone()
    except _NO_STATE:
        return None  # no reconciliation was ever recorded in this database
    return row[0] if row else None


def record_reconciliation(conn: psycopg.Connection[Any], object_name: str, summary: Mapping[str, Any]) -> None:
    insert = sql.SQL(
        "INSERT INTO {}.reconciliations (object, finished_at, window_end, reason, mirror_ids, org_ids, vanished,"
        " missing_from_backup, api_calls, seconds) VALUES (%(object)s, %(finished_at)s, %(window_end)s, "
        "%(reason)s, %(mirror_ids)s, %(org_ids)s, %(vanished)s, %(missing_from_backup)s, %(api_calls)s, "
        "%(seconds)s)"
    ).format(ident(STATE_SCHEMA))
    params = {"object": object_name, **summary}
    try:
        with conn.transaction():
            conn.execute(insert, params)
        return
    except _NO_STATE:
        pass  # the first reconciliation recorded in this database: make the table, then record it
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_STATE_LOCK_KEY,))
        _ensure_state(conn)
        conn.execute(insert, params)
