"""All SQL of the restore job: its own tables in schema `sf_pipeline`, and its reads of the backup history.

Tables (created by `ensure_restore_tables`, idempotent):
- `restore_plans`: one row per run (config, counts, status planned/applied/failed/verified/...);
- `restore_items`: one row per (record, field) of a plan, with current/desired/damaged values (JSON, in
  the API's form), classification, reason, and after apply the outcome; record-level rows have no field;
- `restore_audit`: every value a restore wrote (before, after, when, as which Salesforce user), written
  ahead of the call that writes it (`state` pending, with the call's id and later its Bulk job id) and
  completed after it (done, failed, not_applied, unchecked: journal.py);
- `id_map` (sf_pipeline.warehouse.id_map): ids of re-created records, shared with seeding.

An apply copies the items of the dry run it applies under its own run id (`copy_plan`), so outcomes and
audit belong to the run that wrote, and holds a PostgreSQL advisory lock on (target org, object) while it
writes (`apply_lock`). A plan is stored, and read back, CHUNK_RECORDS records at a time (`copy_items`,
`item_chunks`): no restore holds a whole incident's items.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from sf_pipeline.restore.errors import RestoreBusyError
from sf_pipeline.warehouse.ddl import commit, ensure_ddl
from sf_pipeline.warehouse.id_map import ID_MAP_DDL
from sf_pipeline.warehouse.names import HISTORY_SCHEMA, column_name, ident, qualified, table_name

SCHEMA = "sf_pipeline"
_DDL_LOCK_KEY = 0x5F_5245_5354_4F52  # "sf restor": serializes concurrent ensure_restore_tables
_APPLY_LOCK_CLASS = 0x5F52_4150  # first key of the (class, hashtext(org/object)) advisory lock of an apply
# Records a restore plans, applies or verifies at once: what it holds in memory (a few KB a record: evidence, the
# org's values, items, payloads) is this many records' worth, whatever the incident's size. Above the Bulk
# threshold each chunk is one Bulk API 2.0 job, so a larger chunk spends fewer API calls and more memory.
CHUNK_RECORDS = 10_000

_DDL = [
    "CREATE SCHEMA IF NOT EXISTS sf_pipeline",
    """CREATE TABLE IF NOT EXISTS sf_pipeline.restore_plans (
        run_id text PRIMARY KEY,
        object text NOT NULL,
        target_org text NOT NULL,
        source_org text NOT NULL,
        config jsonb NOT NULL,
        status text NOT NULL,
        counts jsonb NOT NULL,
        details jsonb,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now())""",
    """CREATE TABLE IF NOT EXISTS sf_pipeline.restore_items (
        run_id text NOT NULL,
        object text NOT NULL,
        record_id varchar(18) NOT NULL,
        field text,
        action text NOT NULL,
        current_value jsonb,
        desired_value jsonb,
        damaged_value jsonb,
        classification text NOT NULL,
        reason text,
        outcome text,
        error text)""",
    "CREATE INDEX IF NOT EXISTS restore_items_run ON sf_pipeline.restore_items (run_id, record_id)",
    # a tree plan is applied an object and action at a time, in keyset pages (tree_tables.item_pages)
    "CREATE INDEX IF NOT EXISTS restore_items_run_object ON sf_pipeline.restore_items (run_id, object, action, "
    "record_id)",
    """CREATE TABLE IF NOT EXISTS sf_pipeline.restore_audit (
        id bigserial PRIMARY KEY,
        run_id text NOT NULL,
        org_alias text NOT NULL,
        object text NOT NULL,
        record_id varchar(18) NOT NULL,
        field text NOT NULL,
        before jsonb,
        after jsonb,
        operation text NOT NULL DEFAULT 'update',
        written_at timestamptz NOT NULL DEFAULT now(),
        written_by text)""",
    # a run's rows, and a chunk of its records (verify reads what it wrote by record id): with (run_id) alone,
    # PostgreSQL ANDed every row of the run into each chunk's read, 9 s a chunk at 3.7 million rows
    "CREATE INDEX IF NOT EXISTS restore_audit_run_record ON sf_pipeline.restore_audit (run_id, record_id)",
    "DROP INDEX IF EXISTS sf_pipeline.restore_audit_run",
    # the write-ahead journal (journal.py); rows of older versions were written after the call: done
    "ALTER TABLE sf_pipeline.restore_audit ADD COLUMN IF NOT EXISTS state text NOT NULL DEFAULT 'done'",
    "ALTER TABLE sf_pipeline.restore_audit ADD COLUMN IF NOT EXISTS call_id text",
    "ALTER TABLE sf_pipeline.restore_audit ADD COLUMN IF NOT EXISTS job_id text",
    "ALTER TABLE sf_pipeline.restore_audit ADD COLUMN IF NOT EXISTS completed_at timestamptz",
    "ALTER TABLE sf_pipeline.restore_audit ADD COLUMN IF NOT EXISTS detail text",
    "CREATE INDEX IF NOT EXISTS restore_audit_pending ON sf_pipeline.restore_audit (org_alias, lower(object)) "
    "WHERE state = 'pending'",
    # a call's rows, completed by record id (journal_finish, journal_job): without it PostgreSQL ANDed
    # restore_audit_pending (every pending row) into each record's lookup, and completing a 10,000-record call
    # of a 6,000-Account tree restore took minutes, growing with the square of the pending rows
    "CREATE INDEX IF NOT EXISTS restore_audit_call_pending ON sf_pipeline.restore_audit (call_id, record_id) "
    "WHERE state = 'pending'",
    # an erasure request (privacy/forget.py) finds a record's plan items, audit rows and id map entries by id
    "CREATE INDEX IF NOT EXISTS restore_items_record ON sf_pipeline.restore_items (record_id)",
    "CREATE INDEX IF NOT EXISTS restore_audit_record ON sf_pipeline.restore_audit (record_id)",
    # the Bulk API 2.0 job of a pending call, kept once per call (journal_job) and copied onto the call's rows
    # when they complete (journal_finish): writing it onto each of a 10,000-record call's ~100,000 pending rows
    # took 1.7-2.4 s a call
    """CREATE TABLE IF NOT EXISTS sf_pipeline.restore_call_jobs (
        call_id text PRIMARY KEY,
        job_id text NOT NULL,
        submitted_at timestamptz NOT NULL DEFAULT now())""",
    *ID_MAP_DDL,
]


def ensure_restore_tables(conn: psycopg.Connection[Any]) -> None:
    """Create the restore tables if they do not exist (safe to call before every run)."""
    ensure_ddl(conn, _DDL_LOCK_KEY, _DDL)


# Plans, outcomes and audit rows must survive a failure later in the run: commit them as written.
_commit = commit


def _json(value: Any) -> Jsonb | None:
    """A value as jsonb; a null value is SQL NULL (so `desired_value IS NULL` finds it)."""
    return None if value is None else Jsonb(value, dumps=_dumps)


def _dumps(value: Any) -> str:
    # OPT_NON_STR_KEYS: a count keyed by a decisions.py StrEnum member is stored under the member's value
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


# ===================================================================== plans and items
def save_plan(
    conn: psycopg.Connection[Any],
    *,
    run_id: str,
    object_name: str,
    target_org: str,
    source_org: str,
    config: Mapping[str, Any],
    counts: Mapping[str, Any],
    details: Mapping[str, Any],
    items: Iterable[tuple],
) -> None:
    """Store a plan (replacing an earlier plan of the same run id); `items` are restore_items rows
    (record_id, field, action, current, desired, damaged, classification, reason)."""
    with conn.transaction():
        clear_plan(conn, run_id)
        insert_plan(
            conn,
            run_id=run_id,
            object_name=object_name,
            target_org=target_org,
            source_org=source_org,
            config=config,
            counts=counts,
            details=details,
        )
        copy_items(conn, run_id, object_name, items)
    _commit(conn)


def clear_plan(conn: psycopg.Connection[Any], run_id: str) -> None:
    """Delete the plan and items of `run_id` (a plan stored again replaces them); commits nothing."""
    conn.execute("DELETE FROM sf_pipeline.restore_items WHERE run_id = %s", (run_id,))
    conn.execute("DELETE FROM sf_pipeline.restore_plans WHERE run_id = %s", (run_id,))


def insert_plan(
    conn: psycopg.Connection[Any],
    *,
    run_id: str,
    object_name: str,
    target_org: str,
    source_org: str,
    config: Mapping[str, Any],
    counts: Mapping[str, Any],
    details: Mapping[str, Any],
) -> None:
    """The plan's own row (status planned); commits nothing."""
    conn.execute(
        "INSERT INTO sf_pipeline.restore_plans (run_id, object, target_org, source_org, config, status, counts, "
        "details) VALUES (%s, %s, %s, %s, %s, 'planned', %s, %s)",
        (run_id, object_name, target_org, source_org, _json(config), _json(counts), _json(details)),
    )


