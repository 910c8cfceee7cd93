"""What `backup_complete` asks the org and the backup database about each object, as of the end of its newest
backed-up window, and how it judges it: plain functions, no Dagster here.

- counts: the mirror's live rows last changed before W (the newest backed-up window's end) against the org's
  live records last changed before W (`COUNT()` with query, not queryAll), allowing the records the org changed
  since W (`COUNT()` with queryAll: a record deleted or edited after W has left the org's side but is still
  live in the mirror until the next window);
- reconciliation: the last id reconciliation's result (`sf_pipeline.reconciliations`);
- delete log: whether the org's `/deleted/` log still reaches back to W (`earliestDateAvailable`).
All org questions of all objects go through Composite Batch (25 per call); a delete log that no longer covers W
is probed once more to learn where it starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from sf_pipeline.salesforce import SalesforceClient
from sf_pipeline.salesforce import soql as soql_names
from sf_pipeline.salesforce.deletions import delete_log, parse_sf_time
from sf_pipeline.salesforce.extract import soql_datetime
from sf_pipeline.warehouse.names import MIRROR_SCHEMA, qualified, table_name
from sf_pipeline.warehouse.schema import table_columns
from sf_pipeline.warehouse.vanished import STATE_SCHEMA

from .findings import Finding


class OrgEvidenceError(RuntimeError):
    """The org refused a question of `backup_complete` (a COUNT() or its delete log) for another reason than the
    delete log's coverage."""


@dataclass(frozen=True)
class OrgEvidence:
    """The org's side for one object as of `as_of` (W)."""

    live_before: int  # live records last changed before W
    changed_since: int  # records (deleted included) changed at or after W
    log_covered: bool | None  # None: the object has no delete log (cannot be deleted)
    log_earliest: datetime | None


@dataclass(frozen=True)
class LastReconciliation:
    finished_at: datetime
    window_end: datetime | None
    reason: str
    vanished: int
    missing_from_backup: int


def mirror_live_before(conn: psycopg.Connection[Any], sobject: str, as_of: datetime) -> int | None:
    """Live mirror rows last changed before `as_of`; None when the object has no mirror table yet."""
    columns = {name for name, _ in table_columns(conn, MIRROR_SCHEMA, table_name(sobject))}
    if not columns:
        return None
    where = [sql.SQL("systemmodstamp < %s")]
    if "isdeleted" in columns:
        where.append(sql.SQL("isdeleted IS NOT TRUE"))
    if "_sfp_gone" in columns:
        where.append(sql.SQL("_sfp_gone IS NOT TRUE"))
    query = sql.SQL("SELECT count(*) FROM {} WHERE {}").format(
        qualified(MIRROR_SCHEMA, table_name(sobject)), sql.SQL(" AND ").join(where)
    )
    return conn.execute(query, (as_of,)).fetchone()[0]


def last_reconciliation(conn: psycopg.Connection[Any], sobject: str) -> LastReconciliation | None:
    if conn.execute("SELECT to_regclass(%s)", (f"{STATE_SCHEMA}.reconciliations",)).fetchone()[0] is None:
        return None
    row = conn.execute(
        sql.SQL(
            "SELECT finished_at, window_end, reason, vanished, missing_from_backup FROM {}.reconciliations "
            "WHERE object = %s ORDER BY finished_at DESC LIMIT 1"
        ).format(sql.Identifier(STATE_SCHEMA)),
        (sobject,),
    ).fetchone()
    return LastReconciliation(row[0], row[1], row[2] or "", row[3] or 0, row[4] or 0) if row else None


def _sf_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def org_evidence(
    client: SalesforceClient, objects: Sequence[tuple[str, datetime, bool, str]], now: datetime | None = None
) -> dict[str, OrgEvidence]:
    """For each (object, W, deletable, stamp): the org's counts as of W (on `stamp`: SystemModstamp, or
    CreatedDate for an append-only object) and its delete log's coverage of W."""
    now = now or datetime.now(UTC)
    subrequests: list[dict[str, str]] = []
    for sobject, as_of, deletable, stamp in objects:
        name = soql_names.api_name(sobject, "object")
        on = soql_names.api_name(stamp, "field")
        live = f"SELECT COUNT() FROM {name} WHERE {on} < {soql_datetime(as_of)}"
        changed = f"SELECT COUNT() FROM {name} WHERE {on} >= {soql_datetime(as_of)}"
        subrequests.append({"method": "GET", "url": client.batch_url("query", {"q": live})})
        subrequests.append({"method": "GET", "url": client.batch_url("queryAll", {"q": changed})})
        if deletable:
            start = min(as_of, now - timedelta(minutes=2))
            subrequests.append(
                {
                    "method": "GET",
                    "url": client.batch_url(
                        f"sobjects/{name}/deleted/", {"start": _sf_time(start), "end": _sf_time(now)}
                    ),
                }
            )
    results = iter(client.composite_batch(subrequests))
    evidence: dict[str, OrgEvidence] = {}
    for sobject, _as_of, deletable, _stamp in objects:
        live, changed = next(results), next(results)
        for answer in (live, changed):
            if answer["statusCode"] >= 400:
                raise OrgEvidenceError(
                    f"{sobject}: the org refused a COUNT() of backup_complete "
                    f"({answer['statusCode']}): {str(answer.get('result'))[:300]}"
                )
        covered: bool | None = None
        earliest: datetime | None = None
        if deletable:
            log = next(results)
            if log["statusCode"] < 400:
                covered = True
                stamp = (log["result"] or {}).get("earliestDateAvailable")
                earliest = parse_sf_time(stamp) if stamp else None
            else:
                codes = {e.get("errorCode") for e in (log.get("result") or []) if isinstance(e, dict)}
                if "INVALID_REPLICATION_DATE" not in codes:
                    raise OrgEvidenceError(
                        f"{sobject}: the org refused its delete log ({log['statusCode']}): "
                        f"{str(log.get('result'))[:300]}"
                    )
                probe = delete_log(client, sobject, now - timedelta(minutes=2), now)  # where the log starts now
                covered, earliest = False, probe.earliest_available
        evidence[sobject] = OrgEvidence(
            int(live["result"]["totalSize"]), int(changed["result"]["totalSize"]), covered, earliest
        )
    return evidence


