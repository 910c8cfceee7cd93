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

The dry run of a tree restore builds the tree in two temporary tables of its connection before storing those items
(see `_MEMBERS`); the undo of one is planned from the undone run's journal (`save_undo_items`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from sf_pipeline.restore import tables
from sf_pipeline.restore.tables import (
    Selection,
    _commit,
    history_table,
    selection_conditions,
    selection_params,
)
from sf_pipeline.warehouse.names import column_name, ident

_VALID_AT = (
    "{a}.dbt_valid_from <= %(as_of)s AND ({a}.dbt_valid_to > %(as_of)s OR {a}.dbt_valid_to IS NULL) "
    "AND {a}.isdeleted IS NOT TRUE"
)


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


# ===================================================================== the dry run's tree, built in PostgreSQL
# Two temporary tables of the dry run's connection (dropped by tree_end, else gone with the connection): the records
# of the tree (`_MEMBERS`: the cascade parent each was deleted with, the level it was found at, where it is in the
# org, what apply does to it) and the lookups pointing into it (`_POINTERS`). The tree is found, classified and
# turned into plan items by INSERT ... SELECT and UPDATE in the database, whatever its size: the dry run holds a
# chunk of ids at a time (the org's states, tables.CHUNK_RECORDS), never the tree.
# `found` numbers the discovery queries in the order they ran; with the record id (each query's rows come in id
# order) it is the order the records were found in, which decides ties (a record reached through two cascade
# lookups keeps the parent found first: ON CONFLICT DO NOTHING) and orders the plan's objects, counts and reasons.
# Autovacuum never analyzes temporary tables: they are ANALYZEd after the inserts that fill them. Without
# statistics PostgreSQL estimates a handful of rows for a level's `depth = ... AND object = ...` and may loop over
# the child's history once per parent record (quadratic in the tree); with them it hash-joins the two.
# Named in pg_temp, the connection's own schema: never a table of the same name elsewhere on the search path.
_MEMBERS = "pg_temp.restore_tree_members"
_POINTERS = "pg_temp.restore_tree_pointers"
_M, _P = sql.SQL(_MEMBERS), sql.SQL(_POINTERS)


def tree_start(conn: psycopg.Connection[Any]) -> None:
    """Create (or empty) the dry run's working tables."""
    with conn.transaction():
        conn.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {_MEMBERS} (record_id text PRIMARY KEY, object text NOT NULL, "
            "parent text, depth int NOT NULL, found int NOT NULL, state text, action text, reason text)"
        )
        conn.execute(f"CREATE INDEX IF NOT EXISTS restore_tree_members_object ON {_MEMBERS} (object, record_id)")
        conn.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {_POINTERS} (object text NOT NULL, record_id text NOT NULL, "
            "field text NOT NULL, parent text NOT NULL, latest text, found int NOT NULL)"
        )
        conn.execute(f"TRUNCATE {_MEMBERS}, {_POINTERS}")
    _commit(conn)


def tree_end(conn: psycopg.Connection[Any]) -> None:
    _drop_temporary(conn, _MEMBERS, _POINTERS)


def _drop_temporary(conn: psycopg.Connection[Any], *names: str) -> None:
    """Drop temporary tables of the connection (after a failed statement too)."""
    try:
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
            conn.rollback()
        conn.execute(f"DROP TABLE IF EXISTS {', '.join(names)}")
        _commit(conn)
    except psycopg.Error:
        pass  # the connection is gone: so are its temporary tables


def tree_analyzed(conn: psycopg.Connection[Any], *, pointers: bool = False) -> None:
    """Fresh statistics of the tree's records (and of the lookups into it): see _MEMBERS."""
    conn.execute(f"ANALYZE {_MEMBERS}")
    if pointers:
        conn.execute(f"ANALYZE {_POINTERS}")
    _commit(conn)


