"""`backup_complete`: per object, every window from the start to the newest closed one is backed up.

The check names the holes (runs of windows whose `history/<Object>` was never materialized) and what will
repair them. It sits on `salesforce/<Object>` (so the anomaly job, which takes the checks of the history
assets, does not run it) as one multi-asset check, one step for all objects; run it from the UI or in a job
of its own. Built to grow: counts, reconciliation and delete-log coverage become more `Finding`s of the same
check, each with its detail and its repair in the metadata.
"""


from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dagster as dg

from .schedules import backed_up_windows

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


@dataclass(frozen=True)
class Finding:
    """One condition of `backup_complete`: whether it holds, what was found, and what will repair it."""

    name: str
    passed: bool
    detail: str
    repair: str = ""


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
        "windows", False, f"{missing} of {len(closed)} closed windows not backed up: {shown}{more}",
        f"backup_schedule asks for them oldest first, {max_windows_per_tick} per minute, a failed one after its "
        f"backoff (its ticks say which wait and why); or backfill {holes[0][0]} .. {holes[-1][1]} as one run")


def check_result(key: dg.AssetKey, findings: Sequence[Finding]) -> dg.AssetCheckResult:
    failed = [f for f in findings if not f.passed]
    metadata: dict[str, dg.MetadataValue] = {}
    for finding in findings:
        metadata[finding.name] = dg.MetadataValue.text(finding.detail)
        if finding.repair:
            metadata[f"{finding.name}_repair"] = dg.MetadataValue.text(finding.repair)
    return dg.AssetCheckResult(asset_key=key, check_name=CHECK_NAME, passed=not failed,
                               severity=dg.AssetCheckSeverity.ERROR, metadata=metadata,
                               description="; ".join(f.detail for f in failed) or None)


def backup_complete_check(mirror_keys: Sequence[dg.AssetKey], history_keys: Sequence[dg.AssetKey],
                          partitions: dg.TimeWindowPartitionsDefinition, lag_minutes: int,
                          max_windows_per_tick: int,
                          more_findings: Callable[[Sequence[dg.AssetKey]], Mapping[dg.AssetKey, Sequence[Finding]]]
                          | None = None) -> dg.AssetChecksDefinition:
    """The check on each `mirror_keys[i]`, judged by the materialized windows of `history_keys[i]`; `more_findings`
    adds conditions per mirror key (file bodies: backup/files.py)."""
    lag = timedelta(minutes=lag_minutes)
    pairs = list(zip(mirror_keys, history_keys, strict=True))

    @dg.multi_asset_check(
        specs=[dg.AssetCheckSpec(CHECK_NAME, asset=mirror, description=(
            "Every window from the start to the newest one closed `schedule_lag_minutes` ago is backed up "
            "(mirror and history); names the holes and what repairs them.")) for mirror, _ in pairs],
        name=CHECK_NAME,
    )
    def _backup_complete(context: dg.AssetCheckExecutionContext):
        closed = partitions.get_partition_keys(current_time=datetime.now(UTC) - lag)
        extra = more_findings([m for m, _ in pairs]) if more_findings else {}
        for mirror, history in pairs:
            done = backed_up_windows(context.instance, [history], partitions)
            yield check_result(mirror, [holes_finding(closed, done, max_windows_per_tick), *extra.get(mirror, ())])

    return _backup_complete