def copy_items(conn: psycopg.Connection[Any], run_id: str, object_name: str, items: Iterable[tuple]) -> None:
    """Append restore_items rows (record_id, field, action, current, desired, damaged, classification, reason)
    to the plan of `run_id` by COPY; commits nothing (a plan is stored chunk by chunk in one transaction)."""
    with conn.cursor().copy(
        "COPY sf_pipeline.restore_items (run_id, object, record_id, field, action, current_value, desired_value, "
        "damaged_value, classification, reason) FROM STDIN"
    ) as copy:
        # COPY text lines built here: a million items in a fraction of write_row's time.
        head = f"{_copy_text(run_id)}\t{_copy_text(object_name)}\t"
        lines: list[str] = []
        for record_id, field, action, current, desired, damaged, status, reason in items:
            lines.append(
                f"{head}{record_id}\t{_copy_text(field)}\t{action}\t{_copy_json(current)}\t"
                f"{_copy_json(desired)}\t{_copy_json(damaged)}\t{status}\t{_copy_text(reason)}\n"
            )
            if len(lines) >= 10_000:
                copy.write("".join(lines))
                lines.clear()
        if lines:
            copy.write("".join(lines))


_NEEDS_ESCAPE = re.compile(r"[\\\t\n\r]")
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: str | None) -> str:
    """A value in COPY's text format: `\\N` for null, backslash and control characters escaped."""
    if value is None:
        return "\\N"
    return value.translate(_COPY_ESCAPES) if _NEEDS_ESCAPE.search(value) else value


