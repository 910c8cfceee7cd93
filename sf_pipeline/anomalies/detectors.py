"""Detectors of damage in one backup window, as set-based SQL over the history dbt snapshots build.

A window is `(object_name, start, end)`, half-open on `dbt_valid_from` (= the record's SystemModstamp)
like the backup's own windows. A *change* is a version stamped in the window compared with its previous
version: the version of the same id whose `dbt_valid_to` equals this version's `dbt_valid_from`.

How versions are diffed: `window_changes` runs one query that joins each version of the window with its
previous version and unpivots the columns that differ into a temporary table, one row per changed field
(`id, valid_from, user_id, field, before, after`). Which columns differ is computed per version as an int
array of typed `IS DISTINCT FROM` comparisons, and only those columns are cast to text: ~5x faster than
diffing `to_jsonb(row)`s, which casts every column of every version (and compares `1000.5` and `1000.50`
as text). Every detector is then one GROUP BY over that table (or, for volume and orphans, one query over
the history), never a query per field or per record and never rows pulled into Python; only the ids of
clusters large enough to be reported come back.

Damage is attributed to the acting user (`lastmodifiedbyid` of the new version) and clustered by user:
a finding normally holds the records one user hit, so "changed_by" in a restore selects them exactly. When
no single user reaches a threshold but all users together do (a trigger or flow running as whoever edits),
the finding covers every user, names the one behind most records, and says it did not act alone.

`registry.py` lists these detectors (and `vanishing.py`'s) with their thresholds and wording, and runs them all
over a window (`run_detectors`).
"""

from __future__ import annotations

import statistics
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row

from sf_pipeline.anomalies import cascades
from sf_pipeline.anomalies.thresholds import (
    AUDIT_COLUMNS,
    AnomalyThresholds,
    MassChangeThresholds,
    Severity,
    is_skipped_column,
)
from sf_pipeline.warehouse.history import history_columns
from sf_pipeline.warehouse.names import HISTORY_SCHEMA, ident, qualified, table_name
from sf_pipeline.warehouse.run_state import calculated_columns
from sf_pipeline.warehouse.schema import table_columns

SAMPLE_SIZE = 5

# The hash join of a window's versions with their previous versions, and the sorts of the GROUP BYs, in
# memory rather than in batches on disk.
_WORK_MEM = "128MB"
# Lookups to users, always present and never parents a restore could bring back (users cannot be deleted).
_NOT_PARENT_REFERENCES = frozenset({"ownerid", "createdbyid", "lastmodifiedbyid", "masterrecordid"})


class SampleChange(NamedTuple):
    """One damaged record: its id and the finding's fields before and after (column -> value as text)."""

    record_id: str
    before: dict[str, Any]
    after: dict[str, Any]


@dataclass
class Finding:
    """One anomaly in one window: what was hit, how much, when, by whom, and what a restore must select.

    Plain mutable data, so a caller can fill in what it learns later (e.g. `user_name` from the org).

    `fields`/`restore_fields` are lower-cased column names (map them to API names for people).
    `record_ids` are exactly the affected records of `object`; a restore brings back `restore_fields` of
    `restore_record_ids` (None: `record_ids`) in `restore_object` (None: `object`), as they were just
    before `first_change`. `acted_alone` says every affected record was changed by `user_id`.
    """

    detector: str
    severity: Severity
    object: str
    fields: tuple[str, ...]
    affected_count: int
    share: float | None
    first_change: datetime | None
    last_change: datetime | None
    user_id: str | None
    sample: tuple[SampleChange, ...]
    record_ids: tuple[str, ...]
    restore_fields: tuple[str, ...]
    details: dict[str, Any] = field(default_factory=dict)
    window_start: datetime | None = None
    window_end: datetime | None = None
    user_name: str | None = None
    acted_alone: bool = True
    restore_object: str | None = None
    restore_record_ids: tuple[str, ...] | None = None
    restore_deleted: bool = False
    live_records: int | None = None
    restore_as_of: datetime | None = None  # restore values as of just before this (None: first_change)

    @property
    def restorable(self) -> bool:
        """Whether a restore can undo it (a volume drop, say, has nothing to bring back)."""
        return bool(self.restore_fields) and bool(self.restore_record_ids or self.record_ids)


@dataclass(frozen=True)
class WindowChanges:
    """The changed fields of one window, materialized once in the temporary table `table`.

    `live_records`: records alive (not deleted) at the window start, the denominator of every share.
    `window_versions`: versions stamped in the window (new records included).
    `changed_records`: records with a previous version whose reported fields or deleted flag changed.
    """

    object_name: str
    start: datetime
    end: datetime
    table: sql.Identifier
    columns: tuple[str, ...]
    live_records: int
    window_versions: int
    changed_records: int

    def share(self, count: int) -> float:
        """`count` as a share of the object's live records (1.0 when the object had none)."""
        return count / max(self.live_records, count, 1)

    @property
    def restorable_columns(self) -> tuple[str, ...]:
        """Columns a whole-record restore writes: all but bookkeeping and create-audit columns."""
        return tuple(c for c in self.columns if not is_skipped_column(c) and c not in AUDIT_COLUMNS)


@dataclass(frozen=True)
class Baseline:
    """Change volume of a window and of the same window on previous days (or weeks).

    `previous` holds the counts of the previous windows the history covers, most recent first.
    """

    current: int
    previous: tuple[int, ...]

    @property
    def median(self) -> float | None:
        return statistics.median(self.previous) if self.previous else None


def _check_window(start: datetime, end: datetime) -> None:
    for name, instant in (("start", start), ("end", end)):
        if instant.tzinfo is None:
            # A naive time would be read in the session's time zone and silently shift the window.
            raise ValueError(f"window {name} needs a timezone-aware instant, got {instant!r}")
    if end <= start:
        raise ValueError(f"window end {end.isoformat()} is not after its start {start.isoformat()}")


def _history(object_name: str) -> sql.Identifier:
    return qualified(HISTORY_SCHEMA, table_name(object_name))


def resolve_thresholds(thresholds: AnomalyThresholds | Mapping[str, Any] | None, object_name: str) -> AnomalyThresholds:
    """Thresholds as given, or resolved for the object from a settings dict, or the defaults."""
    if isinstance(thresholds, AnomalyThresholds):
        return thresholds
    # settings.py resolves against the registry, which lists this module's detectors: imported on use
    from sf_pipeline.anomalies.settings import thresholds_for

    return thresholds_for(object_name, overrides=thresholds)


