"""What one backup run learns once and its per-object steps share, and the describes kept between runs.

- `sf_pipeline.describes`: each object's last describe with its `Last-Modified`, and the global describe's
  stamp (object `*`), so a run asks the org `If-Modified-Since` and re-reads nothing that did not change.
- `sf_pipeline.run_preflight`: per run, window and object, the counts the run's first step asked the org for
  all objects at once (Composite Batch): the records stamped in the window and the records created before its
  end. The other steps of the run read them instead of asking again. No Dagster here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from sf_pipeline.warehouse.ddl import ensure_ddl

_DDL_LOCK_KEY = 0x5F_5052_4546_4C54
_DDL = [
    "CREATE SCHEMA IF NOT EXISTS sf_pipeline",
    """CREATE TABLE IF NOT EXISTS sf_pipeline.describes (
        alias text NOT NULL, object text NOT NULL, last_modified text, describe jsonb,
        fetched_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (alias, object))""",
    """CREATE TABLE IF NOT EXISTS sf_pipeline.run_preflight (
        run_id text NOT NULL, object text NOT NULL, window_start timestamptz NOT NULL,
        window_end timestamptz NOT NULL, window_count bigint NOT NULL, org_total bigint,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (run_id, object, window_start, window_end))""",
    """CREATE TABLE IF NOT EXISTS sf_pipeline.calculated_columns (
        object text NOT NULL, column_name text NOT NULL, PRIMARY KEY (object, column_name))""",
]
GLOBAL = "*"


def ensure_run_state(conn: psycopg.Connection[Any]) -> None:
    ensure_ddl(conn, _DDL_LOCK_KEY, _DDL)


@dataclass(frozen=True)
class CachedDescribe:
    last_modified: str | None
    describe: dict[str, Any] | None


def cached_describes(conn: psycopg.Connection[Any], alias: str, objects: Iterable[str]) -> dict[str, CachedDescribe]:
    """The kept describes of `objects` (and of the global describe, key `*`) for an org alias."""
    wanted = [*objects, GLOBAL]
    rows = conn.execute(
        "SELECT object, last_modified, describe FROM sf_pipeline.describes WHERE alias = %s AND object = ANY(%s)",
        (alias, wanted),
    ).fetchall()
    return {r[0]: CachedDescribe(r[1], r[2]) for r in rows}


def keep_describe(
    conn: psycopg.Connection[Any],
    alias: str,
    sobject: str,
    last_modified: str | None,
    describe: Mapping[str, Any] | None,
) -> None:
    conn.execute(
        "INSERT INTO sf_pipeline.describes (alias, object, last_modified, describe) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (alias, object) DO UPDATE SET last_modified = excluded.last_modified, "
        "describe = excluded.describe, fetched_at = now()",
        (alias, sobject, last_modified, json.dumps(describe) if describe is not None else None),
    )


@dataclass(frozen=True)
class WindowCounts:
    """What the org said about one object for one window: records stamped in it (queryAll) and records created
    before its end (queryAll: the recycle bin counts)."""

    window_count: int
    org_total: int | None


def stored_counts(
    conn: psycopg.Connection[Any], run_id: str, start: datetime, end: datetime
) -> dict[str, WindowCounts]:
    rows = conn.execute(
        "SELECT object, window_count, org_total FROM sf_pipeline.run_preflight WHERE run_id = %s "
        "AND window_start = %s AND window_end = %s",
        (run_id, start, end),
    ).fetchall()
    return {r[0]: WindowCounts(r[1], r[2]) for r in rows}


def store_counts(
    conn: psycopg.Connection[Any], run_id: str, start: datetime, end: datetime, counts: Mapping[str, WindowCounts]
) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO sf_pipeline.run_preflight (run_id, object, window_start, window_end, window_count, "
            "org_total) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            [(run_id, o, start, end, c.window_count, c.org_total) for o, c in counts.items()],
        )


def forget_old_preflights(conn: psycopg.Connection[Any], keep_days: int = 7) -> None:
    conn.execute(
        "DELETE FROM sf_pipeline.run_preflight WHERE created_at < now() - make_interval(days => %s)", (keep_days,)
    )


def keep_calculated_columns(
    conn: psycopg.Connection[Any], sobject: str, columns: Iterable[str], kept: set[str] | None = None
) -> None:
    """Remember which columns of an object are calculated (describe `calculated: true`: formulas, roll-ups).

    Written only when they differ from what is kept: `kept` (the step read them for all its objects at once,
    `kept_calculated_columns`), else read here. A window whose describe did not change writes nothing."""
    wanted = {c.lower() for c in columns}
    if kept is None:
        kept = kept_calculated_columns(conn, [sobject]).get(sobject.lower(), set())
    if kept == wanted:
        return
    with conn.transaction():
        conn.execute("DELETE FROM sf_pipeline.calculated_columns WHERE object = %s", (sobject.lower(),))
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO sf_pipeline.calculated_columns (object, column_name) VALUES (%s, %s)",
                [(sobject.lower(), c) for c in sorted(wanted)],
            )


def kept_calculated_columns(conn: psycopg.Connection[Any], objects: Iterable[str]) -> dict[str, set[str]]:
    """The calculated columns kept for each of `objects` (lower-cased object name -> columns; an object with
    none is absent), in one query. Needs the run state's tables (`ensure_run_state`, the preflight's)."""
    rows = conn.execute(
        "SELECT object, column_name FROM sf_pipeline.calculated_columns WHERE object = ANY(%s)",
        ([o.lower() for o in objects],),
    ).fetchall()
    kept: dict[str, set[str]] = {}
    for sobject, column in rows:
        kept.setdefault(sobject, set()).add(column)
    return kept


def calculated_columns(conn: psycopg.Connection[Any], sobject: str) -> set[str]:
    """The calculated columns of an object as its last backed-up describe said (empty before any backup)."""
    if conn.execute("SELECT to_regclass('sf_pipeline.calculated_columns')").fetchone()[0] is None:
        return set()
    rows = conn.execute(
        "SELECT column_name FROM sf_pipeline.calculated_columns WHERE object = %s", (sobject.lower(),)
    ).fetchall()
    return {r[0] for r in rows}
