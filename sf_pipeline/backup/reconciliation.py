"""Finding every vanished record: the delete log, hard-delete jobs, and an id reconciliation by counts.

`find_differences` is the reconciliation itself, a plain function over the mirror's sorted ids and two
callables that ask the org: it compares `COUNT()` per id range in the org and in the mirror and descends only
into ranges whose counts differ (ids sort by creation: DESIGN.md "Completeness"), and reads the org's ids of a
range only when that is cheaper than counting its parts. Each step picks what costs the fewest API calls:
counting a range's parts (one call per part but the last, whose count is the parent's minus the others), or
reading the ids of the differing ranges (REST, 2,000 ids a call; Bulk API 2.0, 50,000 ids a page plus the job's
own calls).

`learn_vanished` is the per-window glue the mirror asset calls after loading a window; no Dagster here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from sf_pipeline.salesforce import SalesforceClient
from sf_pipeline.salesforce.deletions import DeleteLog, count_ids, delete_log, hard_delete_jobs, ids_in_ranges
from sf_pipeline.warehouse.erased import erased_in_org, mark_gone_from_org
from sf_pipeline.warehouse.run_state import WindowCounts
from sf_pipeline.warehouse.schema import MirrorTable
from sf_pipeline.warehouse.vanished import (
    VanishedRecord,
    ensure_vanished_columns,
    flag_window_deletions,
    last_reconciliation,
    mark_vanished,
    mirror_rows,
    reconcilable_count,
    reconcilable_ids,
    record_reconciliation,
)

Bound = str | None  # an id range is [low, high); None is open
REST_PAGE = 2_000
BULK_PAGE = 50_000
BULK_OVERHEAD = 4  # create, poll, delete, and a second poll on a loaded org
BULK_ABOVE = 10_000
FANOUTS = (2, 4, 8, 16, 32)


IDS_PER_CALL_WORTH = 25_000  # ids read weigh like one more API call per this many (time, bytes, no id export)


def fetch_cost(rows: int, ranges: int) -> float:
    """API calls to read the org's ids of `ranges` ranges holding about `rows` ids, plus the weight of the ids
    themselves: of two ways costing the same calls, the one reading fewer ids wins (no needless id export)."""
    weight = rows / IDS_PER_CALL_WORTH
    if rows > BULK_ABOVE:
        return BULK_OVERHEAD + math.ceil(rows / BULK_PAGE) + weight
    return (max(ranges, math.ceil(rows / REST_PAGE)) if rows else ranges) + weight


@dataclass
class Differences:
    """What a reconciliation found: ids in the mirror the org no longer holds (`vanished`), ids the org holds
    that the mirror lacks (`missing_from_backup`), and what it cost."""

    vanished: list[str] = field(default_factory=list)
    missing_from_backup: list[str] = field(default_factory=list)
    org_ids: int = 0
    count_calls: int = 0
    fetched_ids: int = 0


@dataclass
class _Range:
    low: Bound
    high: Bound
    first: int  # index of the first mirror id in the range
    stop: int  # index after the last
    org_count: int

    @property
    def mirror_count(self) -> int:
        return self.stop - self.first


def find_differences(
    mirror_ids: Sequence[str],
    count_org: Callable[[Bound, Bound], int],
    fetch_org_ids: Callable[[list[tuple[Bound, Bound]], int], set[str]],
    total: int | None = None,
) -> Differences:
    """Compare the org's ids with `mirror_ids` (sorted in byte order) by counts, descending where they differ.

    `count_org(low, high)` counts the org's ids in [low, high); `fetch_org_ids(ranges, expected)` returns the
    org's ids in those ranges. Ranges are cut at mirror ids, so the mirror side is an index difference.
    `total`: the org's count over every id when already known (the run's preflight asked it).
    """
    result = Differences()
    if total is None:
        total = count_org(None, None)
        result.count_calls += 1
    result.org_ids = total
    pending = [_Range(None, None, 0, len(mirror_ids), total)]
    if total == len(mirror_ids):
        # Equal totals: nothing vanished, unless as many records appeared as vanished (a backup hole and a
        # hard delete at once); the backup_complete check's windows and counts catch the hole.
        return result
    while pending:
        rows = sum(r.mirror_count for r in pending)
        known = sum(abs(r.org_count - r.mirror_count) for r in pending)
        now = fetch_cost(max(rows, sum(r.org_count for r in pending)), len(pending))
        best: tuple[float, int] | None = None
        for k in FANOUTS:
            parts = len(pending) * k
            differing = min(known, parts)
            later = fetch_cost(math.ceil(rows * differing / parts), differing)
            cost = len(pending) * (k - 1) + later
            if cost < now and (best is None or cost < best[0]) and all(r.mirror_count >= k for r in pending):
                best = (cost, k)
        if best is None:
            break
        k = best[1]
        split: list[_Range] = []
        for r in pending:
            step = r.mirror_count / k
            cuts = [r.first + round(step * i) for i in range(1, k)]
            bounds = [r.low, *(mirror_ids[c] for c in cuts), r.high]
            starts = [r.first, *cuts, r.stop]
            counted = 0
            for i in range(k):
                if i < k - 1:
                    n = count_org(bounds[i], bounds[i + 1])
                    result.count_calls += 1
                    counted += n
                else:
                    n = r.org_count - counted
                part = _Range(bounds[i], bounds[i + 1], starts[i], starts[i + 1], n)
                if part.org_count != part.mirror_count:
                    split.append(part)
        pending = split
    if not pending:
        return result
    expected = max(sum(r.mirror_count for r in pending), sum(r.org_count for r in pending))
    org = fetch_org_ids([(r.low, r.high) for r in pending], expected)
    result.fetched_ids = len(org)
    for r in pending:
        mine = set(mirror_ids[r.first : r.stop])
        theirs = {i for i in org if (r.low is None or i >= r.low) and (r.high is None or i < r.high)}
        result.vanished += sorted(mine - theirs)
        result.missing_from_backup += sorted(theirs - mine)
    return result


# ----------------------------------------------------------------- the per-window glue
@dataclass(frozen=True)
class ReconcileSettings:
    """`backup: reconcile:` in the settings file (README, "Vanished records")."""

    every_window_below: int = 200_000  # objects with fewer mirror rows are reconciled every window
    large_every_hours: float = 24.0  # larger ones when the last reconciliation is this old


@dataclass
class VanishedReport:
    """What one window learnt about vanished records, for the materialization's metadata."""

    flagged: dict[str, int] = field(default_factory=dict)  # cause -> rows flagged
    delete_log_ids: int = 0
    delete_log_covered: bool | None = None
    earliest_available: datetime | None = None
    reconciled: bool = False
    reconcile_reason: str = ""
    reconcile_calls: int = 0
    reconcile_seconds: float = 0.0
    missing_from_backup: int = 0
    vanished_ids: list[str] = field(default_factory=list)
    delete_log_skipped: bool = False
    erased_in_org: int = 0  # records erased on request that the org still holds: counted as known
    erased_gone_from_org: list[str] = field(default_factory=list)  # ... that the org no longer holds

    def as_metadata(self) -> dict[str, Any]:
        return {
            "vanished_flagged": ", ".join(f"{k}: {v}" for k, v in sorted(self.flagged.items())) or "none",
            "vanished_total": sum(self.flagged.values()),
            "delete_log_ids": self.delete_log_ids,
            "delete_log_coverage": (
                "not read: nothing changed (empty window, equal counts)"
                if self.delete_log_skipped
                else "not read"
                if self.delete_log_covered is None
                else "covers the window"
                if self.delete_log_covered
                else f"starts at {self.earliest_available.isoformat() if self.earliest_available else '?'}"
                ", after the window's start"
            ),
            "reconciled": self.reconciled,
            "reconcile_reason": self.reconcile_reason or "not due",
            "reconcile_api_calls": self.reconcile_calls,
            "reconcile_seconds": round(self.reconcile_seconds, 3),
            "missing_from_backup": self.missing_from_backup,
            "erased_still_in_org": self.erased_in_org,
            "erased_gone_from_org": len(self.erased_gone_from_org),
        }