# ----------------------------------------------------------------------------------- window changes
_STATS = sql.SQL(
    """
    SELECT count(*) FILTER (WHERE h.dbt_valid_from <= %(start)s
                              AND (h.dbt_valid_to > %(start)s OR h.dbt_valid_to IS NULL)
                              AND {deleted} IS NOT TRUE),
           count(*) FILTER (WHERE h.dbt_valid_from >= %(start)s AND h.dbt_valid_from < %(end)s)
    FROM {history} AS h
    """
)

_CREATE_CHANGES = sql.SQL(
    """
    CREATE TEMPORARY TABLE {table} (
        id text, valid_from timestamptz, user_id text, deleted boolean, prev_deleted boolean,
        field text, before text, after text, record_name text
    ) ON COMMIT DROP
    """
)

# `changed` lists, per version, the 1-based positions (in %(fields)s) of the columns that differ from the
# previous version; only those are cast to text.
_INSERT_CHANGES = sql.SQL(
    """
    INSERT INTO {table} (id, valid_from, user_id, deleted, prev_deleted, field, before, after, record_name)
    SELECT c.id, c.dbt_valid_from, {user}, {deleted} IS TRUE, {prev_deleted} IS TRUE,
           (%(fields)s::text[])[n], CASE n {before} END, CASE n {after} END, {name}
    FROM {history} AS c
    JOIN {history} AS p ON p.id = c.id AND p.dbt_valid_to = c.dbt_valid_from
    CROSS JOIN LATERAL unnest(array_remove(ARRAY[{changed}]::int[], NULL)) AS n
    WHERE c.dbt_valid_from >= %(start)s AND c.dbt_valid_from < %(end)s
    """
)


def _column_or_null(alias: str, column: str, present: set[str], cast: str = "text") -> sql.Composable:
    if column in present:
        return sql.SQL("{}::{}").format(sql.Identifier(alias, column), sql.SQL(cast))
    return sql.SQL("NULL::{}").format(sql.SQL(cast))


@contextmanager
def analytics(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """One transaction (a savepoint inside the caller's) for a detector's queries, so they read one
    snapshot, with settings for a few large aggregations. JIT off: the lateral joins make the planner's
    cost estimates high enough to JIT-compile queries that run in 0.1 s for 0.2-0.3 s each
    (https://www.postgresql.org/docs/15/jit-decision.html)."""
    with conn.transaction():
        conn.execute("SELECT set_config('jit', 'off', true), set_config('work_mem', %s, true)", (_WORK_MEM,))
        yield


@contextmanager
def window_changes(
    conn: psycopg.Connection[Any], object_name: str, start: datetime, end: datetime
) -> Iterator[WindowChanges]:
    """Materialize the changed fields of a window for the detectors; the table is dropped on exit.

    Raises `HistoryNotFoundError` when the object has no history table yet.
    """
    _check_window(start, end)
    columns = history_columns(conn, object_name)
    present = set(columns)
    history = _history(object_name)
    # Every column but the bookkeeping ones that change with every edit, and the calculated ones (formulas,
    # roll-ups: their values drift without anyone editing the record, README "Calculated fields"); the
    # deleted flag stays in, it is the mass-delete detector's signal.
    calculated = calculated_columns(conn, object_name)
    diffed = [c for c in columns if c == "isdeleted" or not (is_skipped_column(c) or c in calculated)]
    table = sql.Identifier(f"sfp_window_changes_{uuid.uuid4().hex[:12]}")
    params = {"start": start, "end": end, "fields": diffed}
    with analytics(conn):
        live, versions = conn.execute(
            _STATS.format(history=history, deleted=_column_or_null("h", "isdeleted", present, "boolean")),
            params,
        ).fetchone()
        conn.execute(_CREATE_CHANGES.format(table=table))
        if diffed:
            positions = range(1, len(diffed) + 1)
            conn.execute(
                _INSERT_CHANGES.format(
                    table=table,
                    history=history,
                    user=_column_or_null("c", "lastmodifiedbyid", present),
                    deleted=_column_or_null("c", "isdeleted", present, "boolean"),
                    prev_deleted=_column_or_null("p", "isdeleted", present, "boolean"),
                    name=sql.SQL("coalesce(c.name, p.name)::text") if "name" in present else sql.SQL("NULL"),
                    before=sql.SQL(" ").join(
                        sql.SQL("WHEN {} THEN {}::text").format(sql.Literal(i), sql.Identifier("p", c))
                        for i, c in zip(positions, diffed, strict=True)
                    ),
                    after=sql.SQL(" ").join(
                        sql.SQL("WHEN {} THEN {}::text").format(sql.Literal(i), sql.Identifier("c", c))
                        for i, c in zip(positions, diffed, strict=True)
                    ),
                    changed=sql.SQL(", ").join(
                        sql.SQL("CASE WHEN {} IS DISTINCT FROM {} THEN {} END").format(
                            sql.Identifier("p", c), sql.Identifier("c", c), sql.Literal(i)
                        )
                        for i, c in zip(positions, diffed, strict=True)
                    ),
                ),
                params,
            )
        # Temporary tables are never analyzed by autovacuum; without statistics the GROUP BYs below
        # would be planned for a guessed size.
        conn.execute(sql.SQL("ANALYZE {}").format(table))
        (changed,) = conn.execute(sql.SQL("SELECT count(DISTINCT id) FROM {}").format(table)).fetchone()
        try:
            yield WindowChanges(object_name, start, end, table, tuple(columns), live, versions, changed)
        finally:
            # After a database error the transaction is rolled back, and the table with it.
            if conn.info.transaction_status != TransactionStatus.INERROR and not conn.closed:
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))


@contextmanager
def _changes_for(
    conn: psycopg.Connection[Any],
    object_name: str,
    start: datetime,
    end: datetime,
    changes: WindowChanges | None,
) -> Iterator[WindowChanges]:
    if changes is not None:
        if (changes.object_name.lower(), changes.start, changes.end) != (object_name.lower(), start, end):
            raise ValueError(
                f"the window changes given are of {changes.object_name} {changes.start}..{changes.end}, "
                f"not of {object_name} {start}..{end}"
            )
        with analytics(conn):
            yield changes
        return
    with window_changes(conn, object_name, start, end) as made:
        yield made


