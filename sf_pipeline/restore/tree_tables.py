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
from collections.abc import Iterable, Iterator, Sequence
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


def items(conn: psycopg.Connection[Any], run_id: str, *, reasons: bool = True) -> Iterator[tuple]:
    """A tree plan's items: (object, record_id, field, action, current, desired, damaged, classification, reason),
    read through a server-side cursor, tables.CHUNK_RECORDS rows a fetch (inside a transaction of its own: do not
    commit on `conn` while iterating). Without `reasons`, reason is None (it is one string per record, and
    apply does not need it)."""
    reason = sql.SQL("reason") if reasons else sql.SQL("NULL::text")
    query = sql.SQL(
        "SELECT object, record_id, field, action, current_value, desired_value, damaged_value, classification, "
        "{reason} FROM sf_pipeline.restore_items WHERE run_id = %s ORDER BY object, record_id, field NULLS FIRST"
    ).format(reason=reason)
    with conn.transaction(), conn.cursor(name=f"tree_items_{uuid.uuid4().hex}") as cur:
        cur.itersize = tables.CHUNK_RECORDS
        cur.execute(query, (run_id,))
        yield from cur
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


def audit_rows(conn: psycopg.Connection[Any], run_id: str) -> list[tuple[str, str, str, Any, Any, str]]:
    """Everything a run wrote (journal rows completed `done`), oldest first: (object, record_id, field, before,
    after, operation)."""
    return conn.execute(
        "SELECT object, record_id, field, before, after, operation FROM sf_pipeline.restore_audit "
        "WHERE run_id = %s AND state = 'done' ORDER BY id",
        (run_id,),
    ).fetchall()


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
