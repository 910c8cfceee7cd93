"""The backup schedule: every closed window backed up, oldest first, shortly after it closes.

Each minute the schedule lists the windows whose end is at least `lag` ago and asks for every one that
is not backed up yet (every object's `history/<Object>` materialized for it), oldest first, at most
`max_windows_per_tick` per tick: after a daemon outage the missed windows are all requested on its
first tick back. A window whose run failed is retried after 2^n minutes (n: its failed runs so far,
capped at `retry_max_minutes`). The newest window's run also re-reads the window before it (late
commits). The decisions are `windows.windows_to_request`; this module only reads the instance.

A schedule's run_key only dedupes within one tick (unlike a sensor's), hence the lookup of runs in
flight: each run carries the window it backs up in the `sf_pipeline/window` tag.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import dagster as dg
from dagster._core.definitions.partitions.subset import PartitionsSubset

from .windows import WindowAttempts, WindowRequest, windows_to_request

WINDOW_TAG = "sf_pipeline/window"
"""Run tag naming the window a scheduled backup run is for (a re-read run also covers the one before)."""

ATTEMPT_TAG = "sf_pipeline/attempt"
"""Run tag counting the schedule's attempts at a window (1 for the first)."""

# Dagster's tags for a run over a range of partitions (what a single-run backfill launches).
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"

_FINISHED = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)

# How many not-backed-up windows one tick looks up runs for (a hole a year long waits its turn).
_LOOKUP_LIMIT = 1000


def backed_up_subset(
    instance: dg.DagsterInstance, keys: Sequence[dg.AssetKey], partitions: dg.TimeWindowPartitionsDefinition
) -> PartitionsSubset:
    """Windows materialized for every asset in `keys`, as a subset of time windows (never a list of keys).

    Reads Dagster's per-asset partition status cache, which the instance updates incrementally from the
    event log (the UI's partition bars use it): a year of 15-minute windows costs no scan of the run
    history, and the subsets intersect as time ranges. Falls back to the event log's materialized
    partitions where there is no cache.
    """
    from dagster._core.storage.partition_status_cache import (
        AssetStatusCacheValue,
        get_and_update_asset_status_cache_value,
    )

    done: PartitionsSubset | None = None
    for key in keys:
        cached = get_and_update_asset_status_cache_value(instance, key, partitions)
        if isinstance(cached, AssetStatusCacheValue):
            materialized = cached.deserialize_materialized_partition_subsets(partitions)
        else:
            materialized = partitions.empty_subset().with_partition_keys(instance.get_materialized_partitions(key))
        done = materialized if done is None else done & materialized
    return done if done is not None else partitions.empty_subset()


def backed_up_windows(
    instance: dg.DagsterInstance, keys: Sequence[dg.AssetKey], partitions: dg.TimeWindowPartitionsDefinition
) -> set[str]:
    """`backed_up_subset` as partition keys (for tests and small ranges)."""
    return set(backed_up_subset(instance, keys, partitions).get_partition_keys())


def newest_closed_window(partitions: dg.TimeWindowPartitionsDefinition, cutoff: datetime) -> dg.TimeWindow | None:
    """The newest window that ended at or before `cutoff` (None before the first one ends)."""
    # The window containing the cutoff is still open (or just closed): the closed one ends where it starts.
    current = partitions.time_window_for_partition_key(partitions.get_partition_key_for_timestamp(cutoff.timestamp()))
    newest = partitions.time_window_for_partition_key(
        partitions.get_partition_key_for_timestamp(current.start.timestamp() - 1)
    )
    return None if newest.start < partitions.start else newest


def oldest_keys(partitions: dg.TimeWindowPartitionsDefinition, subset: PartitionsSubset, limit: int) -> list[str]:
    """The first `limit` partition keys of a time-window subset, oldest first, without listing the rest."""
    keys: list[str] = []
    for window in sorted(subset.included_time_windows, key=lambda w: w.start):
        key = partitions.get_partition_key_for_timestamp(window.start.timestamp())
        while key is not None and len(keys) < limit:
            if partitions.time_window_for_partition_key(key).start >= window.end:
                break
            keys.append(key)
            key = partitions.get_next_partition_key(key)
        if len(keys) >= limit:
            break
    return keys