def _copy_json(value: Any) -> str:
    if value is None:
        return "\\N"
    text = _dumps(value)  # JSON has no raw control characters, only backslash escapes
    return text.replace("\\", "\\\\") if "\\" in text else text


def set_plan_status(
    conn: psycopg.Connection[Any], run_id: str, status: str, details: Mapping[str, Any] | None = None
) -> None:
    with conn.transaction():
        conn.execute(
            "UPDATE sf_pipeline.restore_plans SET status = %s, updated_at = now(), "
            "details = COALESCE(details, '{}'::jsonb) || %s WHERE run_id = %s",
            (status, _json(dict(details or {})), run_id),
        )
    _commit(conn)


def set_outcomes(
    conn: psycopg.Connection[Any], run_id: str, outcomes: Iterable[tuple], *, per_field: bool = False
) -> None:
    """Record what apply did: per record, (record_id, outcome, error) for every item of the record; with
    `per_field` (a whole-hierarchy restore), per item, (record_id, field or None, outcome, error)."""
    rows = outcomes if per_field else ((rid, None, outcome, error) for rid, outcome, error in outcomes)
    same_item = " AND i.field IS NOT DISTINCT FROM o.field" if per_field else ""
    with conn.transaction():
        conn.execute(
            "CREATE TEMPORARY TABLE IF NOT EXISTS restore_outcomes "
            "(record_id text, field text, outcome text, error text) ON COMMIT DROP"
        )
        with conn.cursor().copy("COPY restore_outcomes (record_id, field, outcome, error) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.execute(
            "UPDATE sf_pipeline.restore_items i SET outcome = o.outcome, error = o.error FROM restore_outcomes o "
            f"WHERE i.run_id = %s AND i.record_id = o.record_id{same_item}",
            (run_id,),
        )
    _commit(conn)


def record_pages(
    conn: psycopg.Connection[Any],
    *,
    columns: str,
    scope: sql.Composable,
    params: Mapping[str, Any],
    order: str,
    key_at: int,
    chunk: int | None = None,
    bound_scope: sql.Composable | None = None,
    also: sql.Composable | None = None,
) -> Iterator[list[tuple]]:
    """The rows `SELECT {columns} {scope}` (`scope`: "FROM <table> [alias] WHERE ...", its parameters in `params`)
    `chunk` records (default CHUNK_RECORDS) at a time in `record_id` order, every row of a record in the same page;
    `key_at` is record_id's position in `columns`. The keyset paging of every stored plan and journal read.

    A page is a range of record ids, (the last id read, the chunk-th record id after it], its upper bound found
    once per page (an InitPlan over `bound_scope`, by default `scope`): never `record_id IN (subquery)`, which
    PostgreSQL may run once per row on a table just written (no statistics yet: minutes for 60,000 records).
    `also` (SQL starting with AND) filters the page's rows after the range. Each page is its own query, the
    transaction committed after it: apply commits its journal between pages, which would close a cursor held in
    a transaction, and only one page of rows is ever in this process.
    """
    query = sql.SQL(
        "SELECT {columns} {scope} AND record_id > %(after)s AND record_id <= (SELECT max(p.record_id) FROM "
        "(SELECT DISTINCT record_id {bound} AND record_id > %(after)s ORDER BY record_id LIMIT %(chunk)s) p)"
        "{also} ORDER BY {order}"
    ).format(
        columns=sql.SQL(columns),
        scope=scope,
        bound=bound_scope if bound_scope is not None else scope,
        also=also if also is not None else sql.SQL(""),
        order=sql.SQL(order),
    )
    after = ""
    while True:
        rows = conn.execute(query, {**params, "after": after, "chunk": chunk or CHUNK_RECORDS}).fetchall()
        _commit(conn)
        if not rows:
            return
        after = rows[-1][key_at]
        yield rows
        del rows


