"""The SQL of whole-hierarchy restores (hierarchy.py): reads of the backup history, and the tree's plan items.

Kept apart from tables.py so the tree's queries sit in one place; identifiers are quoted by the warehouse
helpers and values always passed as parameters. A tree plan's items live in `sf_pipeline.restore_items`
like any plan's, one object per row (`object`), with these actions:

- `undelete` / `create` / `noop` / `none` (not restorable): one row per record of the tree, field NULL;
  `current_value` is the record's state in the org at the dry run (`live`, `recycle_bin`, `missing`),
  `damaged_value` the parent it was deleted with (its cascade parent in the tree), if any;
- `repoint`: one row per (record, lookup field) to point again at a record of the tree; `desired_value` is
  the id the lookup held at as_of (for an undo: the value to put back, `current_value` the one written);
- `delete` (undo only): a record the undone run brought back, deleted again.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from sf_pipeline.restore import tables
from sf_pipeline.restore.tables import (
    Selection,
    _commit,
    _copy_json,
    _copy_text,
    history_table,
    selection_conditions,
    selection_params,
)
from sf_pipeline.warehouse.names import column_name, ident

_VALID_AT = (
    "{a}.dbt_valid_from <= %(as_of)s AND ({a}.dbt_valid_to > %(as_of)s OR {a}.dbt_valid_to IS NULL) "
    "AND {a}.isdeleted IS NOT TRUE"
)


def selected_deleted(
    conn: psycopg.Connection[Any], object_name: str, selection: Selection, as_of: datetime
) -> tuple[list[str], int]:
    """(ids of the selected records that existed at as_of and whose latest backed-up version is deleted,
    how many selected records are not deleted)."""
    h = history_table(object_name)
    conditions = selection_conditions(selection)
    if selection.record_ids:
        conditions.append(sql.SQL("id = ANY(%(ids)s)"))
    where = sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("true")
    query = sql.SQL(
        "SELECT id, bool_or({valid}) AS existed, coalesce(bool_or(isdeleted IS TRUE) FILTER "
        "(WHERE dbt_valid_to IS NULL), false) AS deleted FROM {h} h WHERE id IN (SELECT id FROM {h} WHERE {where}) "
        "GROUP BY id ORDER BY id"
    ).format(valid=sql.SQL(_VALID_AT.format(a="h")), h=h, where=where)
    params = selection_params(selection, as_of)
    deleted, live = [], 0
    for rid, existed, is_deleted in conn.execute(query, params):
        if existed and is_deleted:
            deleted.append(rid)
        elif existed:
            live += 1
    return deleted, live


def pointers_at(
    conn: psycopg.Connection[Any], child_object: str, field: str, parent_ids: Sequence[str], as_of: datetime
) -> Iterator[tuple[str, str, bool, str | None]]:
    """(child id, parent id at as_of, child deleted in its latest backed-up version, the field's latest
    backed-up value) of the `child_object` records whose `field` pointed to one of `parent_ids` at as_of, read
    through a server-side cursor a chunk of rows at a time (in a transaction of its own: do not commit on `conn`
    while iterating)."""
    f = ident(column_name(field))
    query = sql.SQL(
        "SELECT a.id, a.{f}, coalesce(l.isdeleted, false), l.{f} FROM {h} a LEFT JOIN {h} l ON l.id = a.id "
        "AND l.dbt_valid_to IS NULL WHERE a.{f} = ANY(%(ids)s) AND {valid} ORDER BY a.id"
    ).format(f=f, h=history_table(child_object), valid=sql.SQL(_VALID_AT.format(a="a")))
    with conn.transaction(), conn.cursor(name=f"tree_pointers_{uuid.uuid4().hex}") as cur:
        cur.itersize = tables.CHUNK_RECORDS
        cur.execute(query, {"ids": list(parent_ids), "as_of": as_of})
        for r in cur:
            yield (r[0], r[1], bool(r[2]), r[3])
    _commit(conn)


def values_as_of(
    conn: psycopg.Connection[Any], object_name: str, columns: Sequence[str], ids: Sequence[str], as_of: datetime
) -> dict[str, dict[str, Any]]:
    """{id: {column: value}} of records as they were at as_of. Callers ask for one chunk of ids at a time
    (tables.CHUNK_RECORDS): a whole object's values at once is what made a large tree's memory grow."""
    query = sql.SQL("SELECT h.id, {cols} FROM {h} h WHERE h.id = ANY(%(ids)s) AND {valid}").format(
        cols=sql.SQL(", ").join(sql.SQL("h.{}").format(ident(c)) for c in columns),
        h=history_table(object_name),
        valid=sql.SQL(_VALID_AT.format(a="h")),
    )
    return {
        row[0]: dict(zip(columns, row[1:], strict=True))
        for row in conn.execute(query, {"ids": list(ids), "as_of": as_of})
    }


def save_items(conn: psycopg.Connection[Any], run_id: str, items: Iterable[tuple]) -> None:
    """Add a tree plan's items: (object, record_id, field, action, current, desired, damaged, classification,
    reason) rows (the plan row itself is stored by tables.save_plan)."""
    with (
        conn.transaction(),
        conn.cursor().copy(
            "COPY sf_pipeline.restore_items (run_id, object, record_id, field, action, current_value, desired_value, "
            "damaged_value, classification, reason) FROM STDIN"
        ) as copy,
    ):
        lines: list[str] = []
        for obj, rid, field, action, current, desired, damaged, status, reason in items:
            lines.append(
                f"{_copy_text(run_id)}\t{_copy_text(obj)}\t{rid}\t{_copy_text(field)}\t{action}\t"
                f"{_copy_json(current)}\t{_copy_json(desired)}\t{_copy_json(damaged)}\t{status}\t"
                f"{_copy_text(reason)}\n"
            )
            if len(lines) >= 10_000:
                copy.write("".join(lines))
                lines.clear()
        if lines:
            copy.write("".join(lines))
    _commit(conn)


def written_values(
    conn: psycopg.Connection[Any], run_id: str, object_name: str, record_ids: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """{record id: {field: value}} that run `run_id` wrote to these records of `object_name` and the org
    confirmed (journal rows `done` of its creates and deferred references; the id a create row carries is the
    record's new id), the last value of a field winning. What verify compares a re-created record with, read a
    chunk of records at a time instead of kept in memory through the run."""
    if not record_ids:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for rid, fname, after in conn.execute(
        "SELECT record_id, field, after FROM sf_pipeline.restore_audit WHERE run_id = %s AND lower(object) = lower(%s) "
        "AND state = 'done' AND operation IN ('create', 'update') AND field <> 'Id' AND record_id = ANY(%s) "
        "ORDER BY id",
        (run_id, object_name, list(record_ids)),
    ):
        out.setdefault(rid, {})[fname] = after
    _commit(conn)
    return out


def audited(
    conn: psycopg.Connection[Any], org_alias: str, object_name: str, operation: str, record_ids: Sequence[str]
) -> set[str]:
    """Those of `record_ids` with a done audit row of `operation` on `object_name` in `org_alias` (any run)."""
    if not record_ids:
        return set()
    rows = conn.execute(
        "SELECT DISTINCT record_id FROM sf_pipeline.restore_audit WHERE org_alias = %s AND "
        "lower(object) = lower(%s) AND operation = %s AND state = 'done' AND record_id = ANY(%s)",
        (org_alias, object_name, operation, list(record_ids)),
    ).fetchall()
    _commit(conn)
    return {r[0] for r in rows}


# ===================================================================== a stored tree plan, read a chunk at a time
_ITEM_COLUMNS = (
    "i.object, i.record_id, i.field, i.action, i.current_value, i.desired_value, i.damaged_value, i.outcome, i.error"
)
# The record-level row (`damaged_value` is its cascade parent's id) whose parent is itself a record of the plan with
# action %(parent_action)s: for paging `where`s over restore_items `i`.
PARENT_HAS_ACTION = (
    "EXISTS (SELECT 1 FROM sf_pipeline.restore_items p WHERE p.run_id = i.run_id "
    "AND p.record_id = i.damaged_value #>> '{}' AND p.field IS NULL AND p.action = %(parent_action)s)"
)


def item_pages(
    conn: psycopg.Connection[Any],
    run_id: str,
    where: sql.Composable,
    params: Mapping[str, Any],
    *,
    chunk: int | None = None,
) -> Iterator[list[tuple]]:
    """The items of a stored tree plan matching `where` (SQL over `sf_pipeline.restore_items i`, parameters in
    `params`), `chunk` records (default tables.CHUNK_RECORDS) at a time in record id order, each record's matching
    items in the same chunk: (object, record_id, field, action, current, desired, damaged, outcome, error).

    Keyset pages over the index on (run_id, object, action, record_id) (`tables.record_pages`): apply commits its
    journal between pages, and only one page of rows is in this process."""
    return tables.record_pages(
        conn,
        columns=_ITEM_COLUMNS,
        scope=sql.SQL("FROM sf_pipeline.restore_items i WHERE i.run_id = %(run)s AND ({})").format(where),
        params={**params, "run": run_id},
        order="i.record_id, i.field NULLS FIRST",
        key_at=1,
        chunk=chunk,
    )


def record_states(conn: psycopg.Connection[Any], run_id: str, record_ids: Iterable[str]) -> dict[str, tuple[str, Any]]:
    """{record id: (action, outcome)} of those of `record_ids` that are records of the stored tree plan."""
    ids = list(record_ids)
    if not ids:
        return {}
    rows = conn.execute(
        "SELECT record_id, action, outcome FROM sf_pipeline.restore_items WHERE run_id = %s AND field IS NULL "
        "AND record_id = ANY(%s)",
        (run_id, ids),
    ).fetchall()
    _commit(conn)
    return {rid: (action, outcome) for rid, action, outcome in rows}


def action_counts(conn: psycopg.Connection[Any], run_id: str) -> list[tuple[str, str, int]]:
    """(object, action, items) of a stored tree plan: records per action, and lookups (record, field) to re-point."""
    rows = conn.execute(
        "SELECT object, action, count(*) FROM sf_pipeline.restore_items WHERE run_id = %s GROUP BY 1, 2 ORDER BY 1, 2",
        (run_id,),
    ).fetchall()
    _commit(conn)
    return [(o, a, int(n)) for o, a, n in rows]


def records_to_write(conn: psycopg.Connection[Any], run_id: str, actions: Sequence[str]) -> int:
    """Records of a stored tree plan with an item of one of `actions` (a record counted once)."""
    row = conn.execute(
        "SELECT count(DISTINCT record_id) FROM sf_pipeline.restore_items WHERE run_id = %s AND action = ANY(%s)",
        (run_id, list(actions)),
    ).fetchone()
    _commit(conn)
    return int(row[0]) if row else 0


def plan_objects(conn: psycopg.Connection[Any], run_id: str) -> list[str]:
    """The objects of a stored tree plan (plans stored before the dry run listed them)."""
    rows = conn.execute(
        "SELECT DISTINCT object FROM sf_pipeline.restore_items WHERE run_id = %s ORDER BY 1", (run_id,)
    ).fetchall()
    _commit(conn)
    return [r[0] for r in rows]


def finish_outcomes(
    conn: psycopg.Connection[Any], run_id: str, *, writes: Sequence[str], noop: str, not_attempted: str, other: str
) -> None:
    """Items no phase took an outcome for: `not_attempted` when their action writes (the run stopped first),
    `noop` for records live already, `other` (not restorable) for the rest."""
    with conn.transaction():
        conn.execute(
            "UPDATE sf_pipeline.restore_items SET outcome = CASE WHEN action = ANY(%(writes)s) THEN %(na)s "
            "WHEN action = %(noop)s THEN %(noop)s ELSE %(other)s END WHERE run_id = %(run)s AND outcome IS NULL",
            {"writes": list(writes), "na": not_attempted, "noop": noop, "other": other, "run": run_id},
        )
    _commit(conn)


def outcomes_per_object(conn: psycopg.Connection[Any], run_id: str) -> list[tuple[str, bool, str, int]]:
    """(object, is a record (not a lookup), outcome, items) of an applied tree plan."""
    rows = conn.execute(
        "SELECT object, field IS NULL, outcome, count(*) FROM sf_pipeline.restore_items WHERE run_id = %s "
        "GROUP BY 1, 2, 3 ORDER BY 1, 2 DESC, 3",
        (run_id,),
    ).fetchall()
    _commit(conn)
    return [(o, bool(is_record), outcome, int(n)) for o, is_record, outcome, n in rows]


# ===================================================================== references set after the inserts
# A temporary table (this connection's own, gone with it): the references of re-created records that are set once
# every record exists, noted as each chunk is created instead of held until the last object is. A run killed before
# setting them loses nothing: the next apply finds those records re-created (id map) and notes their references
# again from the backup.
_DEFERRED = "restore_tree_deferred"


def deferred_start(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {_DEFERRED} (object text NOT NULL, record_id text NOT NULL, "
        "field text NOT NULL, target text NOT NULL)"
    )
    conn.execute(f"TRUNCATE {_DEFERRED}")
    _commit(conn)


def deferred_add(conn: psycopg.Connection[Any], object_name: str, rows: Iterable[tuple[str, str, str]]) -> None:
    """Note (old record id, field, old id of the record it points to) to set once every record exists."""
    with (
        conn.transaction(),
        conn.cursor().copy(f"COPY {_DEFERRED} (object, record_id, field, target) FROM STDIN") as cp,
    ):
        for rid, field, target in rows:
            cp.write_row((object_name, rid, field, target))
    _commit(conn)


def deferred_pages(conn: psycopg.Connection[Any], object_name: str) -> Iterator[list[tuple[str, dict[str, str]]]]:
    """The references noted for `object_name`'s records, tables.CHUNK_RECORDS records at a time: (old record id,
    {field: old id of its target})."""
    after = ""
    while True:
        rows = conn.execute(
            f"SELECT record_id, jsonb_object_agg(field, target) FROM {_DEFERRED} WHERE object = %s AND record_id > %s "
            "GROUP BY record_id ORDER BY record_id LIMIT %s",
            (object_name, after, tables.CHUNK_RECORDS),
        ).fetchall()
        _commit(conn)
        if not rows:
            return
        after = rows[-1][0]
        yield [(rid, dict(later)) for rid, later in rows]


def deferred_end(conn: psycopg.Connection[Any]) -> None:
    try:
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
            conn.rollback()
        conn.execute(f"DROP TABLE IF EXISTS {_DEFERRED}")
        _commit(conn)
    except psycopg.Error:
        pass  # the connection is gone: so is its temporary table


# ===================================================================== the undo of a tree restore
def audited_any(conn: psycopg.Connection[Any], run_id: str) -> bool:
    """Whether a run logged any write (done)."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM sf_pipeline.restore_audit WHERE run_id = %s AND state = 'done')", (run_id,)
    ).fetchone()
    _commit(conn)
    return bool(row and row[0])


