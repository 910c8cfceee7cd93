"""History retention: keep every version for a while, then thin the history to one version per day, then one
per month, and drop what is older than a maximum age.

The history tables are dbt snapshots (SCD-2): a version is valid from `dbt_valid_from` (its SystemModstamp) to
`dbt_valid_to` (the next version's). Thinning keeps, per record and per day (or month), the LAST version of
the period (its state at the end of the day) and stretches the previous kept version's `dbt_valid_to` to the
next kept version's `dbt_valid_from`, so validity stays gap-free and non-overlapping: an as-of query inside
a thinned period answers with the state last kept before it. Kept versions keep their own `dbt_valid_from`
and the current version (valid_to null) is never touched, so dbt's next snapshot compares as before.

Always kept: the latest version of every record, and every version of a record an incident or a restore
plan refers to (so an investigation or a rehearsal still finds what it looked at).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from sf_pipeline.privacy.errors import PrivacySettingsError
from sf_pipeline.warehouse.names import HISTORY_SCHEMA, qualified, table_name
from sf_pipeline.warehouse.schema import table_columns

DEFAULT_SCHEDULE = "30 3 * * *"
_KEYS = ("keep_all_days", "daily_until_days", "monthly_until_days")
# Thinning removing at least this share of a history's versions rewrites the table rather than deleting in place.
REWRITE_SHARE = 0.25


@dataclass(frozen=True)
class RetentionPolicy:
    """Ages in days: every version younger than keep_all_days; then one per day until daily_until_days; then
    one per month until monthly_until_days (the maximum age; None keeps monthly versions forever)."""

    keep_all_days: int = 30
    daily_until_days: int = 365
    monthly_until_days: int | None = None

    def resolution(self, instant: datetime, now: datetime) -> str:
        """What the history holds for `instant`, in words: the resolution of its period."""
        age = now - instant
        if age < timedelta(days=self.keep_all_days):
            return "every version (no thinning yet)"
        if age < timedelta(days=self.daily_until_days):
            return f"one version per day (older than {self.keep_all_days} days)"
        if self.monthly_until_days is None or age < timedelta(days=self.monthly_until_days):
            return f"one version per month (older than {self.daily_until_days} days)"
        return f"beyond the maximum age ({self.monthly_until_days} days): only each record's latest version"

    def periods(self, now: datetime) -> str:
        """The history's resolution over time, in words with dates (for a record's whole history)."""
        day = "%Y-%m-%d"
        all_from, daily_from = now - timedelta(days=self.keep_all_days), now - timedelta(days=self.daily_until_days)
        parts = [
            f"every version since {all_from:{day}}",
            f"one version per day from {daily_from:{day}} to {all_from:{day}}",
        ]
        if self.monthly_until_days is None:
            parts.append(f"one version per month before {daily_from:{day}}")
        else:
            oldest = now - timedelta(days=self.monthly_until_days)
            parts.append(
                f"one version per month from {oldest:{day}} to {daily_from:{day}}, none older but each record's latest"
            )
        return "; ".join(parts)


@dataclass(frozen=True)
class RetentionSettings:
    """The settings file's `retention:` block (contract, README "Privacy")."""

    default: RetentionPolicy
    objects: Mapping[str, RetentionPolicy] = field(default_factory=dict)  # lower-cased object -> override
    schedule: str = DEFAULT_SCHEDULE

    def policy(self, sobject: str) -> RetentionPolicy:
        return self.objects.get(sobject.lower(), self.default)

    @classmethod
    def from_dict(cls, data: Any) -> RetentionSettings | None:
        if data is None:
            return None
        if not isinstance(data, Mapping):
            raise PrivacySettingsError(f"retention must be a mapping ({', '.join(_KEYS)}, objects, schedule)")
        unknown = set(data) - {*_KEYS, "objects", "schedule"}
        if unknown:
            raise PrivacySettingsError(
                f"retention: unknown keys {', '.join(sorted(map(str, unknown)))}; the keys "
                f"are {', '.join(_KEYS)}, objects, schedule"
            )
        default = _policy(data, RetentionPolicy(), "retention")
        objects = {}
        raw = data.get("objects") or {}
        if not isinstance(raw, Mapping):
            raise PrivacySettingsError(
                "retention.objects must map an object to its own ages, e.g. {Case: {keep_all_days: 7}}"
            )
        for name, override in raw.items():
            if not isinstance(override, Mapping) or set(override) - set(_KEYS):
                raise PrivacySettingsError(f"retention.objects.{name} takes {', '.join(_KEYS)}, got {override!r}")
            objects[str(name).lower()] = _policy(override, default, f"retention.objects.{name}")
        schedule = data.get("schedule", DEFAULT_SCHEDULE)
        if not isinstance(schedule, str) or len(schedule.split()) != 5:
            raise PrivacySettingsError(f"retention.schedule must be a cron expression, got {schedule!r}")
        return cls(default=default, objects=objects, schedule=schedule)