def _run(conn: psycopg.Connection[Any], query: sql.Composable | str, params: Mapping[str, Any]) -> list[tuple]:
    """One statement over the tree (its rows, if any), committed. JIT off: on scans of a large history it costs
    seconds and saves nothing. Never prepared: psycopg prepares a statement on its fifth run, and PostgreSQL's
    generic plan for it does not see how many rows a level or a chunk has."""
    with conn.transaction():
        conn.execute("SET LOCAL jit = off")
        cur = conn.execute(query, params, prepare=False)
        rows = cur.fetchall() if cur.description else []
    _commit(conn)
    return rows


def stage_roots(
    conn: psycopg.Connection[Any], object_name: str, selection: Selection, as_of: datetime
) -> tuple[int, int]:
    """Note as the tree's roots (level 0) the selected records that existed at as_of and whose latest backed-up
    version is deleted; returns (how many, how many selected records existed at as_of and are not deleted)."""
    h = history_table(object_name)
    conditions = selection_conditions(selection)
    if selection.record_ids:
        conditions.append(sql.SQL("id = ANY(%(ids)s)"))
    where = sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("true")
    query = sql.SQL(
        "WITH s AS (SELECT id, coalesce(bool_or({valid}), false) AS existed, coalesce(bool_or(isdeleted IS TRUE) "
        "FILTER (WHERE dbt_valid_to IS NULL), false) AS deleted FROM {h} h WHERE id IN (SELECT id FROM {h} WHERE "
        "{where}) GROUP BY id), "
        "roots AS (INSERT INTO {m} (record_id, object, parent, depth, found) SELECT id, %(object)s, NULL, 0, 0 "
        "FROM s WHERE existed AND deleted RETURNING 1) "
        "SELECT (SELECT count(*) FROM roots), (SELECT count(*) FROM s WHERE existed AND NOT deleted)"
    ).format(valid=sql.SQL(_VALID_AT.format(a="h")), h=h, where=where, m=_M)
    [(roots, live)] = _run(conn, query, {**selection_params(selection, as_of), "object": object_name})
    tree_analyzed(conn)
    return int(roots), int(live)


def level_objects(conn: psycopg.Connection[Any], depth: int) -> list[str]:
    """The objects of the tree's records found at `depth`, in the order they were first found."""
    rows = _run(
        conn,
        sql.SQL("SELECT object FROM {m} WHERE depth = %(depth)s GROUP BY object ORDER BY min(found)").format(m=_M),
        {"depth": depth},
    )
    return [r[0] for r in rows]


def stage_children(
    conn: psycopg.Connection[Any],
    *,
    depth: int,
    parent_object: str,
    child_object: str,
    field: str,
    cascade: bool,
    found: int,
    as_of: datetime,
) -> None:
    """The `child_object` records whose `field` pointed at as_of to a record of `parent_object` found at `depth`:
    those deleted with it (`cascade`: a cascade-delete field, and the child's latest backed-up version deleted) join
    the tree at depth + 1 with it as their cascade parent, unless they are in it already; the others are noted as
    lookups into the tree, with the field's latest backed-up value. One statement: the history is read by the
    database, none of it passes through this process. `found` numbers this query (see _MEMBERS)."""
    f = ident(column_name(field))
    query = sql.SQL(
        "WITH rows AS (SELECT a.id AS cid, a.{f} AS pid, coalesce(l.isdeleted, false) AS deleted, l.{f} AS latest "
        "FROM {h} a JOIN {m} t ON t.record_id = a.{f} AND t.depth = %(depth)s AND t.object = %(parent)s "
        "LEFT JOIN {h} l ON l.id = a.id AND l.dbt_valid_to IS NULL WHERE {valid}), "
        "joined AS (INSERT INTO {m} (record_id, object, parent, depth, found) "
        "SELECT cid, %(child)s, pid, %(depth)s + 1, %(found)s FROM rows WHERE %(cascade)s AND deleted "
        "ON CONFLICT (record_id) DO NOTHING) "
        "INSERT INTO {p} (object, record_id, field, parent, latest, found) "
        "SELECT %(child)s, cid, %(field)s, pid, latest, %(found)s FROM rows WHERE NOT (%(cascade)s AND deleted)"
    ).format(f=f, h=history_table(child_object), m=_M, p=_P, valid=sql.SQL(_VALID_AT.format(a="a")))
    params = {"depth": depth, "parent": parent_object, "child": child_object, "field": field}
    _run(conn, query, {**params, "cascade": cascade, "found": found, "as_of": as_of})