# ------------------------------------------------------------------------- mass nulling / overwrite
# Clusters per (field[, new value], user) and per (field[, new value]) over all users, of at least
# %(floor)s records; their ids and a sample are gathered only for those clusters (and not for an all-users
# cluster that is one user's cluster again).
_MASS_CHANGE = sql.SQL(
    """
    WITH hits AS MATERIALIZED (
        SELECT id, valid_from, user_id, field, before, after, record_name
        FROM {table}
        WHERE {condition}
    ), clusters AS (
        SELECT field, {value} AS value, user_id, GROUPING(user_id) = 1 AS all_users, count(*) AS n,
               min(valid_from) AS first_change, max(valid_from) AS last_change,
               count(DISTINCT user_id) AS users, mode() WITHIN GROUP (ORDER BY user_id) AS top_user
        FROM hits
        GROUP BY GROUPING SETS ((field{group}, user_id), (field{group}))
        HAVING count(*) >= %(floor)s
    )
    SELECT c.*, picked.ids, sampled.sample
    FROM clusters AS c
    CROSS JOIN LATERAL (
        SELECT array_agg(h.id) AS ids FROM hits AS h
        WHERE NOT (c.all_users AND c.users <= 1) AND h.field = c.field AND {value_match}
          AND (c.all_users OR h.user_id IS NOT DISTINCT FROM c.user_id)
    ) AS picked
    CROSS JOIN LATERAL (
        SELECT array_agg(jsonb_build_array(s.id, s.before, s.after, s.record_name) ORDER BY s.valid_from, s.id)
               AS sample
        FROM (
            SELECT h.* FROM hits AS h
            WHERE NOT (c.all_users AND c.users <= 1) AND h.field = c.field AND {value_match}
              AND (c.all_users OR h.user_id IS NOT DISTINCT FROM c.user_id)
            ORDER BY h.valid_from, h.id LIMIT {sample}
        ) AS s
    ) AS sampled
    """
)


def _mass_change(
    conn: psycopg.Connection[Any],
    changes: WindowChanges,
    thresholds: AnomalyThresholds,
    detector: str,
) -> list[Finding]:
    if not thresholds.enabled(detector):
        return []
    value, group, value_match = sql.SQL("NULL::text"), sql.SQL(""), sql.SQL("TRUE")
    if detector == "mass_delete":
        # The deleted flag going up on a record that was live: the whole record is the damage.
        condition = sql.SQL("field = 'isdeleted' AND deleted AND NOT prev_deleted")
    else:
        # Field changes of records live before and after: a deletion is not a field "nulled".
        condition = sql.SQL(
            "field <> 'isdeleted' AND field <> ALL(%(skip)s) AND NOT deleted AND NOT prev_deleted AND {}"
        ).format(sql.SQL("before IS NOT NULL AND after IS NULL" if detector == "mass_nulling" else "after IS NOT NULL"))
    if detector == "mass_overwrite":
        value, group, value_match = sql.SQL("after"), sql.SQL(", after"), sql.SQL("h.after = c.value")
    query = _MASS_CHANGE.format(
        table=changes.table,
        value=value,
        group=group,
        condition=condition,
        value_match=value_match,
        sample=sql.Literal(SAMPLE_SIZE),
    )
    params = {"skip": list(thresholds.skip_fields), "floor": max(thresholds.floor(detector), 1)}
    with conn.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(query, params).fetchall()

    def severity_of(row: dict[str, Any]) -> Severity | None:
        limits: MassChangeThresholds = getattr(thresholds.for_field(row["field"]), detector)
        return limits.classify(row["n"], changes.share(row["n"]))

    by_user: dict[str | None, list[tuple[dict[str, Any], Severity]]] = {}
    for row in rows:
        if not row["all_users"] and (severity := severity_of(row)):
            by_user.setdefault(row["user_id"], []).append((row, severity))
    covered = {(row["field"], row["value"]) for clusters in by_user.values() for row, _ in clusters}
    findings = [
        _merge_clusters(detector, changes, user_id, clusters, acted_alone=True) for user_id, clusters in by_user.items()
    ]
    for row in rows:
        if row["all_users"] and (row["field"], row["value"]) not in covered and (severity := severity_of(row)):
            findings.append(_merge_clusters(detector, changes, row["top_user"], [(row, severity)], acted_alone=False))
    if detector == "mass_delete":
        # Deleted records come back whole: every column a restore can write.
        findings = [
            replace(f, fields=(), restore_fields=changes.restorable_columns, restore_deleted=True) for f in findings
        ]
    return findings


def _sample(entries: Sequence[tuple[str, list[Any]]]) -> tuple[tuple[SampleChange, ...], dict[str, str]]:
    """Up to SAMPLE_SIZE records from (column, [id, before, after, name]) entries, fields merged by id."""
    records: dict[str, SampleChange] = {}
    names: dict[str, str] = {}
    for column, (record_id, before, after, name) in entries:
        if record_id not in records:
            if len(records) >= SAMPLE_SIZE:
                continue
            records[record_id] = SampleChange(record_id, {}, {})
        records[record_id].before[column] = before
        records[record_id].after[column] = after
        if name is not None:
            names[record_id] = name
    return tuple(records.values()), names


def _merge_clusters(
    detector: str,
    changes: WindowChanges,
    user_id: str | None,
    clusters: Sequence[tuple[dict[str, Any], Severity]],
    *,
    acted_alone: bool,
) -> Finding:
    """One finding from the clusters of one user (several fields, or several new values of one field)."""
    ids = sorted({record_id for row, _ in clusters for record_id in row["ids"] or ()})
    fields = tuple(sorted({row["field"] for row, _ in clusters}))
    sample, names = _sample([(row["field"], entry) for row, _ in clusters for entry in row["sample"] or ()])
    per_field = [
        {"field": row["field"], "records": row["n"], "users": row["users"], "severity": severity}
        | ({"value": row["value"]} if detector == "mass_overwrite" else {})
        for row, severity in clusters
    ]
    return Finding(
        detector=detector,
        severity="error" if any(severity == "error" for _, severity in clusters) else "warning",
        object=changes.object_name,
        fields=fields,
        affected_count=len(ids),
        share=changes.share(len(ids)),
        first_change=min(row["first_change"] for row, _ in clusters),
        last_change=max(row["last_change"] for row, _ in clusters),
        user_id=user_id,
        sample=sample,
        record_ids=tuple(ids),
        restore_fields=fields,
        details=_window_details(changes, len(ids))
        | {"per_field": per_field, "sample_names": names}
        | ({} if acted_alone else {"users": max(row["users"] for row, _ in clusters)}),
        window_start=changes.start,
        window_end=changes.end,
        acted_alone=acted_alone,
        live_records=changes.live_records,
    )


