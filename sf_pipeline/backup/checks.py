"""`backup_complete`: per object, every window from the start to the newest closed one is backed up.

The check names the holes (runs of windows whose `history/<Object>` was never materialized) and what will
repair them. It sits on `salesforce/<Object>` (so the anomaly job, which takes the checks of the history
assets, does not run it) as one multi-asset check, one step for all objects; run it from the UI or in a job
of its own. As of the end of each object's newest backed-up window it also compares the mirror's live count with
the org's `COUNT()`, reads the last id reconciliation's result and the org's delete-log coverage
(`completeness.py`). Each condition is a `Finding` with its detail and its repair in the metadata; `failed`
lists the ones that do not hold.
"""

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from sf_pipeline.resources import SalesforceOrgResource, WarehouseResource
from sf_pipeline.warehouse.names import MIRROR_SCHEMA, table_name
from sf_pipeline.warehouse.schema import table_columns

from .completeness import (
    counts_finding,
    delete_log_finding,
    last_reconciliation,
    mirror_live_before,
    org_evidence,
    reconciliation_finding,
)
from .findings import Finding
from .schedules import backed_up_subset

CHECK_NAME = "backup_complete"


def window_holes(closed: Sequence[str], backed_up: set[str]) -> list[tuple[str, str, int]]:
    """Runs of consecutive closed windows not backed up: (first, last, how many), oldest first."""
    holes: list[tuple[str, str, int]] = []
    run: list[str] = []
    for window in [*closed, None]:
        if window is not None and window not in backed_up:
            run.append(window)
        elif run:
            holes.append((run[0], run[-1], len(run)))
            run = []
    return holes


def holes_finding(closed: Sequence[str], backed_up: set[str], max_windows_per_tick: int) -> Finding:
    """Whether every closed window is backed up, naming the holes."""
    if not closed:
        return Finding("windows", True, "no window has closed yet")
    holes = window_holes(closed, backed_up)
    if not holes:
        return Finding("windows", True, f"all {len(closed)} windows {closed[0]} .. {closed[-1]} are backed up")
    missing = sum(n for _, _, n in holes)
    shown = "; ".join(f"{a} .. {b} ({n} windows)" if n > 1 else a for a, b, n in holes[:20])
    more = f"; and {len(holes) - 20} more holes" if len(holes) > 20 else ""
    return Finding(
        "windows",
        False,
        f"{missing} of {len(closed)} closed windows not backed up: {shown}{more}",
        f"backup_schedule asks for them oldest first, {max_windows_per_tick} per minute, a failed one after its "
        f"backoff (its ticks say which wait and why); or backfill {holes[0][0]} .. {holes[-1][1]} as one run",
    )


def check_result(key: dg.AssetKey, findings: Sequence[Finding]) -> dg.AssetCheckResult:
    failed = [f for f in findings if not f.passed]
    metadata: dict[str, Any] = {"failed": ", ".join(f.name for f in failed) or "none"}
    for finding in findings:
        metadata[finding.name] = finding.detail
        if finding.repair:
            metadata[f"{finding.name}_repair"] = finding.repair
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=CHECK_NAME,
        passed=not failed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
        description="; ".join(f.detail for f in failed) or None,
    )