def member_objects(conn: psycopg.Connection[Any], *, action: str | None = None) -> list[str]:
    """The objects of the tree's records (with `action`: those with a record of that action), in the order they
    were first found."""
    rows = _run(
        conn,
        sql.SQL(
            "SELECT object FROM {m} GROUP BY object HAVING %(any)s OR bool_or(action = %(action)s) ORDER BY min(found)"
        ).format(m=_M),
        {"any": action is None, "action": action},
    )
    return [r[0] for r in rows]


def member_pages(conn: psycopg.Connection[Any], object_name: str) -> Iterator[list[str]]:
    """The ids of the tree's `object_name` records, tables.CHUNK_RECORDS at a time in id order (keyset pages over
    the index on (object, record_id))."""
    query = sql.SQL(
        "SELECT record_id FROM {m} WHERE object = %(obj)s AND record_id > %(after)s ORDER BY record_id LIMIT %(n)s"
    ).format(m=_M)
    after = ""
    while True:
        ids = [r[0] for r in _run(conn, query, {"obj": object_name, "after": after, "n": tables.CHUNK_RECORDS})]
        if not ids:
            return
        after = ids[-1]
        yield ids
        del ids


def place_members(conn: psycopg.Connection[Any], object_name: str, record_ids: Sequence[str], state: str) -> None:
    """Note where those of `record_ids` that are `object_name` records of the tree with no state yet are in the org.
    The ids are joined (unnest), not tested with `= ANY(ids)`: over a sequential scan each row would be tested
    against the whole array."""
    if record_ids:
        _run(
            conn,
            sql.SQL(
                "UPDATE {m} m SET state = %(state)s FROM unnest(%(ids)s::text[]) AS u(id) "
                "WHERE m.record_id = u.id AND m.object = %(obj)s AND m.state IS NULL"
            ).format(m=_M),
            {"state": state, "ids": list(record_ids), "obj": object_name},
        )


def unplaced_range(conn: psycopg.Connection[Any], object_name: str) -> tuple[str, str] | None:
    """(lowest, highest) id, in code point order, of the tree's `object_name` records with no state yet; None if
    there are none."""
    [(low, high)] = _run(
        conn,
        sql.SQL(
            'SELECT min(record_id COLLATE "C"), max(record_id COLLATE "C") FROM {m} '
            "WHERE object = %(obj)s AND state IS NULL"
        ).format(m=_M),
        {"obj": object_name},
    )
    return None if low is None else (low, high)


