"""The id map: which record in one org a record of another org (or of the same org, re-created) became.

One row per (source org alias, target org alias, object, source id) -> target id, in `sf_pipeline.id_map`.
Written by seeding (a sandbox copy of a production record), by restores that re-create records (a record
deleted past the recycle bin comes back with a new id) and by file restores; read by restores rehearsed in a
sandbox (the incident's production ids are translated), by a rerun of a restore (what it already re-created)
and by erasure requests (privacy/forget.py removes a data subject's entries).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import psycopg

from sf_pipeline.warehouse.ddl import commit

ID_MAP_DDL = [
    """CREATE TABLE IF NOT EXISTS sf_pipeline.id_map (
        source_alias text NOT NULL,
        target_alias text NOT NULL,
        object text NOT NULL,
        source_id varchar(18) NOT NULL,
        target_id varchar(18) NOT NULL,
        PRIMARY KEY (source_alias, target_alias, object, source_id))""",
    "CREATE INDEX IF NOT EXISTS id_map_source_id ON sf_pipeline.id_map (source_id)",
    "CREATE INDEX IF NOT EXISTS id_map_target_id ON sf_pipeline.id_map (target_id)",
]


ANALYZE_AFTER_PAIRS = 1_000  # a write this large refreshes the table's statistics (tens of ms)


def save_id_map(
    conn: psycopg.Connection[Any], source_alias: str, target_alias: str, object_name: str, pairs: Mapping[str, str]
) -> None:
    """Record `source id -> target id` pairs of one object (a later pair for the same source id replaces
    the earlier one), committed at once: a re-created record must stay findable after a later failure."""
    if not pairs:
        return
    with conn.transaction():
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO sf_pipeline.id_map (source_alias, target_alias, object, source_id, target_id) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (source_alias, target_alias, object, source_id) "
                "DO UPDATE SET target_id = EXCLUDED.target_id",
                [(source_alias, target_alias, object_name, old, new) for old, new in pairs.items()],
            )
        if len(pairs) >= ANALYZE_AFTER_PAIRS:
            # a restore reads the map back a chunk at a time (lookup_id_map) while it is still writing it: with the
            # statistics of a map that was small, PostgreSQL scanned every entry between the two orgs once per id
            # looked up (85 s a 25,000-id chunk at 210,000 entries); with fresh ones, an index probe per id
            conn.execute("ANALYZE sf_pipeline.id_map")
    commit(conn)


def load_id_map(conn: psycopg.Connection[Any], source_alias: str, target_alias: str) -> dict[str, str]:
    """Every source id -> target id known between two orgs (any object; ids are unique across objects).

    For seeding, which goes over the whole backup anyway; a restore reads the pairs of its chunks only
    (lookup_id_map, mapped_target_ids): the map between two orgs grows with every seeding and re-creation (2,000,000
    pairs for a sandbox seeded from a 2,000,000-record backup), not with the incident."""
    rows = conn.execute(
        "SELECT source_id, target_id FROM sf_pipeline.id_map WHERE source_alias = %s AND target_alias = %s",
        (source_alias, target_alias),
    ).fetchall()
    return dict(rows)


def lookup_id_map(
    conn: psycopg.Connection[Any],
    source_alias: str,
    target_alias: str,
    source_ids: Iterable[str],
    *,
    in_transaction: bool = False,
) -> dict[str, str]:
    """Source id -> target id of those of `source_ids` the id map knows between two orgs: what a chunk of a restore
    needs, read for it (a whole org's map grows with every restore and seeding).

    The read is committed (no connection left idle in a transaction) unless `in_transaction`: the caller holds a
    transaction open (a plan's, around its history cursor, where psycopg forbids `commit()`) and ends it itself."""
    ids = list(dict.fromkeys(source_ids))
    if not ids:
        return {}
    # one index probe per id, not `source_id = ANY(ids)`: as a prepared statement (psycopg prepares a query run five
    # times) PostgreSQL's generic plan read every entry between the two orgs and tested each against the whole
    # array: 40-91 s a 25,000-record chunk at 210,000 entries, against 0.1 s joined with the ids. Nor a plain join:
    # with a map written in id order (seeding copies records in creation order; ids sort by creation) the planner
    # judged a merge join reading every entry between the two orgs cheaper than the probes, 220-330 ms a
    # 20,000-id chunk at 1,000,000 entries against 46 ms probed (27-65 ms from 0 to 2,000,000 entries, in any order).
    # OFFSET 0 keeps the LATERAL subquery from being flattened into that join.
    rows = conn.execute(
        "SELECT s.id, m.target_id FROM unnest(%s::text[]) AS s(id) CROSS JOIN LATERAL (SELECT target_id "
        "FROM sf_pipeline.id_map WHERE source_id = s.id AND source_alias = %s AND target_alias = %s OFFSET 0) m",
        (ids, source_alias, target_alias),
    ).fetchall()
    if not in_transaction:
        commit(conn)
    return dict(rows)


def mapped_target_ids(
    conn: psycopg.Connection[Any], source_alias: str, target_alias: str, target_ids: Iterable[str]
) -> set[str]:
    """Those of `target_ids` that already are the target of a `source_alias -> target_alias` pair: records of the
    target org a restore re-created (or seeding copied) for another record, asked for only the ids in question."""
    ids = list(dict.fromkeys(target_ids))
    if not ids:
        return set()
    # lookup_id_map's probe, on target_id (id_map_target_id): one index probe per id, never a merge join over every
    # pair between the two orgs (LIMIT 1 keeps the subquery from being flattened, and answers each id once). An index
    # on (target_alias, target_id) would add nothing: an org's id is the target of a pair from a handful of source
    # orgs at most, so the probe by target_id alone finds a row or two to filter on the aliases
    rows = conn.execute(
        "SELECT t.id FROM unnest(%s::text[]) AS t(id) CROSS JOIN LATERAL (SELECT 1 FROM sf_pipeline.id_map "
        "WHERE target_id = t.id AND source_alias = %s AND target_alias = %s LIMIT 1) m",
        (ids, source_alias, target_alias),
    ).fetchall()
    commit(conn)
    return {r[0] for r in rows}