def _window_details(changes: WindowChanges, affected: int) -> dict[str, Any]:
    return {
        "live_records": changes.live_records,
        "window_versions": changes.window_versions,
        "window_changed_records": changes.changed_records,
        "share_of_window_changes": affected / changes.changed_records if changes.changed_records else None,
    }


def detect_mass_nulling(
    conn: psycopg.Connection[Any],
    object_name: str,
    start: datetime,
    end: datetime,
    thresholds: AnomalyThresholds | Mapping[str, Any] | None = None,
    *,
    changes: WindowChanges | None = None,
) -> list[Finding]:
    """Fields many records lost in the window (a value before, null after), per acting user.

    Lookups above all: a nulled AccountId leaves the Opportunity orphaned. `changes` lets several
    detectors share one `window_changes`.
    """
    limits = resolve_thresholds(thresholds, object_name)
    with _changes_for(conn, object_name, start, end, changes) as window:
        return _mass_change(conn, window, limits, "mass_nulling")


def detect_mass_overwrite(
    conn: psycopg.Connection[Any],
    object_name: str,
    start: datetime,
    end: datetime,
    thresholds: AnomalyThresholds | Mapping[str, Any] | None = None,
    *,
    changes: WindowChanges | None = None,
) -> list[Finding]:
    """Fields set to one and the same new value on many records (one owner, one stage), per acting user."""
    limits = resolve_thresholds(thresholds, object_name)
    with _changes_for(conn, object_name, start, end, changes) as window:
        return _mass_change(conn, window, limits, "mass_overwrite")


# ------------------------------------------------------------------------------------ mass deletion
def detect_mass_delete(
    conn: psycopg.Connection[Any],
    object_name: str,
    start: datetime,
    end: datetime,
    thresholds: AnomalyThresholds | Mapping[str, Any] | None = None,
    *,
    changes: WindowChanges | None = None,
) -> list[Finding]:
    """Records deleted in the window (live before, flagged deleted after), per acting user.

    The restore brings whole records back (`restore_deleted`), so `restore_fields` lists every column a
    restore can write. A cascade is one incident, its root's (cascades.py): records deleted with their parent
    are left to the parent's finding, which counts them (`details["cascade"]`) and is raised when the whole
    tree is large enough, even if its roots alone are few (15 Accounts with 400 Contacts and Opportunities).
    """
    limits = resolve_thresholds(thresholds, object_name)
    with _changes_for(conn, object_name, start, end, changes) as window:
        findings = _mass_change(conn, window, limits, "mass_delete")
        if not limits.enabled("mass_delete"):
            return findings
        return _group_cascades(conn, window, limits, findings)


_DELETED_ROOTS = sql.SQL(
    "SELECT id, user_id, valid_from FROM {table} WHERE field = 'isdeleted' AND deleted AND NOT prev_deleted"
)


def _group_cascades(
    conn: psycopg.Connection[Any], window: WindowChanges, limits: AnomalyThresholds, findings: list[Finding]
) -> list[Finding]:
    """Mass-delete findings with cascades grouped under their root: see `detect_mass_delete`."""
    deletions = conn.execute(_DELETED_ROOTS.format(table=window.table)).fetchall()
    if not deletions:
        return findings  # nothing deleted in the window: no cascade to look for
    tables = cascades.backed_up_tables(conn)
    with_parent = cascades.deleted_with_parent(conn, window.object_name, window.start, window.end, tables)
    out: list[Finding] = []
    for f in findings:
        own = tuple(i for i in f.record_ids if i not in with_parent)
        if len(own) == len(f.record_ids):
            out.append(f)
        elif own:
            out.append(
                replace(
                    f,
                    record_ids=own,
                    affected_count=len(own),
                    sample=tuple(s for s in f.sample if s.record_id not in with_parent),
                    details={**f.details, "deleted_with_parent": len(f.record_ids) - len(own)},
                )
            )
    roots: dict[str | None, list[tuple[str, datetime]]] = {}
    for record_id, user_id, valid_from in deletions:
        if record_id not in with_parent:
            roots.setdefault(user_id, []).append((record_id, valid_from))
    mass = limits.mass_delete
    for user_id, deleted in roots.items():
        ids = sorted(r for r, _ in deleted)
        tree = cascades.cascade_beneath(conn, window.object_name, ids, window.start, window.end, tables)
        if not tree.count:
            continue
        shares = [window.share(len(ids))]
        for table, child_ids in tree.beneath.items():
            live = _live_records(conn, table, window.start, set(tables[table]))
            shares.append(len(child_ids) / max(live, len(child_ids), 1))
        severity = mass.classify(len(ids) + tree.count, max(shares))
        cascade = {"cascade": tree.counts(), "cascade_records": tree.count}
        existing = next((i for i, f in enumerate(out) if f.user_id == user_id and f.acted_alone), None)
        if existing is not None:
            f = out[existing]
            worse = "error" if "error" in (f.severity, severity) else f.severity
            out[existing] = replace(f, severity=worse, details={**f.details, **cascade})
        elif severity is not None:
            out.append(
                Finding(
                    detector="mass_delete",
                    severity=severity,
                    object=window.object_name,
                    fields=(),
                    affected_count=len(ids),
                    share=window.share(len(ids)),
                    first_change=min(v for _, v in deleted),
                    last_change=max(v for _, v in deleted),
                    user_id=user_id,
                    sample=(),
                    record_ids=tuple(ids),
                    restore_fields=window.restorable_columns,
                    details=_window_details(window, len(ids)) | cascade,
                    window_start=window.start,
                    window_end=window.end,
                    live_records=window.live_records,
                    restore_deleted=True,
                )
            )
    return out