def classify_members(
    conn: psycopg.Connection[Any], *, missing: str, rules: Mapping[str, Sequence[tuple[str | None, str, str]]]
) -> None:
    """The tree's records with no state yet are `missing`; each record's action and reason are those of the first of
    its object's `rules` (state, or None for any; action; reason) its state matches. The working table is written
    anew (CREATE TABLE AS, its keys built after), not updated in place: an UPDATE of every record wrote each row twice
    and both indexes for each (1.7 s at 280,000 records, a third of the dry run's database time)."""
    params: dict[str, Any] = {"missing": missing}
    actions, reasons = [], []
    for i, (obj, per_object) in enumerate(rules.items()):
        params[f"object{i}"] = obj
        for j, (state, action, reason) in enumerate(per_object):
            when = f"object = %(object{i})s" + (
                "" if state is None else f" AND coalesce(state, %(missing)s) = %(state{i}_{j})s"
            )
            params.update(
                {f"state{i}_{j}": None if state is None else str(state), f"action{i}_{j}": str(action)}
                | {f"reason{i}_{j}": reason}
            )
            actions.append(f"WHEN {when} THEN %(action{i}_{j})s")
            reasons.append(f"WHEN {when} THEN %(reason{i}_{j})s")
    with conn.transaction():
        conn.execute("SET LOCAL jit = off")
        conn.execute(
            sql.SQL(
                "CREATE TEMPORARY TABLE restore_tree_classified AS SELECT record_id, object, parent, depth, found, "
                "coalesce(state, %(missing)s) AS state, CASE {actions} END AS action, CASE {reasons} END AS reason "
                "FROM {m}"
            ).format(m=_M, actions=sql.SQL(" ".join(actions)), reasons=sql.SQL(" ".join(reasons))),
            params,
            prepare=False,
        )
        conn.execute(f"DROP TABLE {_MEMBERS}")
        conn.execute("ALTER TABLE pg_temp.restore_tree_classified RENAME TO restore_tree_members")
        conn.execute(f"ALTER TABLE {_MEMBERS} ADD PRIMARY KEY (record_id)")
        conn.execute(f"CREATE INDEX restore_tree_members_object ON {_MEMBERS} (object, record_id)")
    _commit(conn)
    tree_analyzed(conn)


def inherit_parents(conn: psycopg.Connection[Any], depth: int, reasons: Mapping[str, str]) -> None:
    """The records found at `depth` take their cascade parent's action (final: it was found a level up) where
    `reasons` (parent action -> a format() text of the parent's object and id) says why: a record whose parent
    cannot come back (`none`) cannot either, where it would have been undeleted or re-created; one in the recycle
    bin whose parent is undeleted comes back with it; one to undelete whose parent is re-created is re-created."""
    _run(
        conn,
        sql.SQL(
            "UPDATE {m} c SET action = p.action, reason = format(CASE p.action WHEN 'none' THEN %(none)s "
            "WHEN 'undelete' THEN %(undelete)s ELSE %(create)s END, p.object, p.record_id) FROM {m} p "
            "WHERE c.depth = %(depth)s AND p.record_id = c.parent AND ("
            "(p.action = 'none' AND c.action IN ('undelete', 'create')) "
            "OR (p.action = 'undelete' AND c.state = 'recycle_bin') "
            "OR (p.action = 'create' AND c.action = 'undelete'))"
        ).format(m=_M),
        {**{str(action): text for action, text in reasons.items()}, "depth": depth},
    )


# The tree's records in the order they were found, objects together (an object where its first record was found).
_FOUND_ORDER = (
    "WITH firsts AS (SELECT object, min(found) AS first FROM {m} GROUP BY object), "
    "s AS (SELECT m.*, row_number() OVER (ORDER BY f.first, m.found, m.record_id) AS n FROM {m} m "
    "JOIN firsts f USING (object)) "
)


def member_counts(conn: psycopg.Connection[Any], none: str) -> list[tuple[str, str, str | None, int]]:
    """(object, action, reason of the records of action `none`, else None, records) of the tree, in the order
    each was first found."""
    rows = _run(
        conn,
        sql.SQL(
            _FOUND_ORDER + "SELECT object, action, CASE WHEN action = %(none)s THEN reason END AS why, count(*) "
            "FROM s GROUP BY object, action, why ORDER BY min(n)"
        ).format(m=_M),
        {"none": none},
    )
    return [(o, a, why, int(n)) for o, a, why, n in rows]