def save_undo_items(
    conn: psycopg.Connection[Any], run_id: str, undone: str, record_ids: Sequence[str]
) -> tuple[int, int, list[str]]:
    """Store, as the items of plan `run_id`, the undo of tree restore `undone`, from what its journal says it wrote
    (rows `done`), in PostgreSQL alone (nothing of it passes through this process): every record it brought back
    (undeleted, or re-created: the journal's row carries the new id, its `before` the id re-created) gets a `delete`
    item, whose `damaged_value` is the record brought back that it was deleted with in the undone plan (if any: the
    undo deletes that one and the cascade takes it); every lookup it re-pointed gets a `repoint` item putting back
    the value before its first write (`desired_value`) where the org still holds its last (`current_value`).
    `record_ids` (if any) keeps only those records. Returns (records, lookups, objects: those of records first)."""
    params = {"run": run_id, "undone": undone, "ids": list(record_ids), "all": not record_ids}
    with conn.transaction():
        conn.execute(
            """
            WITH done AS (
                SELECT id, object, record_id, field, before, after, operation FROM sf_pipeline.restore_audit
                WHERE run_id = %(undone)s AND state = 'done'),
            brought AS (
                SELECT DISTINCT ON (record_id) record_id, object, operation, id,
                    CASE WHEN operation = 'create' THEN before #>> '{}' ELSE record_id END AS old_id
                FROM done WHERE operation = 'undelete' OR (operation = 'create' AND field = 'Id')
                ORDER BY record_id, id)
            INSERT INTO sf_pipeline.restore_items (run_id, object, record_id, field, action, current_value,
                desired_value, damaged_value, classification, reason)
            SELECT %(run)s, b.object, b.record_id, NULL, 'delete', to_jsonb('live'::text), NULL,
                to_jsonb(pb.record_id), 'restore',
                'brought back by run ' || %(undone)s || ' (' || b.operation || '): delete it again'
            FROM brought b
            LEFT JOIN sf_pipeline.restore_items pi ON pi.run_id = %(undone)s AND pi.record_id = b.old_id
                AND pi.field IS NULL
            LEFT JOIN brought pb ON pb.old_id = pi.damaged_value #>> '{}'
            WHERE %(all)s OR b.record_id = ANY(%(ids)s)
            """,
            params,
        )
        conn.execute(
            """
            INSERT INTO sf_pipeline.restore_items (run_id, object, record_id, field, action, current_value,
                desired_value, damaged_value, classification, reason)
            SELECT %(run)s, (array_agg(object ORDER BY id))[1], record_id, field, 'repoint',
                (array_agg(after ORDER BY id DESC))[1], (array_agg(before ORDER BY id))[1], NULL, 'restore', NULL
            FROM sf_pipeline.restore_audit
            WHERE run_id = %(undone)s AND state = 'done' AND operation = 'repoint'
                AND (%(all)s OR record_id = ANY(%(ids)s))
            GROUP BY record_id, field
            """,
            params,
        )
        counts = dict(
            conn.execute(
                "SELECT action, count(*) FROM sf_pipeline.restore_items WHERE run_id = %(run)s GROUP BY 1", params
            ).fetchall()
        )
        objects = [
            r[0]
            for r in conn.execute(
                "SELECT object FROM sf_pipeline.restore_items WHERE run_id = %(run)s GROUP BY object "
                "ORDER BY bool_and(action = 'repoint'), min(record_id)",
                params,
            )
        ]
    _commit(conn)
    return int(counts.get("delete", 0)), int(counts.get("repoint", 0)), objects