def backup_complete_check(
    mirror_keys: Sequence[dg.AssetKey],
    history_keys: Sequence[dg.AssetKey],
    partitions: dg.TimeWindowPartitionsDefinition,
    lag_minutes: int,
    max_windows_per_tick: int,
    name: str = CHECK_NAME,
    *,
    object_names: Sequence[str] | None = None,
    reconcile_every_hours: float = 24.0,
    stamps: Sequence[str | None] | None = None,
    resource_keys: tuple[str, str] = ("salesforce", "warehouse"),
    more_findings: Callable[[Sequence[dg.AssetKey]], Mapping[dg.AssetKey, Sequence[Finding]]] | None = None,
) -> dg.AssetChecksDefinition:
    """The check on each `mirror_keys[i]`, judged by the materialized windows of `history_keys[i]`; `name` is
    the step's (one per backed-up org).

    With `object_names` (the Salesforce objects behind the keys), it also asks the org and the backup
    database, as of the end of each object's newest backed-up window: counts, reconciliation, delete log
    (`completeness.py`); it then needs the org's Salesforce and warehouse resources (`resource_keys`). `stamps`:
    the field each object's windows are read on (SystemModstamp, CreatedDate for append-only objects, None for
    objects read whole, which have no count as of an instant to compare). `more_findings` adds conditions per
    mirror key (file bodies: backup/files.py).
    """
    lag = timedelta(minutes=lag_minutes)
    pairs = list(zip(mirror_keys, history_keys, strict=True))
    names = list(object_names) if object_names is not None else None
    if names is not None and len(names) != len(pairs):
        raise ValueError("backup_complete_check: one object name per mirror key")
    description = (
        "Every window from the start to the newest one closed `schedule_lag_minutes` ago is backed up "
        "(mirror and history); names the holes and what repairs them."
    )
    if names is not None:
        description += (
            " As of the newest backed-up window's end: the mirror's live count equals the org's "
            "COUNT() (within the records changed since), the ids were reconciled recently, and the "
            "org's delete log still reaches back to it."
        )

    @dg.multi_asset_check(
        specs=[dg.AssetCheckSpec(CHECK_NAME, asset=mirror, description=description) for mirror, _ in pairs],
        name=name,
        required_resource_keys=set(resource_keys) if names is not None else set(),
        # a run of some objects (a subset of the small objects' shared step, a backfill of one) checks those
        can_subset=True,
    )
    def _backup_complete(context: dg.AssetCheckExecutionContext):
        closed = partitions.get_partition_keys(current_time=datetime.now(UTC) - lag)
        selected = {k.asset_key for k in context.selected_asset_check_keys}
        chosen = [i for i, (mirror, _) in enumerate(pairs) if mirror in selected]
        mine = [pairs[i] for i in chosen]
        per_object: list[tuple[dg.AssetKey, list[Finding], datetime | None]] = []
        for mirror, history in mine:
            subset = backed_up_subset(context.instance, [history], partitions)
            done = set(subset.get_partition_keys())
            windows = list(subset.included_time_windows)
            newest_end = max((w.end for w in windows), default=None)
            per_object.append((mirror, [holes_finding(closed, done, max_windows_per_tick)], newest_end))
        if names is not None:
            all_stamps = list(stamps) if stamps is not None else ["SystemModstamp"] * len(names)
            _org_findings(
                context,
                per_object,
                [names[i] for i in chosen],
                [all_stamps[i] for i in chosen],
                reconcile_every_hours,
                resource_keys,
            )
        extra = more_findings([m for m, _ in mine]) if more_findings else {}
        for mirror, findings, _ in per_object:
            yield check_result(mirror, [*findings, *extra.get(mirror, ())])

    return _backup_complete


def _org_findings(
    context: dg.AssetCheckExecutionContext,
    per_object: list[tuple[dg.AssetKey, list[Finding], datetime | None]],
    names: Sequence[str],
    stamps: Sequence[str | None],
    reconcile_every_hours: float,
    resource_keys: tuple[str, str],
) -> None:
    """Counts, reconciliation and delete-log findings of every backed-up object, the org asked in batches."""
    salesforce: SalesforceOrgResource = getattr(context.resources, resource_keys[0])
    warehouse: WarehouseResource = getattr(context.resources, resource_keys[1])
    client = salesforce.client()
    with warehouse.connect() as conn:
        asked: list[tuple[str, datetime, bool]] = []
        for (_, findings, as_of), sobject, stamp in zip(per_object, names, stamps, strict=True):
            if as_of is None:
                findings.append(Finding("counts", True, "no window backed up yet: nothing to compare"))
                continue
            if stamp is None:
                findings.append(
                    Finding(
                        "counts",
                        True,
                        "no timestamp field: every window reads the object whole and compares it with the mirror",
                    )
                )
                continue
            deletable = any(name == "isdeleted" for name, _ in table_columns(conn, MIRROR_SCHEMA, table_name(sobject)))
            asked.append((sobject, as_of, deletable, stamp))
        evidence = org_evidence(client, asked)
        for (_, findings, as_of), sobject, stamp in zip(per_object, names, stamps, strict=True):
            if as_of is None or stamp is None:
                continue
            org = evidence[sobject]
            findings.append(counts_finding(as_of, mirror_live_before(conn, sobject, as_of), org))
            findings.append(reconciliation_finding(last_reconciliation(conn, sobject), as_of, reconcile_every_hours))
            findings.append(delete_log_finding(as_of, org))
    context.log.info(f"backup_complete asked the org {client.api_calls} HTTP requests for {len(names)} objects")