def item_chunks(
    conn: psycopg.Connection[Any],
    run_id: str,
    *,
    where: sql.Composable | None = None,
    params: Mapping[str, Any] | None = None,
    chunk: int | None = None,
) -> Iterator[list[tuple]]:
    """A stored plan's items, `chunk` records at a time in record order, each record whole: (record_id, field,
    action, current, desired, damaged, classification, reason, outcome, error). `where` (parameters in `params`)
    picks the records: those with at least one item matching it. `chunk` defaults to CHUNK_RECORDS. Keyset pages
    over the (run_id, record_id) index (`record_pages`)."""
    picked = sql.SQL(" AND ({})").format(where) if where is not None else sql.SQL("")
    # Of the records in a page's range, those with an item matching `where` (an index lookup per row).
    matching = (
        sql.SQL(
            " AND EXISTS (SELECT 1 FROM sf_pipeline.restore_items m WHERE m.run_id = i.run_id "
            "AND m.record_id = i.record_id AND ({}))"
        ).format(where)
        if where is not None
        else None
    )
    yield from record_pages(
        conn,
        columns="record_id, field, action, current_value, desired_value, damaged_value, classification, reason, "
        "outcome, error",
        scope=sql.SQL("FROM sf_pipeline.restore_items i WHERE run_id = %(run)s"),
        bound_scope=sql.SQL("FROM sf_pipeline.restore_items WHERE run_id = %(run)s{}").format(picked),
        also=matching,
        params={**(params or {}), "run": run_id},
        order="record_id",
        key_at=0,
        chunk=chunk,
    )


def count_plan_records(
    conn: psycopg.Connection[Any],
    run_id: str,
    *,
    where: sql.Composable | None = None,
    params: Mapping[str, Any] | None = None,
) -> int:
    """Records of a stored plan with at least one item matching `where` (every record without it)."""
    picked = sql.SQL(" AND ({})").format(where) if where is not None else sql.SQL("")
    row = conn.execute(
        sql.SQL("SELECT count(DISTINCT record_id) FROM sf_pipeline.restore_items WHERE run_id = %(run)s{}").format(
            picked
        ),
        {**(params or {}), "run": run_id},
    ).fetchone()
    _commit(conn)
    return int(row[0]) if row else 0


def plan_record_ids(
    conn: psycopg.Connection[Any], run_id: str, *, action: str | None = None, among: Sequence[str] | None = None
) -> set[str]:
    """Ids of a stored plan's records: those of one `action`, or those among `among`."""
    query = "SELECT DISTINCT record_id FROM sf_pipeline.restore_items WHERE run_id = %s"
    params: list[Any] = [run_id]
    if action is not None:
        query += " AND action = %s"
        params.append(action)
    if among is not None:
        query += " AND record_id = ANY(%s)"
        params.append(list(among))
    ids = {r[0] for r in conn.execute(query, params)}
    _commit(conn)
    return ids


def reset_outcomes(conn: psycopg.Connection[Any], run_id: str) -> None:
    """Forget what an earlier apply of this run did to its items (an apply records every outcome afresh)."""
    with conn.transaction():
        conn.execute(
            "UPDATE sf_pipeline.restore_items SET outcome = NULL, error = NULL WHERE run_id = %s "
            "AND (outcome IS NOT NULL OR error IS NOT NULL)",
            (run_id,),
        )
    _commit(conn)


def outcome_counts(conn: psycopg.Connection[Any], run_id: str) -> dict[str, int]:
    """Records per outcome of a run (every item of a record carries its record's outcome)."""
    rows = conn.execute(
        "SELECT outcome, count(DISTINCT record_id) FROM sf_pipeline.restore_items WHERE run_id = %s "
        "AND outcome IS NOT NULL GROUP BY outcome ORDER BY min(record_id)",
        (run_id,),
    ).fetchall()
    _commit(conn)
    return {outcome: n for outcome, n in rows}


def copy_plan(
    conn: psycopg.Connection[Any], *, plan_of: str, run_id: str, config: Mapping[str, Any], details: Mapping[str, Any]
) -> None:
    """Store dry run `plan_of`'s plan again as run `run_id`'s (the apply), replacing an earlier copy."""
    with conn.transaction():
        conn.execute("DELETE FROM sf_pipeline.restore_items WHERE run_id = %s", (run_id,))
        conn.execute("DELETE FROM sf_pipeline.restore_plans WHERE run_id = %s", (run_id,))
        conn.execute(
            "INSERT INTO sf_pipeline.restore_plans (run_id, object, target_org, source_org, config, status, counts, "
            "details) SELECT %s, object, target_org, source_org, %s, 'planned', counts, %s "
            "FROM sf_pipeline.restore_plans WHERE run_id = %s",
            (run_id, _json(config), _json(details), plan_of),
        )
        conn.execute(
            "INSERT INTO sf_pipeline.restore_items (run_id, object, record_id, field, action, current_value, "
            "desired_value, damaged_value, classification, reason) SELECT %s, object, record_id, field, action, "
            "current_value, desired_value, damaged_value, classification, reason FROM sf_pipeline.restore_items "
            "WHERE run_id = %s",
            (run_id, plan_of),
        )
    _commit(conn)