# ------------------------------------------------------------------------------------- user share
_USER_SHARE = sql.SQL(
    """
    WITH hits AS MATERIALIZED (
        SELECT id, valid_from, user_id, deleted, field, before, after, record_name
        FROM {table}
        WHERE field <> ALL(%(skip)s)
    ), records AS MATERIALIZED (
        SELECT user_id, id, min(valid_from) AS valid_from, bool_or(field = 'isdeleted' AND deleted) AS deleted
        FROM hits
        GROUP BY user_id, id
    ), clusters AS (
        SELECT user_id, count(*) AS n, min(valid_from) AS first_change, max(valid_from) AS last_change,
               count(*) FILTER (WHERE deleted) AS deleted
        FROM records
        GROUP BY user_id
        HAVING count(*) >= %(floor)s
    )
    SELECT c.*, picked.ids, touched.fields, sampled.sample
    FROM clusters AS c
    CROSS JOIN LATERAL (
        SELECT array_agg(r.id) AS ids FROM records AS r WHERE r.user_id IS NOT DISTINCT FROM c.user_id
    ) AS picked
    CROSS JOIN LATERAL (
        SELECT array_agg(DISTINCT h.field) AS fields FROM hits AS h
        WHERE h.user_id IS NOT DISTINCT FROM c.user_id AND h.field <> 'isdeleted'
    ) AS touched
    CROSS JOIN LATERAL (
        SELECT array_agg(jsonb_build_array(s.field, s.id, s.before, s.after, s.record_name)
                         ORDER BY s.valid_from, s.id) AS sample
        FROM (
            SELECT h.* FROM hits AS h WHERE h.user_id IS NOT DISTINCT FROM c.user_id
            ORDER BY h.valid_from, h.id LIMIT {sample}
        ) AS s
    ) AS sampled
    """
)


def detect_user_share(
    conn: psycopg.Connection[Any],
    object_name: str,
    start: datetime,
    end: datetime,
    thresholds: AnomalyThresholds | Mapping[str, Any] | None = None,
    *,
    changes: WindowChanges | None = None,
) -> list[Finding]:
    """Users who changed an unusual share of the object's live records in the window (any fields)."""
    resolved = resolve_thresholds(thresholds, object_name)
    limits = resolved.user_share
    if not limits.enabled:
        return []
    with _changes_for(conn, object_name, start, end, changes) as window:
        query = _USER_SHARE.format(table=window.table, sample=sql.Literal(SAMPLE_SIZE))
        params = {"skip": list(resolved.skip_fields), "floor": max(limits.min_records, 1)}
        with conn.cursor(row_factory=dict_row) as cursor:
            rows = cursor.execute(query, params).fetchall()
        findings = []
        for row in rows:
            severity = limits.classify(row["n"], window.share(row["n"]))
            if not severity:
                continue
            fields = tuple(sorted(row["fields"] or ()))
            sample, names = _sample([(entry[0], entry[1:]) for entry in row["sample"] or ()])
            findings.append(
                Finding(
                    detector="user_share",
                    severity=severity,
                    object=window.object_name,
                    fields=fields,
                    affected_count=row["n"],
                    share=window.share(row["n"]),
                    first_change=row["first_change"],
                    last_change=row["last_change"],
                    user_id=row["user_id"],
                    sample=sample,
                    record_ids=tuple(sorted(row["ids"] or ())),
                    restore_fields=fields,
                    details=_window_details(window, row["n"])
                    | {"deleted_records": row["deleted"], "sample_names": names},
                    window_start=window.start,
                    window_end=window.end,
                    live_records=window.live_records,
                )
            )
        return findings


# ------------------------------------------------------------------------------------ change volume
# `back` = how many periods (days or weeks) before the window a version's stamp falls into the same window
# shifted back (0: the window itself), NULL outside every compared window. With x the seconds from the
# window start to the stamp (negative before it), that is -floor(x / period) when x modulo the period is
# below the window's width. One scan of the history, in float seconds (numeric `extract` is ~2x slower).
_BASELINE = sql.SQL(
    """
    SELECT s.back, count(*) AS n, min(s.stamp) AS earliest
    FROM (
        SELECT h.dbt_valid_from AS stamp,
               CASE WHEN h.dbt_valid_from >= %(lower)s AND x.seconds - floor(x.seconds / %(period)s) * %(period)s
                                                          < %(width)s
                    THEN (-floor(x.seconds / %(period)s))::int END AS back
        FROM {history} AS h
        CROSS JOIN LATERAL (SELECT date_part('epoch', h.dbt_valid_from - %(start)s::timestamptz) AS seconds) AS x
        WHERE h.dbt_valid_from < %(end)s
    ) AS s
    GROUP BY s.back
    """
)


def baseline(
    conn: psycopg.Connection[Any],
    object_name: str,
    start: datetime,
    end: datetime,
    days: int = 14,
    *,
    same_weekday: bool = False,
    history_start: datetime | None = None,
) -> Baseline:
    """Versions stamped in the window, and in the same window of each of the `days` previous days.

    With `same_weekday`, the same window of the previous `days` weeks instead. A previous window counts
    only when the history covers it: it starts at or after `history_start` (pass the backup's first
    window; the first full load stamps old records with their own old SystemModstamps, which would make
    past days look quiet), else it ends after the earliest version of the history.
    """
    _check_window(start, end)
    if history_start is not None and history_start.tzinfo is None:
        raise ValueError(f"history_start needs a timezone-aware instant, got {history_start!r}")
    if end - start > timedelta(days=1):
        raise ValueError("a change-volume baseline compares windows of at most one day")
    history_columns(conn, object_name)  # a clear error when there is no history table yet
    period = timedelta(weeks=1) if same_weekday else timedelta(days=1)
    params = {
        "start": start,
        "end": end,
        "lower": start - days * period,
        "period": period.total_seconds(),
        "width": (end - start).total_seconds(),
    }
    counts: dict[int, int] = {}
    earliest: datetime | None = None
    with analytics(conn):
        rows = conn.execute(_BASELINE.format(history=_history(object_name)), params).fetchall()
    for back, n, first in rows:
        if back is not None:
            counts[back] = n
        earliest = first if earliest is None or (first is not None and first < earliest) else earliest
    previous = []
    for back in range(1, days + 1):
        shifted = start - back * period
        if history_start is not None:
            covered = shifted >= history_start
        else:  # the window holding the first version we know of is the first one covered
            covered = earliest is not None and shifted + (end - start) > earliest
        if not covered:
            break
        previous.append(counts.get(back, 0))
    return Baseline(current=counts.get(0, 0), previous=tuple(previous))