def _policy(data: Mapping[str, Any], base: RetentionPolicy, where: str) -> RetentionPolicy:
    values: dict[str, Any] = {k: getattr(base, k) for k in _KEYS}
    for key in _KEYS:
        if key in data:
            value = data[key]
            if value is None and key == "monthly_until_days":
                values[key] = None
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise PrivacySettingsError(f"{where}.{key} must be a whole number of days, got {value!r}")
            values[key] = value
    policy = RetentionPolicy(**values)
    if policy.daily_until_days < policy.keep_all_days or (
        policy.monthly_until_days is not None and policy.monthly_until_days < policy.daily_until_days
    ):
        raise PrivacySettingsError(
            f"{where}: the ages must grow: keep_all_days <= daily_until_days <= monthly_until_days, got {values}"
        )
    return policy


@dataclass
class ObjectRetention:
    object: str
    versions_before: int = 0
    removed: int = 0
    stretched: int = 0  # kept versions whose dbt_valid_to now reaches the next kept version
    protected_records: int = 0
    bytes_removed: int = 0  # the removed rows' size (in place: reusable after VACUUM; rewrite: given back)
    method: str = ""  # "in place" or "rewrite" (apply_retention's doc), empty when nothing was removed
    batches: int = 0  # id ranges decided (each about BATCH_VERSIONS versions)
    table_bytes_before: int = 0
    table_bytes_after: int = 0
    seconds: float = 0.0


def protected_ids(conn: psycopg.Connection[Any]) -> list[str]:
    """Records an incident (its ids and sample) or a restore plan (its items) refers to."""
    ids: set[str] = set()
    if conn.execute("SELECT to_regclass('sf_pipeline.incidents')").fetchone()[0] is not None:
        ids.update(
            r[0]
            for r in conn.execute(
                "SELECT jsonb_array_elements_text(coalesce(report->'record_ids', '[]'::jsonb)) FROM sf_pipeline.incidents "
                "UNION SELECT s->>'id' FROM sf_pipeline.incidents, "
                "jsonb_array_elements(coalesce(report->'sample', '[]'::jsonb)) s"
            )
        )
    # every record an incident's restore selects (report->'record_ids' holds at most 10,000 of them)
    if conn.execute("SELECT to_regclass('sf_pipeline.incident_records')").fetchone()[0] is not None:
        ids.update(r[0] for r in conn.execute("SELECT DISTINCT record_id FROM sf_pipeline.incident_records"))
    if conn.execute("SELECT to_regclass('sf_pipeline.restore_items')").fetchone()[0] is not None:
        ids.update(r[0] for r in conn.execute("SELECT DISTINCT record_id FROM sf_pipeline.restore_items"))
    ids.discard(None)  # type: ignore[arg-type]
    return sorted(ids)


# Versions decided per batch: a batch is a range of record ids read in (id, dbt_valid_from) order through the
# history's index, so deciding needs no sort, and memory and temporary space are bounded by the batch.
BATCH_VERSIONS = 200_000