@contextmanager
def apply_lock(conn: psycopg.Connection[Any], target_org: str, object_name: str, run_id: str) -> Iterator[None]:
    """Hold the lock of (target org, object) while a restore writes; another holder fails fast, named.

    A session-level advisory lock: commits along the way keep it, and a run that dies releases it with its
    connection, so a crashed restore never blocks the next one.
    """
    key = f"{target_org}/{object_name.lower()}"
    got = conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))", (_APPLY_LOCK_CLASS, key)).fetchone()[0]
    _commit(conn)
    if not got:
        holders = [
            r[0]
            for r in conn.execute(
                "SELECT run_id FROM sf_pipeline.restore_plans WHERE status = 'applying' AND target_org = %s AND "
                "lower(object) = lower(%s) AND run_id <> %s ORDER BY updated_at DESC",
                (target_org, object_name, run_id),
            )
        ]
        _commit(conn)
        who = f"run {', '.join(holders)}" if holders else "another run"
        raise RestoreBusyError(
            f"another restore of {object_name} into org {target_org!r} is being applied ({who}); two restores of one "
            "object and org never write at once. Nothing was written: wait until it finishes, then make a new dry "
            "run (the records it writes change what this plan saw) and apply that"
        )
    try:
        yield
    finally:
        try:
            if conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
                conn.rollback()
            conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (_APPLY_LOCK_CLASS, key))
            _commit(conn)
        except psycopg.Error:
            pass  # the connection is gone: so is the lock


def plan_row(conn: psycopg.Connection[Any], run_id: str) -> dict[str, Any] | None:
    cur = conn.execute(
        "SELECT run_id, object, target_org, source_org, config, status, counts, details, created_at "
        "FROM sf_pipeline.restore_plans WHERE run_id = %s",
        (run_id,),
    )
    row = cur.fetchone()
    return None if row is None else dict(zip([d.name for d in cur.description], row, strict=True))


# ===================================================================== audit and id map
def write_audit(conn: psycopg.Connection[Any], rows: Sequence[tuple]) -> None:
    """Audit rows (run_id, org_alias, object, record_id, field, before, after, operation, written_by) of writes
    already made (state done)."""
    _copy_audit(conn, rows, "done", None, None)


def _copy_audit(
    conn: psycopg.Connection[Any], rows: Iterable[tuple], state: str, call_id: str | None, detail: str | None
) -> None:
    if isinstance(rows, Sequence) and not rows:
        return
    with conn.transaction():
        with conn.cursor().copy(
            "COPY sf_pipeline.restore_audit (run_id, org_alias, object, record_id, field, before, after, operation, "
            "written_by, state, call_id, detail) FROM STDIN"
        ) as copy:
            for run_id, alias, obj, rid, field, before, after, operation, user in rows:
                copy.write_row(
                    (
                        run_id,
                        alias,
                        obj,
                        rid,
                        field,
                        _json(before),
                        _json(after),
                        operation,
                        user,
                        state,
                        call_id,
                        detail,
                    )
                )
    _commit(conn)


@dataclass(frozen=True)
class AuditEntry:
    record_id: str
    field: str
    before: Any
    after: Any
    operation: str


_AUDIT_OF = (
    "FROM sf_pipeline.restore_audit WHERE run_id = %(run)s AND lower(object) = lower(%(obj)s) AND state = 'done'"
)


def audit_exists(conn: psycopg.Connection[Any], run_id: str, object_name: str) -> bool:
    """Whether a run logged a write (done) to an object."""
    row = conn.execute(f"SELECT EXISTS (SELECT 1 {_AUDIT_OF})", {"run": run_id, "obj": object_name}).fetchone()
    _commit(conn)
    return bool(row and row[0])


def audit_updated_fields(conn: psycopg.Connection[Any], run_id: str, object_name: str) -> list[str]:
    """The fields a run updated on an object, in the order it first logged them: those whose first logged write to
    a record (as `audit_chunks` merges them) is an update."""
    rows = conn.execute(
        f"SELECT field FROM (SELECT DISTINCT ON (record_id, field) field, operation, id {_AUDIT_OF} "
        "ORDER BY record_id, field, id) f WHERE operation = 'update' GROUP BY field ORDER BY min(id)",
        {"run": run_id, "obj": object_name},
    ).fetchall()
    _commit(conn)
    return [r[0] for r in rows]


def audit_chunks(
    conn: psycopg.Connection[Any], run_id: str, object_name: str, *, chunk: int | None = None
) -> Iterator[list[AuditEntry]]:
    """What a run logged for an object (journal rows done), `chunk` records (default CHUNK_RECORDS) at a time in
    record id order: per (record, field) the first before, the last after and the first operation. Keyset pages
    over the record ids (`record_pages`): an undo of 100,000 records holds one chunk of them."""
    for rows in record_pages(
        conn,
        columns="record_id, field, before, after, operation",
        scope=sql.SQL(_AUDIT_OF),
        params={"run": run_id, "obj": object_name},
        order="record_id, id",
        key_at=0,
        chunk=chunk,
    ):
        merged: dict[tuple[str, str], AuditEntry] = {}
        for rid, field, before, after_value, operation in rows:
            earlier = merged.get((rid, field))
            merged[(rid, field)] = AuditEntry(
                rid,
                field,
                earlier.before if earlier else before,
                after_value,
                earlier.operation if earlier else operation,
            )
        del rows
        yield list(merged.values())