def _count(flagged: dict[str, int], records: Sequence[VanishedRecord]) -> None:
    for r in records:
        flagged[r.cause] = flagged.get(r.cause, 0) + 1


def learn_vanished(
    client: SalesforceClient,
    conn: psycopg.Connection[Any],
    table: MirrorTable,
    sobject: str,
    start: datetime,
    end: datetime,
    settings: ReconcileSettings,
    *,
    first_load: bool,
    now: datetime | None = None,
    counts: WindowCounts | None = None,
) -> VanishedReport:
    """After a window is loaded: flag what queryAll reported deleted or merged, read the delete log for
    records purged before we saw them, and reconcile ids when due (or when the log no longer covers the
    window: then in full, whatever the schedule).

    `counts` (the run's preflight: the window's COUNT() and the org's COUNT() of records created before the
    window's end) makes an unchanged window free: when nothing is stamped in the window and the org counts as
    many records as the mirror holds, the reconciliation's first comparison is already answered (nothing
    vanished) and the delete log has nothing to add. When the counts differ, the ids are reconciled now,
    whatever the object's size."""
    found_at = now or datetime.now(UTC)
    report = VanishedReport()
    if ensure_vanished_columns(conn, table):
        table = _refreshed(conn, table)  # `table` listed every column before the ones just added
    report.flagged.update(flag_window_deletions(conn, table, start, end, found_at))
    if first_load:
        report.reconcile_reason = "first load: every record was just read"
        record_reconciliation(conn, sobject, _summary(end, report.reconcile_reason, found_at, 0, 0, 0, 0, 0, 0.0))
        return report

    mirror_total = reconcilable_count(conn, table, end) if counts is not None and counts.org_total is not None else None
    if mirror_total is not None:
        # records erased on request that the org still held at the last reconciliation are counted on the
        # mirror's side, as the reconciliation counts them: one the org has since removed makes the counts
        # differ, so the ids are reconciled and it is noted gone from the org
        mirror_total += len(erased_in_org(conn, sobject, end))
    if (
        counts is not None
        and counts.window_count == 0
        and mirror_total is not None
        and counts.org_total == mirror_total
    ):
        report.reconciled = True
        report.reconcile_reason = (
            f"counts equal: the org and the mirror hold {mirror_total:,} records created "
            "before the window's end, and none is stamped in the window"
        )
        report.delete_log_skipped = True
        record_reconciliation(
            conn, sobject, _summary(end, report.reconcile_reason, found_at, mirror_total, mirror_total, 0, 0, 0, 0.0)
        )
        return report
    counts_differ = counts is not None and mirror_total is not None and counts.org_total != mirror_total

    if "isdeleted" in table.column_types:
        log = delete_log(client, sobject, start, end)
    else:  # an object that cannot be deleted has no delete log (getDeleted: INVALID_TYPE_FOR_OPERATION)
        log = DeleteLog({}, None, covered=True)
    report.delete_log_covered = log.covered
    report.earliest_available = log.earliest_available
    report.delete_log_ids = len(log.deleted)
    rows = mirror_rows(conn, table, log.deleted)
    purged = [
        VanishedRecord(rid, "purged", when)
        for rid, when in log.deleted.items()
        if rid in rows and not rows[rid]["isdeleted"]
    ]
    mark_vanished(conn, table, purged, found_at, end)
    _count(report.flagged, purged)

    reason = ""
    if not log.covered:
        since = log.earliest_available.isoformat() if log.earliest_available else "a time after the last minutes"
        reason = (
            f"the org's delete log starts at {since}, after this object's last backup ({start.isoformat()}): "
            "deletions since may be unknown, so every id is reconciled"
        )
    else:
        size = conn.execute(f'SELECT count(*) FROM "{table.schema}"."{table.name}"').fetchone()[0]
        if size < settings.every_window_below:
            reason = f"every window ({size:,} records < reconcile.every_window_below {settings.every_window_below:,})"
        elif counts_differ:
            reason = (
                f"counts differ: the org holds {counts.org_total:,} records created before the window's end, "
                f"the mirror {mirror_total:,}"
            )
        else:
            last = last_reconciliation(conn, sobject)
            if last is None or found_at - last >= timedelta(hours=settings.large_every_hours):
                reason = (
                    f"scheduled: last reconciliation {last.isoformat() if last else 'never'}, every "
                    f"{settings.large_every_hours:g} h for objects of {settings.every_window_below:,}+ records"
                )
    if not reason:
        return report
    report.reconciled = True
    report.reconcile_reason = reason
    started, calls_before = time.perf_counter(), client.api_calls
    mirror_ids = reconcilable_ids(conn, table, end)
    # Records erased on request (sf_pipeline.erased_records) are not in the mirror, yet the org may still hold
    # them: counted on the mirror's side, they are neither a difference to descend into every window nor
    # "missing from the backup"; found gone from the org, they are noted so and counted on neither side.
    erased = erased_in_org(conn, sobject, end)
    report.erased_in_org = len(erased)
    if erased:
        mirror_ids = sorted({*mirror_ids, *erased})
    diff = find_differences(
        mirror_ids,
        lambda lo, hi: count_ids(client, sobject, lo, hi, end),
        lambda ranges, expected: ids_in_ranges(client, sobject, ranges, end, expected=expected),
    )
    erased_set = set(erased)
    report.erased_gone_from_org = [rid for rid in diff.vanished if rid in erased_set]
    if report.erased_gone_from_org:
        mark_gone_from_org(conn, sobject, report.erased_gone_from_org, found_at)
        report.erased_in_org -= len(report.erased_gone_from_org)
        diff.vanished = [rid for rid in diff.vanished if rid not in erased_set]
    diff.missing_from_backup = [rid for rid in diff.missing_from_backup if rid not in erased_set]
    vanished: list[VanishedRecord] = []
    if diff.vanished:
        by_job = {}
        for job in hard_delete_jobs(client, sobject):
            for rid in job.record_ids:
                by_job[rid] = job
        rows = mirror_rows(conn, table, diff.vanished)
        for rid in diff.vanished:
            job = by_job.get(rid)
            if job is not None:
                vanished.append(VanishedRecord(rid, "hard-deleted", job.finished_at, by=job.created_by or None))
            elif rows.get(rid, {}).get("isdeleted"):
                vanished.append(VanishedRecord(rid, "purged"))  # it was in the recycle bin; when it left is unknown
            elif not log.covered:
                # A record of this object deleted since the window began was physically deleted (the log's start
                # moved past it): deleted and purged before a backup saw it, at the latest at that start.
                vanished.append(VanishedRecord(rid, "purged", log.earliest_available, exact=False))
            else:
                vanished.append(VanishedRecord(rid, "unknown"))
        mark_vanished(conn, table, vanished, found_at, end)
        _count(report.flagged, vanished)
    report.reconcile_calls = client.api_calls - calls_before
    report.reconcile_seconds = time.perf_counter() - started
    report.missing_from_backup = len(diff.missing_from_backup)
    report.vanished_ids = diff.vanished
    record_reconciliation(
        conn,
        sobject,
        _summary(
            end,
            reason,
            found_at,
            len(mirror_ids),
            diff.org_ids,
            len(diff.vanished),
            len(diff.missing_from_backup),
            report.reconcile_calls,
            report.reconcile_seconds,
        ),
    )
    return report


def _refreshed(conn: psycopg.Connection[Any], table: MirrorTable) -> MirrorTable:
    from sf_pipeline.warehouse.schema import get_mirror_table

    return get_mirror_table(conn, table.object_name, table.schema)


def _summary(
    end: datetime,
    reason: str,
    finished: datetime,
    mirror_ids: int,
    org_ids: int,
    vanished: int,
    missing: int,
    calls: int,
    seconds: float,
) -> dict[str, Any]:
    return {
        "finished_at": finished,
        "window_end": end,
        "reason": reason,
        "mirror_ids": mirror_ids,
        "org_ids": org_ids,
        "vanished": vanished,
        "missing_from_backup": missing,
        "api_calls": calls,
        "seconds": seconds,
    }