def apply_retention(
    conn: psycopg.Connection[Any],
    sobject: str,
    policy: RetentionPolicy,
    now: datetime,
    *,
    protected: Sequence[str] = (),
    dry_run: bool = False,
    method: str = "auto",
    batch_versions: int = BATCH_VERSIONS,
) -> ObjectRetention:
    """Thin one object's history by `policy` at instant `now`; see the module doc.

    The history is decided in batches of about `batch_versions` versions (whole records, by id range).
    `method`: "in place" deletes each batch's thinned versions and stretches its kept ones, one transaction per
    batch (each leaves every record's history valid; a snapshot writing meanwhile waits for the batch, not the
    whole run); the space is reusable by PostgreSQL after VACUUM, which autovacuum or the next VACUUM does, the
    file does not shrink. "rewrite" copies each batch's kept versions aside, then truncates the table, writes
    them back and rebuilds its indexes, in one transaction (the file shrinks at once: the space goes back to the
    operating system). "auto" counts first (a dry pass) and rewrites when at least REWRITE_SHARE of the versions go.
    """
    if method not in ("auto", "in place", "rewrite"):
        raise ValueError(f"method must be auto, in place or rewrite, not {method!r}")
    started = time.perf_counter()
    out = ObjectRetention(sobject, protected_records=len(protected))
    regclass = f"{HISTORY_SCHEMA}.{table_name(sobject)}"
    h = qualified(HISTORY_SCHEMA, table_name(sobject))
    if conn.execute("SELECT to_regclass(%s)", (regclass,)).fetchone()[0] is None:
        return out
    monthly_from = now - timedelta(days=policy.monthly_until_days) if policy.monthly_until_days is not None else None
    params = {
        "all_from": now - timedelta(days=policy.keep_all_days),
        "daily_from": now - timedelta(days=policy.daily_until_days),
        "monthly_from": monthly_from,
        "protected": list(protected),
    }
    out.table_bytes_before = _size(conn, regclass)
    if dry_run or method == "auto":
        _count(conn, h, params, batch_versions, out)
        if dry_run or not out.removed:
            out.table_bytes_after = out.table_bytes_before
            out.seconds = time.perf_counter() - started
            return out
        method = "rewrite" if out.removed >= REWRITE_SHARE * out.versions_before else "in place"
    indexes = _plain_indexes(conn, sobject) if method == "rewrite" else None
    out.versions_before = out.removed = out.stretched = out.batches = 0
    if indexes is None:
        _thin_in_place(conn, h, params, batch_versions, out)
    else:
        _thin_by_rewrite(conn, h, sobject, indexes, params, batch_versions, out)
    if not conn.autocommit:
        conn.commit()
    out.table_bytes_after = _size(conn, regclass)
    if out.method == "rewrite":  # what the file gave back (the rows' own size is not measured on this path)
        out.bytes_removed = max(0, out.table_bytes_before - out.table_bytes_after)
    out.seconds = time.perf_counter() - started
    return out


def _size(conn: psycopg.Connection[Any], regclass: str) -> int:
    return conn.execute("SELECT pg_total_relation_size(%s::regclass)", (regclass,)).fetchone()[0]


# Whether a version stays, from its record's next version (`next_from`, null for the latest): the latest; every
# version younger than all_from; a protected record's; from daily_from on, the day's last (the next is on another
# day); before daily_from and not older than monthly_from, the month's last before daily_from. One window
# (lead over id, dbt_valid_from) decides, which the (id, dbt_valid_from) index delivers in order.
_KEEP = """(next_from IS NULL
           OR dbt_valid_from >= %(all_from)s
           OR id = ANY(%(protected)s)
           OR (dbt_valid_from >= %(daily_from)s
               AND date_trunc('day', next_from, 'UTC') <> date_trunc('day', dbt_valid_from, 'UTC'))
           OR ((%(monthly_from)s::timestamptz IS NULL OR dbt_valid_from >= %(monthly_from)s)
               AND dbt_valid_from < %(daily_from)s
               AND (next_from >= %(daily_from)s
                    OR date_trunc('month', next_from, 'UTC') <> date_trunc('month', dbt_valid_from, 'UTC'))))"""


def _decided(h: sql.Composable, columns: sql.Composable) -> sql.Composed:
    """The versions of one batch (ids in (%(lo)s, %(hi)s], hi null: to the end), with `keep` and `next_kept` (the
    next kept version's dbt_valid_from, for kept versions: where their validity now ends)."""
    return sql.SQL("""
        SELECT *, CASE WHEN keep THEN lead(dbt_valid_from) OVER (
                   PARTITION BY id, keep ORDER BY dbt_valid_from) END AS next_kept
        FROM (SELECT *, {keep} AS keep
              FROM (SELECT {columns}, lead(dbt_valid_from) OVER (PARTITION BY id ORDER BY dbt_valid_from) AS next_from
                    FROM {h} WHERE id > %(lo)s AND (%(hi)s::text IS NULL OR id <= %(hi)s)) v) d""").format(
        columns=columns, keep=sql.SQL(_KEEP), h=h
    )


def _batches(conn: psycopg.Connection[Any], h: sql.Composable, batch_versions: int):
    """(lo, hi] id ranges of about batch_versions versions each (whole records), the last with hi None; found
    through the (id, dbt_valid_from) index as the work goes (a batch's deletions do not move the next bound)."""
    lo = ""
    while True:
        row = conn.execute(
            sql.SQL("SELECT id FROM {} WHERE id > %s ORDER BY id OFFSET %s LIMIT 1").format(h), (lo, batch_versions - 1)
        ).fetchone()
        hi = row[0] if row else None
        yield lo, hi
        if hi is None:
            return
        lo = hi