# ===================================================================== re-created records of a plan
class PlanIdMap(Mapping[str, str]):
    """Old id -> new id of the records a stored plan re-creates (action `create`) that the org has
    (`sf_pipeline.id_map`, written by the journal as each create is confirmed, by this run or an earlier run of the
    plan), read from PostgreSQL when looked at, never held whole: what `RestorePlan.id_map` and `ApplyResult.id_map`
    of an applied plan are, and what apply and verify read a chunk's pairs from (`among`). Look at it while its
    connection is open."""

    _JOIN = (
        "FROM sf_pipeline.restore_items i JOIN sf_pipeline.id_map m ON m.source_alias = %(alias)s "
        "AND m.target_alias = %(alias)s AND m.source_id = i.record_id "
        "WHERE i.run_id = %(run)s AND i.action = 'create'"  # a record's item of each field (one-object plans)
    )

    def __init__(self, conn: psycopg.Connection[Any], run_id: str, org_alias: str):
        self.conn, self.run_id, self.alias = conn, run_id, org_alias
        self._creates: bool | None = None  # whether the plan re-creates anything (asked once)

    def _recreates(self) -> bool:
        if self._creates is None:
            row = self.conn.execute(
                "SELECT EXISTS (SELECT 1 FROM sf_pipeline.restore_items WHERE run_id = %s AND action = 'create')",
                (self.run_id,),
            ).fetchone()
            _commit(self.conn)
            self._creates = bool(row and row[0])
        return self._creates

    def _params(self, **more: Any) -> dict[str, Any]:
        return {"run": self.run_id, "alias": self.alias, **more}

    def among(self, ids: Iterable[str]) -> dict[str, str]:
        """The pairs of those of `ids` that are records the plan re-created (what one chunk needs)."""
        wanted = list(dict.fromkeys(ids))
        if not wanted or not self._recreates():
            return {}
        rows = self.conn.execute(
            f"SELECT DISTINCT i.record_id, m.target_id {self._JOIN} AND i.record_id = ANY(%(ids)s)",
            self._params(ids=wanted),
        ).fetchall()
        _commit(self.conn)
        return dict(rows)

    def __getitem__(self, old_id: str) -> str:
        row = self.conn.execute(
            f"SELECT m.target_id {self._JOIN} AND i.record_id = %(old)s LIMIT 1", self._params(old=old_id)
        ).fetchone()
        _commit(self.conn)
        if row is None:
            raise KeyError(old_id)
        return row[0]

    def __iter__(self) -> Iterator[str]:
        after = ""
        while True:
            rows = self.conn.execute(
                f"SELECT DISTINCT i.record_id {self._JOIN} AND i.record_id > %(after)s ORDER BY i.record_id "
                "LIMIT %(n)s",
                self._params(after=after, n=CHUNK_RECORDS),
            ).fetchall()
            _commit(self.conn)
            if not rows:
                return
            after = rows[-1][0]
            yield from (r[0] for r in rows)

    def __len__(self) -> int:
        row = self.conn.execute(f"SELECT count(DISTINCT i.record_id) {self._JOIN}", self._params()).fetchone()
        _commit(self.conn)
        return int(row[0])

    def __repr__(self) -> str:
        return f"PlanIdMap(run_id={self.run_id!r})"


# ===================================================================== the write-ahead journal
def journal_begin(
    conn: psycopg.Connection[Any], call_id: str, rows: Iterable[tuple], detail: str | None = None
) -> None:
    """Pending audit rows (run_id, org_alias, object, record_id, field, before, after, operation, written_by)
    of one call, committed before the call is made; `detail` says how to find what it created (journal.py)."""
    _copy_audit(conn, rows, "pending", call_id, detail)


def journal_job(conn: psycopg.Connection[Any], call_id: str, job_id: str) -> None:
    with conn.transaction():
        conn.execute(
            "INSERT INTO sf_pipeline.restore_call_jobs (call_id, job_id) VALUES (%s, %s) "
            "ON CONFLICT (call_id) DO UPDATE SET job_id = excluded.job_id",
            (call_id, job_id),
        )
    _commit(conn)


# a completed row's job: the one its call recorded (rows journaled by older versions carry their own)
_CALL_JOB = "COALESCE(a.job_id, (SELECT j.job_id FROM sf_pipeline.restore_call_jobs j WHERE j.call_id = %s))"