_PHANTOM_VERSIONS = sql.SQL(
    """
    SELECT count(*) FROM {history} AS c
    JOIN {history} AS p ON p.id = c.id AND p.dbt_valid_to = c.dbt_valid_from
    WHERE c.dbt_valid_from >= %(start)s AND c.dbt_valid_from < %(end)s
      AND NOT EXISTS (SELECT 1 FROM {table} AS t WHERE t.id = c.id AND t.valid_from = c.dbt_valid_from)
    """
)


_TOP_USER = sql.SQL(
    """
    SELECT user_id, count(DISTINCT id) AS n, min(valid_from) AS first_change, max(valid_from) AS last_change,
           array_agg(DISTINCT id) AS ids, array_agg(DISTINCT field) FILTER (WHERE field <> 'isdeleted') AS fields
    FROM {table}
    WHERE field <> ALL(%(skip)s)
    GROUP BY user_id
    ORDER BY n DESC, user_id
    LIMIT 1
    """
)


def detect_volume(
    conn: psycopg.Connection[Any],
    object_name: str,
    start: datetime,
    end: datetime,
    thresholds: AnomalyThresholds | Mapping[str, Any] | None = None,
    *,
    history_start: datetime | None = None,
    changes: WindowChanges | None = None,
) -> list[Finding]:
    """Change volume far above the same window of past days (spike), or nothing where there always was
    plenty (a sync that silently returned 0 rows, e.g. after a permission change).

    No alarm while the history covers fewer than `min_baseline_windows` previous windows. A spike names
    the user behind most changed records and selects what they changed, for a restore to look at.
    """
    resolved = resolve_thresholds(thresholds, object_name)
    limits = resolved.volume
    if not limits.enabled:
        return []
    days = limits.baseline_days
    usual = baseline(conn, object_name, start, end, days, same_weekday=limits.same_weekday, history_start=history_start)
    median = usual.median
    if median is None or len(usual.previous) < limits.min_baseline_windows:
        return []
    details = {
        "window_versions": usual.current,
        "baseline_median": median,
        "baseline_windows": list(usual.previous),
        "baseline": "same weekday of previous weeks" if limits.same_weekday else "same hours of previous days",
    }
    if usual.current > limits.spike_factor * median and usual.current > limits.spike_min_changes:
        with _changes_for(conn, object_name, start, end, changes) as window:
            # Versions that changed nothing but calculated or bookkeeping columns (a roll-up recalculated, the
            # platform touching SystemModstamp) are no one's change: they do not count towards a spike.
            (phantom,) = conn.execute(
                _PHANTOM_VERSIONS.format(history=_history(object_name), table=window.table),
                {"start": start, "end": end},
            ).fetchone()
            details["versions_without_change"] = phantom
            if (
                usual.current - phantom <= limits.spike_factor * median
                or usual.current - phantom <= limits.spike_min_changes
            ):
                return []
            query = _TOP_USER.format(table=window.table)
            with conn.cursor(row_factory=dict_row) as cursor:
                top = cursor.execute(query, {"skip": list(resolved.skip_fields)}).fetchone()
            factor = usual.current / median if median else None
            top = top or {
                "user_id": None,
                "n": 0,
                "first_change": None,
                "last_change": None,
                "ids": [],
                "fields": [],
            }
            fields = tuple(sorted(top["fields"] or ()))
            return [
                Finding(
                    detector="volume_spike",
                    severity=limits.spike_severity,
                    object=object_name,
                    fields=fields,
                    affected_count=top["n"],
                    share=window.share(top["n"]),
                    first_change=top["first_change"],
                    last_change=top["last_change"],
                    user_id=top["user_id"],
                    sample=(),
                    record_ids=tuple(sorted(top["ids"] or ())),
                    restore_fields=fields,
                    details=details
                    | _window_details(window, top["n"])
                    | {"factor": factor, "new_records": usual.current - window.changed_records},
                    window_start=start,
                    window_end=end,
                    live_records=window.live_records,
                )
            ]
    if usual.current <= limits.drop_max_changes and median >= limits.drop_min_baseline:
        return [
            Finding(
                detector="volume_drop",
                severity=limits.drop_severity,
                object=object_name,
                fields=(),
                affected_count=0,
                share=None,
                first_change=None,
                last_change=None,
                user_id=None,
                sample=(),
                record_ids=(),
                restore_fields=(),
                details=details,
                window_start=start,
                window_end=end,
            )
        ]
    return []


_CHANGE_VOLUME = sql.SQL(
    """
    SELECT floor(extract(epoch FROM h.dbt_valid_from - %(since)s::timestamptz) / %(bucket)s)::int AS bucket,
           count(*)
    FROM {history} AS h
    WHERE h.dbt_valid_from >= %(since)s AND h.dbt_valid_from < %(end)s
    GROUP BY 1
    """
)