def _count(
    conn: psycopg.Connection[Any], h: sql.Composable, params: dict[str, Any], batch_versions: int, out: ObjectRetention
) -> None:
    """What thinning would remove, batch by batch, changing nothing."""
    query = sql.SQL(
        "SELECT count(*), count(*) FILTER (WHERE NOT keep), count(*) FILTER (WHERE keep AND next_kept "
        "IS NOT NULL AND next_kept IS DISTINCT FROM dbt_valid_to) FROM ({}) b"
    ).format(_decided(h, sql.SQL("id, dbt_valid_from, dbt_valid_to")))
    for lo, hi in _batches(conn, h, batch_versions):
        total, removed, stretched = conn.execute(query, {**params, "lo": lo, "hi": hi}).fetchone()
        out.versions_before += total
        out.removed += removed
        out.stretched += stretched
        out.batches += 1
    if not conn.autocommit:
        conn.commit()


def _thin_in_place(
    conn: psycopg.Connection[Any], h: sql.Composable, params: dict[str, Any], batch_versions: int, out: ObjectRetention
) -> None:
    """Per batch, one transaction: lock out writers, decide, delete the thinned versions and stretch the kept
    ones (both by ctid: the decision and the change see the same rows under the lock)."""
    out.method = "in place"
    decided = _decided(h, sql.SQL("ctid AS tid, id, dbt_valid_from, dbt_valid_to"))
    lo: str | None = ""
    while lo is not None:
        with conn.transaction():
            # a snapshot writing meanwhile waits for this batch (readers do not)
            conn.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(h))
            row = conn.execute(
                sql.SQL("SELECT id FROM {} WHERE id > %s ORDER BY id OFFSET %s LIMIT 1").format(h),
                (lo, batch_versions - 1),
            ).fetchone()
            hi = row[0] if row else None
            conn.execute("DROP TABLE IF EXISTS retention_batch")
            conn.execute(
                sql.SQL("CREATE TEMPORARY TABLE retention_batch ON COMMIT DROP AS {}").format(decided),
                {**params, "lo": lo, "hi": hi},
            )
            out.versions_before += conn.execute("SELECT count(*) FROM retention_batch").fetchone()[0]
            removed, size = conn.execute(
                sql.SQL(
                    "WITH gone AS (DELETE FROM {h} h WHERE ctid = ANY(ARRAY(SELECT tid FROM retention_batch WHERE NOT "
                    "keep)) RETURNING pg_column_size(h.*) AS size) SELECT count(*), coalesce(sum(size), 0) FROM gone"
                ).format(h=h)
            ).fetchone()
            out.removed += removed
            out.bytes_removed += int(size)
            out.stretched += conn.execute(
                sql.SQL(
                    "UPDATE {h} h SET dbt_valid_to = b.next_kept FROM retention_batch b "
                    "WHERE h.ctid = ANY(ARRAY(SELECT tid FROM retention_batch WHERE keep AND next_kept IS NOT NULL "
                    "AND next_kept IS DISTINCT FROM dbt_valid_to)) AND h.ctid = b.tid"
                ).format(h=h)
            ).rowcount
            out.batches += 1
        lo = hi


def _plain_indexes(conn: psycopg.Connection[Any], sobject: str) -> list[str] | None:
    """CREATE INDEX statements of the history table's indexes; None when one backs a constraint (a key), which
    a rewrite would have to re-add as a constraint: such a table is thinned in place."""
    rows = conn.execute(
        "SELECT pg_get_indexdef(i.indexrelid), EXISTS (SELECT FROM pg_constraint c WHERE c.conindid = i.indexrelid) "
        "FROM pg_index i WHERE i.indrelid = %s::regclass",
        (f"{HISTORY_SCHEMA}.{table_name(sobject)}",),
    ).fetchall()
    if any(constraint for _, constraint in rows):
        return None
    return [definition for definition, _ in rows]