def journal_finish(
    conn: psycopg.Connection[Any],
    call_id: str,
    *,
    done: Mapping[str, str] = {},  # noqa: B006
    other: Iterable[tuple[str, str, str | None]] = (),
) -> None:
    """Complete the pending rows of call `call_id`: `done` maps each written record (its id in the journal)
    to its id in the org (a re-created record's new id); `other` holds (record id, state, detail) of the
    records not written (failed, not_applied, unchecked)."""
    with conn.transaction():
        if done:
            old, new = list(done), [done[k] for k in done]
            conn.execute(
                "UPDATE sf_pipeline.restore_audit a SET state = 'done', completed_at = now(), record_id = d.new, "
                "after = CASE WHEN a.operation = 'create' AND a.field = 'Id' THEN to_jsonb(d.new) ELSE a.after END, "
                f"job_id = {_CALL_JOB} "
                "FROM unnest(%s::text[], %s::text[]) AS d(old, new) "
                "WHERE a.call_id = %s AND a.record_id = d.old AND a.state = 'pending'",
                (call_id, old, new, call_id),
            )
        rest = list(other)
        if rest:
            conn.execute(
                "UPDATE sf_pipeline.restore_audit a SET state = d.state, completed_at = now(), detail = d.detail, "
                f"job_id = {_CALL_JOB} "
                "FROM unnest(%s::text[], %s::text[], %s::text[]) AS d(rid, state, detail) "
                "WHERE a.call_id = %s AND a.record_id = d.rid AND a.state = 'pending'",
                (call_id, [r[0] for r in rest], [r[1] for r in rest], [r[2] for r in rest], call_id),
            )
    _commit(conn)


@dataclass(frozen=True)
class PendingCall:
    """A call a run logged but never completed: what it was sending, to whom, as whom."""

    call_id: str
    run_id: str
    object: str
    operation: str
    job_id: str | None
    written_by: str | None
    values: dict[str, dict[str, tuple[Any, Any]]]  # record id -> field -> (before, after)
    logged_at: datetime
    created_after: str | None = None  # creates: the earliest CreatedDate the records can have (org clock)


def journal_pending(conn: psycopg.Connection[Any], org_alias: str, object_name: str) -> list[PendingCall]:
    """The calls to `object_name` in org `org_alias` left pending by any run, oldest first."""
    rows = conn.execute(
        "SELECT a.call_id, run_id, object, operation, COALESCE(a.job_id, j.job_id), written_by, record_id, field, "
        "before, after, written_at, detail "
        "FROM sf_pipeline.restore_audit a LEFT JOIN sf_pipeline.restore_call_jobs j ON j.call_id = a.call_id "
        "WHERE a.state = 'pending' AND org_alias = %s AND lower(object) = lower(%s) "
        "ORDER BY a.id",
        (org_alias, object_name),
    ).fetchall()
    _commit(conn)
    calls: dict[str, PendingCall] = {}
    for call_id, run_id, obj, op, job_id, user, rid, field, before, after, at, detail in rows:
        call = calls.get(call_id)
        if call is None:
            call = calls[call_id] = PendingCall(call_id, run_id, obj, op, job_id, user, {}, at, detail)
        call.values.setdefault(rid, {})[field] = (before, after)
    return list(calls.values())


def journal_unchecked_creates(
    conn: psycopg.Connection[Any], org_alias: str, object_name: str, record_ids: Sequence[str]
) -> dict[str, str]:
    """Record id -> why, for the records among `record_ids` whose re-creation an earlier run could not settle."""
    if not record_ids:
        return {}
    rows = conn.execute(
        "SELECT DISTINCT ON (record_id) record_id, run_id, detail FROM sf_pipeline.restore_audit "
        "WHERE state = 'unchecked' AND operation = 'create' AND field = 'Id' AND org_alias = %s "
        "AND lower(object) = lower(%s) AND record_id = ANY(%s) ORDER BY record_id, id DESC",
        (org_alias, object_name, list(record_ids)),
    ).fetchall()
    _commit(conn)
    return {
        rid: f"run {run} may have re-created it and the org could not tell ({detail}); once checked by hand, "
        f"set its rows of sf_pipeline.restore_audit (run_id {run!r}, record_id {rid!r}) to state "
        "'not_applied' to let a restore create it"
        for rid, run, detail in rows
    }


def journal_counts(conn: psycopg.Connection[Any], run_id: str) -> dict[str, int]:
    """Audit rows of a run per state (pending, done, failed, not_applied, unchecked)."""
    rows = conn.execute(
        "SELECT state, count(*) FROM sf_pipeline.restore_audit WHERE run_id = %s GROUP BY 1", (run_id,)
    ).fetchall()
    _commit(conn)
    return dict(rows)


# ===================================================================== history reads
def history_table(object_name: str) -> sql.Identifier:
    return qualified(HISTORY_SCHEMA, table_name(object_name))


def history_bounds(conn: psycopg.Connection[Any], object_name: str) -> tuple[datetime | None, datetime | None]:
    """The first and last instant the backup history of an object knows (min/max dbt_valid_from)."""
    row = conn.execute(
        sql.SQL("SELECT min(dbt_valid_from), max(dbt_valid_from) FROM {}").format(history_table(object_name))
    ).fetchone()
    return (row[0], row[1]) if row else (None, None)