# The lookups into the tree that may be re-pointed: their record comes back (not `none`), and theirs is not
# re-created (it gets its lookups when it is created) nor one that cannot come back; `n`: the order they were found.
_POINTING = (
    "WITH c AS (SELECT p.*, row_number() OVER (ORDER BY p.found, p.record_id) AS n FROM {p} p "
    "JOIN {m} t ON t.record_id = p.parent AND t.action <> 'none' LEFT JOIN {m} o ON o.record_id = p.record_id "
    "WHERE o.action IS NULL OR o.action NOT IN ('create', 'none')) "
)


def pointer_groups(conn: psycopg.Connection[Any]) -> list[tuple[str, str, bool, int]]:
    """(object, field, changed: the field's latest backed-up value is another record, lookups) of the lookups into
    the tree that may be re-pointed (_POINTING), in the order each group was first found."""
    rows = _run(
        conn,
        sql.SQL(
            _POINTING + "SELECT object, field, latest IS NOT NULL AND latest <> parent AS changed, count(*) FROM c "
            "GROUP BY object, field, changed ORDER BY min(n)"
        ).format(m=_M, p=_P),
        {},
    )
    return [(o, f, bool(changed), int(n)) for o, f, changed, n in rows]


def save_tree_items(
    conn: psycopg.Connection[Any],
    run_id: str,
    *,
    statuses: Mapping[str, str],
    repoint: str,
    restore: str,
    fields: Sequence[tuple[str, str]],
) -> list[tuple[str, int]]:
    """Store the tree as the items of plan `run_id` (replacing any; see the module docstring for their columns):
    a row per record (`statuses`: the classification of each action), and a `repoint` row per lookup into the tree
    that may be re-pointed (_POINTING) on one of `fields` (object, field) and still holding the record or empty in
    the latest backup (a lookup set to another record since is left as it is), once per (record, field). Returns
    (object, lookups to re-point) in the order they were found."""
    objs, names = [o for o, _f in fields], [f for _o, f in fields]
    lookups = sql.SQL(
        "FROM c WHERE (object, field) IN (SELECT * FROM unnest(%(objs)s::text[], %(names)s::text[])) "
        "AND (latest IS NULL OR latest = parent)"
    )
    params: dict[str, Any] = {"run": run_id, "repoint": repoint, "restore": restore, "objs": objs, "names": names}
    whens = []
    for i, (action, status) in enumerate(statuses.items()):
        params.update({f"action{i}": action, f"status{i}": status})
        whens.append(f"WHEN %(action{i})s THEN %(status{i})s")
    classification = sql.SQL(" ".join(whens))
    with conn.transaction():
        conn.execute("SET LOCAL jit = off")
        tables.clear_plan(conn, run_id)
        conn.execute(
            sql.SQL(
                "INSERT INTO sf_pipeline.restore_items (run_id, object, record_id, field, action, current_value, "
                "desired_value, damaged_value, classification, reason) SELECT %(run)s, object, record_id, NULL, "
                "action, to_jsonb(state), NULL, to_jsonb(parent), CASE action {c} END, reason FROM {m}"
            ).format(m=_M, c=classification),
            params,
            prepare=False,
        )
        # one pass over the lookups: the rows to store, and their count per object in the order they were found
        rows = conn.execute(
            sql.SQL(
                _POINTING + ", r AS (SELECT DISTINCT ON (record_id, field) object, record_id, field, parent, n "
                "{lookups} ORDER BY record_id, field, n), "
                "stored AS (INSERT INTO sf_pipeline.restore_items (run_id, object, record_id, field, action, "
                "current_value, desired_value, damaged_value, classification, reason) SELECT %(run)s, object, "
                "record_id, field, %(repoint)s, NULL, to_jsonb(parent), NULL, %(restore)s, NULL FROM r) "
                "SELECT object, count(*) FROM r GROUP BY object ORDER BY min(n)"
            ).format(m=_M, p=_P, lookups=lookups),
            params,
            prepare=False,
        ).fetchall()
    _commit(conn)
    return [(o, int(n)) for o, n in rows]


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
    _drop_temporary(conn, _DEFERRED)


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