def _thin_by_rewrite(
    conn: psycopg.Connection[Any],
    h: sql.Composable,
    sobject: str,
    indexes: list[str],
    params: dict[str, Any],
    batch_versions: int,
    out: ObjectRetention,
) -> None:
    """Copy the kept versions (their validity stretched) aside batch by batch, TRUNCATE, write them back,
    rebuild the indexes; one transaction.

    Deleting millions of versions writes each one's deletion and leaves the file as large as before; when most
    of a history goes, writing back what stays is cheaper, and TRUNCATE gives the space back to the operating
    system at once. The table itself (owner, grants, views over it, dbt's relation) is the same table. The lock
    is taken first, so no snapshot writes between the copy and the truncation; TRUNCATE then holds an ACCESS
    EXCLUSIVE lock to the end of the transaction: reads of this history wait for the write-back.
    """
    out.method = "rewrite"
    columns = [name for name, _ in table_columns(conn, HISTORY_SCHEMA, table_name(sobject))]
    listed = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    picked = sql.SQL(", ").join(
        sql.SQL("coalesce(next_kept, dbt_valid_to)") if c == "dbt_valid_to" else sql.Identifier(c) for c in columns
    )
    with conn.transaction():
        conn.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(h))
        conn.execute(
            sql.SQL("CREATE TEMPORARY TABLE retention_kept ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
                listed, h
            )
        )
        copy = sql.SQL(
            "WITH d AS ({decided}), kept AS (INSERT INTO retention_kept ({listed}) SELECT {picked} FROM d "
            "WHERE keep) SELECT count(*), count(*) FILTER (WHERE NOT keep), count(*) FILTER (WHERE keep "
            "AND next_kept IS NOT NULL AND next_kept IS DISTINCT FROM dbt_valid_to) FROM d"
        ).format(decided=_decided(h, listed), listed=listed, picked=picked)
        for lo, hi in _batches(conn, h, batch_versions):
            total, removed, stretched = conn.execute(copy, {**params, "lo": lo, "hi": hi}).fetchone()
            out.versions_before += total
            out.removed += removed
            out.stretched += stretched
            out.batches += 1
        names = [
            r[0]
            for r in conn.execute(
                "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %s::regclass",
                (f"{HISTORY_SCHEMA}.{table_name(sobject)}",),
            )
        ]
        for name in names:
            conn.execute(sql.SQL("DROP INDEX {}").format(qualified(HISTORY_SCHEMA, name)))
        conn.execute(sql.SQL("TRUNCATE {}").format(h))
        conn.execute(
            sql.SQL("INSERT INTO {h} ({listed}) SELECT {listed} FROM retention_kept").format(h=h, listed=listed)
        )
        for definition in indexes:
            conn.execute(definition)
        conn.execute(sql.SQL("ANALYZE {}").format(h))


def retention_summary(results: Sequence[ObjectRetention]) -> dict[str, Any]:
    return {
        r.object: {
            "versions_before": r.versions_before,
            "removed": r.removed,
            "stretched": r.stretched,
            "bytes_removed": r.bytes_removed,
            "table_bytes_before": r.table_bytes_before,
            "table_bytes_after": r.table_bytes_after,
            "method": r.method or "nothing to remove",
            "batches": r.batches,
            "seconds": round(r.seconds, 2),
        }
        for r in results
    }


def retention_metadata(results: Sequence[ObjectRetention], protected_records: int, dry_run: bool) -> dict[str, Any]:
    """What a retention run shows (plain values, sf_pipeline.metadata): versions and bytes removed over every
    object, the records kept whole for incidents and restore plans, and per object its `retention_summary`."""
    return {
        "dry_run": dry_run,
        "versions_removed": sum(r.removed for r in results),
        # the removed versions' bytes: given back to the operating system by a rewrite, reusable for new versions
        # after VACUUM when thinned in place (objects.<name>.method says which)
        "bytes_removed": sum(r.bytes_removed for r in results),
        "table_bytes_before": sum(r.table_bytes_before for r in results),
        "table_bytes_after": sum(r.table_bytes_after for r in results),
        "protected_records": protected_records,
        "objects": retention_summary(results),
    }


def _retention_settings(settings_path: str | None) -> RetentionSettings | None | str:
    from sf_pipeline.settings import SettingsError, load_settings

    try:
        return RetentionSettings.from_dict(load_settings(settings_path).privacy.get("retention"))
    except (SettingsError, PrivacySettingsError) as exc:
        return f"history resolution unknown (settings: {exc})"


def history_resolution_note(sobject: str, now: datetime, settings_path: str | None = None) -> str:
    """The resolution of every period of `sobject`'s history (for `sf-pipeline history`)."""
    retention = _retention_settings(settings_path)
    if isinstance(retention, str):
        return retention
    if retention is None:
        return "history resolution: every version (no retention configured)"
    return f"history resolution of {sobject} (retention): {retention.policy(sobject).periods(now)}"


def resolution_note(
    sobject: str, instant: datetime, now: datetime | None = None, settings_path: str | None = None
) -> str:
    """The resolution of the history at `instant` for `sobject`, as the settings file's retention makes it
    (for point-in-time answers: "one version per day" means the state at the end of the day before)."""
    retention = _retention_settings(settings_path)
    if isinstance(retention, str):
        return retention
    if retention is None:
        return "history resolution: every version (no retention configured)"
    moment = now or datetime.now(instant.tzinfo)
    return f"history resolution at {instant.isoformat()}: {retention.policy(sobject).resolution(instant, moment)}"