@dataclass(frozen=True)
class Selection:
    """Which versions select a record: a window on dbt_valid_from (half-open; None = unbounded), a user
    (LastModifiedById of the version), explicit ids. With no window and no user, ids alone select."""

    after: datetime | None = None  # versions valid from strictly after this instant ...
    start: datetime | None = None  # ... or from this instant (inclusive) ...
    end: datetime | None = None  # ... until this one (exclusive)
    changed_by: str | None = None
    record_ids: tuple[str, ...] = ()

    @property
    def by_version(self) -> bool:
        return any(v is not None for v in (self.after, self.start, self.end, self.changed_by))


def selection_conditions(selection: Selection) -> list[sql.Composable]:
    """The conditions on one history version that select its record (without the ids)."""
    selecting: list[sql.Composable] = []
    if selection.after is not None:
        selecting.append(sql.SQL("dbt_valid_from > %(after)s"))
    if selection.start is not None:
        selecting.append(sql.SQL("dbt_valid_from >= %(start)s"))
    if selection.end is not None:
        selecting.append(sql.SQL("dbt_valid_from < %(end)s"))
    if selection.changed_by is not None:
        selecting.append(sql.SQL("lastmodifiedbyid = %(changed_by)s"))
    return selecting


def selected_versions_sql(object_name: str, column_types: Mapping[str, str], selection: Selection) -> sql.Composed:
    """One row per selected record: values at as_of (`d_*`; `existed` false when it did not exist then), the
    damaged version (`m_*`: the last version inside the window, else the latest), and the latest backed-up
    version (`l_*`, with its SystemModstamp and IsDeleted). `column_types` maps columns to their PostgreSQL types.

    One scan of the history: each of the three versions is exactly one row of a record (validity intervals
    do not overlap, and the last version inside the window is the one whose successor starts after it), so
    `min(column) FILTER (...)` picks its value without a join. Parameters: `as_of`, and
    `after`/`start`/`end`/`changed_by`/`ids` as the selection uses them.
    """
    h = history_table(object_name)
    selecting = selection_conditions(selection)
    ids = sql.SQL("id = ANY(%(ids)s)")
    if selection.by_version:
        where = sql.SQL("id IN (SELECT id FROM {h} WHERE {cond})").format(
            h=h, cond=sql.SQL(" AND ").join([*selecting, *([ids] if selection.record_ids else [])])
        )
    else:
        where = ids
    if selection.start is not None and selection.end is not None:
        damaged = sql.SQL(
            "dbt_valid_from >= %(start)s AND dbt_valid_from < %(end)s "
            "AND (dbt_valid_to IS NULL OR dbt_valid_to >= %(end)s)"
        )
    else:
        damaged = sql.SQL("dbt_valid_to IS NULL")
    valid_at = sql.SQL("dbt_valid_from <= %(as_of)s AND (dbt_valid_to > %(as_of)s OR dbt_valid_to IS NULL)")
    latest = sql.SQL("dbt_valid_to IS NULL")

    def picked(prefix: str, condition: sql.Composable) -> sql.Composable:
        # min() has no boolean version; bool_or of one value is that value.
        return sql.SQL(", ").join(
            sql.SQL("{}({}) FILTER (WHERE {}) AS {}").format(
                sql.SQL("bool_or" if pg_type == "boolean" else "min"), ident(c), condition, ident(f"{prefix}_{c}")
            )
            for c, pg_type in column_types.items()
        )

    return sql.SQL(
        "SELECT id, coalesce(bool_or({valid_at} AND isdeleted IS NOT TRUE), false) AS existed, {d}, {m}, "
        "min(systemmodstamp) FILTER (WHERE {latest}) AS l_systemmodstamp, "
        "coalesce(bool_or(isdeleted IS TRUE) FILTER (WHERE {latest}), false) AS l_isdeleted, {l} "
        "FROM {h} WHERE {where} GROUP BY id"
    ).format(
        valid_at=valid_at,
        d=picked("d", valid_at),
        m=picked("m", damaged),
        latest=latest,
        l=picked("l", latest),
        h=h,
        where=where,
    )


def selection_params(selection: Selection, as_of: datetime | None) -> dict[str, Any]:
    return {
        "as_of": as_of,
        "after": selection.after,
        "start": selection.start,
        "end": selection.end,
        "changed_by": selection.changed_by,
        "ids": list(selection.record_ids),
    }


def children_at(
    conn: psycopg.Connection[Any], child_object: str, field: str, parent_ids: Sequence[str], as_of: datetime
) -> list[tuple[str, str]]:
    """(child id, parent id) of the child records whose `field` pointed to one of `parent_ids` at as_of."""
    query = sql.SQL(
        "SELECT h.id, h.{f} FROM {h} h WHERE h.{f} = ANY(%(ids)s) AND h.dbt_valid_from <= %(as_of)s "
        "AND (h.dbt_valid_to > %(as_of)s OR h.dbt_valid_to IS NULL) AND h.isdeleted IS NOT TRUE ORDER BY h.id"
    ).format(f=ident(column_name(field)), h=history_table(child_object))
    return [(r[0], r[1]) for r in conn.execute(query, {"ids": list(parent_ids), "as_of": as_of})]