def window_attempts(instance: dg.DagsterInstance, job_name: str, windows: Sequence[str]) -> dict[str, WindowAttempts]:
    """Per window, the schedule's runs for it: in flight, or finished without backing it up."""
    if not windows:
        return {}
    attempts: dict[str, WindowAttempts] = {}
    records = instance.get_run_records(dg.RunsFilter(job_name=job_name, tags={WINDOW_TAG: list(windows)}))
    for record in records:
        run = record.dagster_run
        window = run.tags.get(WINDOW_TAG)
        seen = attempts.get(window, WindowAttempts())
        if run.status not in _FINISHED:
            attempts[window] = WindowAttempts(seen.failures, seen.last_finished, in_flight=True)
            continue
        ended = datetime.fromtimestamp(record.end_time or record.update_timestamp.timestamp(), tz=UTC)
        last = max(filter(None, (seen.last_finished, ended)))
        attempts[window] = WindowAttempts(seen.failures + 1, last, seen.in_flight)
    return attempts


def run_request(request: WindowRequest) -> dg.RunRequest:
    tags = {WINDOW_TAG: request.window, ATTEMPT_TAG: str(request.attempt), "sf_pipeline/reason": request.reason}
    run_key = f"{request.window}#{request.attempt}"
    if request.reread is None:
        return dg.RunRequest(run_key=run_key, partition_key=request.window, tags=tags)
    # One run over [previous, newest]: the assets read both windows as one range (single-run backfill
    # policy), which costs one run instead of two.
    return dg.RunRequest(run_key=run_key, tags={**tags, RANGE_START_TAG: request.reread, RANGE_END_TAG: request.window})


def backup_schedule(
    job: dg.UnresolvedAssetJobDefinition,
    partitions: dg.TimeWindowPartitionsDefinition,
    lag_minutes: int,
    backed_up_keys: Sequence[dg.AssetKey],
    max_windows_per_tick: int = 48,
    retry_max_minutes: int = 60,
) -> dg.ScheduleDefinition:
    """`backed_up_keys`: the assets that must all be materialized for a window to count as backed up."""
    lag = timedelta(minutes=lag_minutes)
    keys = list(backed_up_keys)

    @dg.schedule(
        job=job,
        cron_schedule="* * * * *",
        name=f"{job.name}_schedule",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        execution_timezone="UTC",
        description=f"Backs up every closed window not backed up yet, oldest first, {lag_minutes} minutes "
        f"after it closes (late commits); retries failed windows with backoff.",
    )
    def _schedule(context: dg.ScheduleEvaluationContext):
        now = context.scheduled_execution_time
        newest = newest_closed_window(partitions, now - lag)
        if newest is None:
            return dg.SkipReason("no window has closed long enough ago yet")
        first, last = partitions.start, newest.end
        closed = partitions.get_partition_subset_in_time_window(dg.TimeWindow(first, last))
        done = backed_up_subset(context.instance, keys, partitions)
        missing = oldest_keys(partitions, closed - done, _LOOKUP_LIMIT)
        if not missing:
            return dg.SkipReason(
                f"every window up to {partitions.get_partition_key_for_timestamp(newest.start.timestamp())}"
                " is backed up"
            )
        newest_key = partitions.get_partition_key_for_timestamp(newest.start.timestamp())
        previous = (
            partitions.get_partition_key_for_timestamp(newest.start.timestamp() - 1) if newest.start > first else None
        )
        reread = (
            previous
            if previous is not None
            and previous in done
            and partitions.time_window_for_partition_key(previous).start > first
            else None
        )
        attempts = window_attempts(context.instance, job.name, missing)
        requests, waiting = windows_to_request(
            missing, attempts, now, max_windows_per_tick, retry_max_minutes, newest=newest_key, reread=reread
        )
        if not requests:
            return dg.SkipReason("; ".join(waiting[:10]))
        if waiting:
            context.log.info(f"{len(waiting)} window(s) wait: " + "; ".join(waiting[:10]))
        return [run_request(r) for r in requests]

    return _schedule