def change_volume(
    conn: psycopg.Connection[Any],
    object_name: str,
    end: datetime,
    hours: int = 24,
    bucket_minutes: int = 5,
) -> list[tuple[datetime, int]]:
    """Versions stamped per bucket over the `hours` before `end`: (bucket start, count), oldest first,
    every bucket present (zeros included), for the incident chart."""
    _check_window(end - timedelta(hours=hours), end)
    if bucket_minutes <= 0 or (hours * 60) % bucket_minutes:
        raise ValueError(f"{bucket_minutes}-minute buckets do not divide {hours} hours")
    history_columns(conn, object_name)
    since = end - timedelta(hours=hours)
    bucket = timedelta(minutes=bucket_minutes)
    with analytics(conn):
        counts = dict(
            conn.execute(
                _CHANGE_VOLUME.format(history=_history(object_name)),
                {"since": since, "end": end, "bucket": bucket.total_seconds()},
            ).fetchall()
        )
    return [(since + i * bucket, counts.get(i, 0)) for i in range(hours * 60 // bucket_minutes)]


# ------------------------------------------------------------------------------------------ orphans
def reference_columns(
    conn: psycopg.Connection[Any],
    object_name: str,
    references: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Lookup columns of an object whose parents are backed up: column -> parent object.

    `references` (field or column -> parent object API name, from describe's `referenceTo`) is taken as
    given. Without it, lookups are inferred from names: a column `<parent>id` (`accountid`) or a custom lookup
    named after its object (`account__c`, `invoice__c`) whose parent has a history table
    (`salesforce_history.account`); user lookups and self-lookups are never parents.
    """
    columns = history_columns(conn, object_name)
    if references is not None:
        wanted = {field.lower(): parent for field, parent in references.items()}
        return {c: wanted[c] for c in columns if c in wanted}
    own = table_name(object_name)
    inferred = {}
    for column in columns:
        if column == "id" or column in _NOT_PARENT_REFERENCES:
            continue
        if column.endswith("__c"):
            stem = column[: -len("__c")]
            candidates: tuple[str, ...] = (stem, f"{stem}__c")
        elif column.endswith("id"):
            candidates = (column[: -len("id")],)
        else:
            continue
        parent = next((c for c in candidates if c and c != own and table_columns(conn, HISTORY_SCHEMA, c)), None)
        if parent:
            inferred[column] = parent[:1].upper() + parent[1:]  # `account` -> `Account`, `invoice__c` -> `Invoice__c`
    return inferred


# Children alive at the window end left by a parent that is deleted or absent at the end, among (a) children whose
# lookup was set or changed in the window, (b) children still pointing at parents deleted in the window, and (c)
# children whose lookup the deletion of their parent cleared: Salesforce clears an optional lookup when its parent is
# deleted ("Clear the value of this field") and stamps the child with the deletion's SystemModstamp and user (devorg
# does the same, store._delete_one), so the backup sees the child's lookup emptied at the very stamp of the parent's
# deletion. `cause`: 'parent_deleted' (the damage is the parent's deletion, in the window: (b) and (c)) or 'dangling'
# (the damage is the child's change: it points at a parent deleted earlier, or never backed up).
_ORPHANS = sql.SQL(
    """
    WITH moved AS (
        SELECT c.id, c.{ref} AS parent_id, c.dbt_valid_from AS changed_at, {child_user} AS user_id,
               false AS cleared
        FROM {child} AS c
        LEFT JOIN {child} AS p ON p.id = c.id AND p.dbt_valid_to = c.dbt_valid_from
        WHERE c.dbt_valid_from >= %(start)s AND c.dbt_valid_from < %(end)s
          AND (c.dbt_valid_to IS NULL OR c.dbt_valid_to >= %(end)s)
          AND {child_deleted} IS NOT TRUE AND c.{ref} IS NOT NULL
          AND (p.id IS NULL OR p.{ref} IS DISTINCT FROM c.{ref})
    ), parents_deleted AS (
        SELECT d.id, d.dbt_valid_from AS deleted_at, {parent_user} AS user_id
        FROM {parent} AS d
        WHERE d.dbt_valid_from >= %(start)s AND d.dbt_valid_from < %(end)s AND {parent_deleted} IS TRUE
          AND (d.dbt_valid_to IS NULL OR d.dbt_valid_to >= %(end)s)
    ), stranded AS (
        SELECT c.id, c.{ref} AS parent_id, d.deleted_at AS changed_at, d.user_id, false AS cleared
        FROM {child} AS c JOIN parents_deleted AS d ON d.id = c.{ref}
        WHERE c.dbt_valid_from < %(end)s AND (c.dbt_valid_to IS NULL OR c.dbt_valid_to >= %(end)s)
          AND {child_deleted} IS NOT TRUE
    ), cleared AS (
        SELECT c.id, p.{ref} AS parent_id, d.deleted_at AS changed_at, d.user_id, true AS cleared
        FROM {child} AS c
        JOIN {child} AS p ON p.id = c.id AND p.dbt_valid_to = c.dbt_valid_from
        JOIN parents_deleted AS d ON d.id = p.{ref} AND d.deleted_at = c.dbt_valid_from
        WHERE c.dbt_valid_from >= %(start)s AND c.dbt_valid_from < %(end)s
          AND (c.dbt_valid_to IS NULL OR c.dbt_valid_to >= %(end)s)
          AND {child_deleted} IS NOT TRUE AND c.{ref} IS NULL
    ), candidates AS (
        SELECT DISTINCT ON (id) * FROM (
            SELECT *, 0 AS rank FROM stranded UNION ALL SELECT *, 0 AS rank FROM cleared
            UNION ALL SELECT *, 1 AS rank FROM moved
        ) AS u ORDER BY id, rank
    ), orphans AS (
        SELECT k.*, CASE WHEN k.rank = 0 THEN 'parent_deleted' ELSE 'dangling' END AS cause,
               pv.id IS NULL AS parent_missing
        FROM candidates AS k
        LEFT JOIN LATERAL (
            SELECT pp.id, {parent_deleted_pp} AS deleted FROM {parent} AS pp
            WHERE pp.id = k.parent_id AND pp.dbt_valid_from < %(end)s
            ORDER BY pp.dbt_valid_from DESC LIMIT 1
        ) AS pv ON true
        WHERE pv.id IS NULL OR pv.deleted IS TRUE
    )
    SELECT cause, count(*) AS n, count(*) FILTER (WHERE parent_missing) AS parents_missing,
           count(*) FILTER (WHERE cleared) AS lookups_cleared,
           min(changed_at) AS first_change, max(changed_at) AS last_change,
           array_agg(id ORDER BY id) AS ids,
           array_agg(DISTINCT parent_id) AS parent_ids,
           count(DISTINCT user_id) AS users, mode() WITHIN GROUP (ORDER BY user_id) AS top_user,
           (array_agg(jsonb_build_array(id, parent_id, cleared) ORDER BY changed_at, id))[1:{sample}] AS sample
    FROM orphans
    GROUP BY cause
    """
)


def detect_orphans(
    conn: psycopg.Connection[Any],
    object_name: str,
    start: datetime,
    end: datetime,
    thresholds: AnomalyThresholds | Mapping[str, Any] | None = None,
    *,
    references: Mapping[str, str] | None = None,
) -> list[Finding]:
    """Children left pointing at parents deleted or missing in the backup, new in this window.

    Two findings per lookup at most: `orphans` when the parents were deleted in the window (the restore
    brings the parents back), `dangling_references` when children were set in the window to point at
    parents that are deleted or were never backed up (the restore puts the lookup back). Run it after the
    parent objects' history of the window is snapshotted too, or fresh parents look missing.
    """
    resolved = resolve_thresholds(thresholds, object_name)
    if not resolved.enabled("orphans"):
        return []
    child_columns = set(history_columns(conn, object_name))
    findings: list[Finding] = []
    live: int | None = None
    with analytics(conn):
        for column, parent_object in reference_columns(conn, object_name, references).items():
            limits = resolved.for_field(column).orphans
            parent_columns = [name for name, _ in table_columns(conn, HISTORY_SCHEMA, table_name(parent_object))]
            if not limits.enabled or not parent_columns:
                continue
            present = set(parent_columns)
            query = _ORPHANS.format(
                ref=ident(column),
                child=_history(object_name),
                parent=_history(parent_object),
                child_user=_column_or_null("c", "lastmodifiedbyid", child_columns),
                child_deleted=_column_or_null("c", "isdeleted", child_columns, "boolean"),
                parent_user=_column_or_null("d", "lastmodifiedbyid", present),
                parent_deleted=_column_or_null("d", "isdeleted", present, "boolean"),
                parent_deleted_pp=_column_or_null("pp", "isdeleted", present, "boolean"),
                sample=sql.Literal(SAMPLE_SIZE),
            )
            with conn.cursor(row_factory=dict_row) as cursor:
                rows = cursor.execute(query, {"start": start, "end": end}).fetchall()
            for row in rows:
                if row["n"] < limits.min_records:
                    continue
                if live is None:
                    live = _live_records(conn, object_name, start, child_columns)
                findings.append(
                    _orphan_finding(
                        object_name,
                        start,
                        end,
                        column,
                        parent_object,
                        parent_columns,
                        row,
                        limits.severity,
                        live,
                    )
                )
    return findings


def _live_records(conn: psycopg.Connection[Any], object_name: str, at: datetime, columns: set[str]) -> int:
    query = _STATS.format(history=_history(object_name), deleted=_column_or_null("h", "isdeleted", columns, "boolean"))
    return conn.execute(query, {"start": at, "end": at}).fetchone()[0]


def _orphan_finding(
    object_name: str,
    start: datetime,
    end: datetime,
    column: str,
    parent_object: str,
    parent_columns: Sequence[str],
    row: dict[str, Any],
    severity: Severity,
    live: int,
) -> Finding:
    parent_deleted = row["cause"] == "parent_deleted"
    parent_ids = tuple(sorted(p for p in row["parent_ids"] if p is not None))
    common = {
        "severity": severity,
        "object": object_name,
        "fields": (column,),
        "affected_count": row["n"],
        "share": row["n"] / max(live, row["n"], 1),
        "first_change": row["first_change"],
        "last_change": row["last_change"],
        "user_id": row["top_user"],
        "sample": tuple(
            SampleChange(child, {column: parent}, {column: None if cleared else parent})
            for child, parent, cleared in row["sample"]
        ),
        "record_ids": tuple(row["ids"]),
        "window_start": start,
        "window_end": end,
        "acted_alone": row["users"] <= 1,
        "live_records": live,
    }
    details = {
        "parent_object": parent_object,
        "parent_ids": len(parent_ids),
        "parents_missing": row["parents_missing"],
        "parents_deleted": row["n"] - row["parents_missing"],
        "users": row["users"],
    }
    if parent_deleted:
        restorable = tuple(c for c in parent_columns if not is_skipped_column(c) and c not in AUDIT_COLUMNS)
        return Finding(
            detector="orphans",
            restore_fields=restorable,
            restore_object=parent_object,
            restore_record_ids=parent_ids,
            restore_deleted=True,
            details=details | {"cause": "parents deleted in the window", "lookups_cleared": row["lookups_cleared"]},
            **common,
        )
    return Finding(
        detector="dangling_references",
        restore_fields=(column,),
        details=details | {"cause": "lookups set in the window to parents deleted or missing in the backup"},
        **common,
    )


def without_lookups_cleared_by_deletions(
    conn: psycopg.Connection[Any], object_name: str, findings: list[Finding]
) -> list[Finding]:
    """Mass-nulling findings less the lookups that the deletion of their parent cleared: the orphans finding
    reports those (its restore brings the parents back, which puts the lookups back); restoring the lookup alone
    would point it at a deleted record, which Salesforce refuses (`ENTITY_IS_DELETED`)."""
    cleared: dict[str, set[str]] = {}
    for f in findings:
        if f.detector == "orphans" and f.details.get("lookups_cleared"):
            cleared.setdefault(f.fields[0], set()).update(f.record_ids)
    if not cleared:
        return findings
    kept = []
    for f in findings:
        gone = cleared.get(f.fields[0], set()) if f.detector == "mass_nulling" and len(f.fields) == 1 else set()
        rest = tuple(i for i in f.record_ids if i not in gone)
        if len(rest) == len(f.record_ids):
            kept.append(f)
        elif rest:
            kept.append(
                replace(
                    f,
                    record_ids=rest,
                    affected_count=len(rest),
                    share=f.share * len(rest) / len(f.record_ids),
                    sample=tuple(s for s in f.sample if s.record_id not in gone),
                    details={**f.details, "cleared_by_parent_deletion": len(f.record_ids) - len(rest)},
                )
            )
    return kept


# ------------------------------------------------------------------------------------------ all of it
def user_names_from_backup(conn: psycopg.Connection[Any], user_ids: Sequence[str]) -> dict[str, str]:
    """Names of users from the backup's own `User` mirror, when User is backed up (else nothing)."""
    present = {name for name, _ in table_columns(conn, "salesforce", "user")}
    wanted = [u for u in user_ids if u]
    if "name" not in present or "id" not in present or not wanted:
        return {}
    query = sql.SQL("SELECT id, name FROM {} WHERE id = ANY(%s)").format(qualified("salesforce", "user"))
    return {record_id: name for record_id, name in conn.execute(query, (wanted,)).fetchall() if name}