def counts_finding(as_of: datetime, mirror: int | None, org: OrgEvidence) -> Finding:
    """The mirror's live count equals the org's as of W, within the records the org changed since W."""
    at = f"{as_of:%Y-%m-%d %H:%M} UTC"
    if mirror is None:
        return Finding("counts", False, "no mirror table yet", "the next backup run creates and fills it")
    if mirror < org.live_before:
        return Finding(
            "counts",
            False,
            f"the org holds {org.live_before:,} live records last changed before {at} (the end of the newest "
            f"backed-up window), the mirror {mirror:,}: {org.live_before - mirror:,} missing from the backup",
            "back up the windows named under `windows`; if none is missing, backfill the object's windows from the "
            "start as one run (a full re-read)",
        )
    extra = mirror - org.live_before
    if extra > org.changed_since:
        gone = extra - org.changed_since
        return Finding(
            "counts",
            False,
            f"the mirror holds {mirror:,} live records last changed before {at}, the org {org.live_before:,} "
            f"(and {org.changed_since:,} changed since): at least {gone:,} vanished from the org (hard delete, "
            "purge, ...) and the backup does not know it yet",
            "the next window's run reconciles the ids (the org's COUNT() differs from the mirror's) and closes "
            "the vanished records in history; to do it now, back up the newest window again",
        )
    return Finding(
        "counts",
        True,
        f"the mirror's {mirror:,} live records last changed before {at} match the "
        f"org's {org.live_before:,} (+ {org.changed_since:,} changed since)",
    )


def reconciliation_finding(last: LastReconciliation | None, as_of: datetime, every_hours: float) -> Finding:
    """The last id reconciliation ran, recently enough, and what it found."""
    if last is None:
        return Finding(
            "reconciliation",
            False,
            "the ids were never reconciled",
            "the next window's run reconciles them (or records the first load)",
        )
    when = last.window_end or last.finished_at
    if when < as_of - timedelta(hours=every_hours):
        return Finding(
            "reconciliation",
            False,
            f"the last reconciliation (window ending {when:%Y-%m-%d %H:%M} UTC) is older than "
            f"reconcile.large_every_hours ({every_hours:g} h) before the newest backed-up window",
            "the next window's run reconciles the ids",
        )
    found = (
        f"{last.vanished:,} vanished records found, flagged and closed in history"
        if last.vanished
        else "nothing vanished"
    )
    missing = (
        f"; {last.missing_from_backup:,} records changed after that window, backed up by the next ones"
        if last.missing_from_backup
        else ""
    )
    return Finding(
        "reconciliation",
        True,
        f"last reconciled with the window ending {when:%Y-%m-%d %H:%M} UTC ({last.reason}): {found}{missing}",
    )


def delete_log_finding(as_of: datetime, org: OrgEvidence) -> Finding:
    """The org's delete log still reaches back to the last good backup (else deletions since may be unknown)."""
    at = f"{as_of:%Y-%m-%d %H:%M} UTC"
    if org.log_covered is None:
        return Finding("delete_log", True, "the object cannot be deleted: no delete log to cover")
    if org.log_covered:
        since = f" (it starts {org.log_earliest:%Y-%m-%d %H:%M} UTC)" if org.log_earliest else ""
        return Finding(
            "delete_log", True, f"the org's delete log covers every deletion since the last good backup ({at}){since}"
        )
    start = f"{org.log_earliest:%Y-%m-%d %H:%M} UTC" if org.log_earliest else "later"
    return Finding(
        "delete_log",
        False,
        f"the last good backup ends {at}, before the org's delete log starts ({start}, its earliestDateAvailable): "
        "records deleted and purged since cannot be listed, so an incremental backup cannot be trusted",
        "automatic: the next window's run finds the log no longer reaches back to its start and reconciles every "
        "id in full (the full re-sync: every record deleted and purged meanwhile is found and closed in history); "
        "to do it now, back up the newest window",
    )
