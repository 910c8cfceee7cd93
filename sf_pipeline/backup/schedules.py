"""The backup schedule: materialize each window shortly after it closes.

The schedule ticks every minute and asks for the newest window whose end is at least `lag` ago, unless
it already launched that window (a run that did not fail): each window is requested once, whatever the
window length. A schedule's run_key only dedupes within one tick (unlike a sensor's), hence the lookup.
"""

from __future__ import annotations

from datetime import timedelta

import dagster as dg


def backup_schedule(job: dg.UnresolvedAssetJobDefinition, partitions: dg.TimeWindowPartitionsDefinition,
                    lag_minutes: int) -> dg.ScheduleDefinition:
    lag = timedelta(minutes=lag_minutes)

    @dg.schedule(job=job, cron_schedule="* * * * *", name=f"{job.name}_schedule",
                 default_status=dg.DefaultScheduleStatus.RUNNING, execution_timezone="UTC",
                 description=f"Backs up each window {lag_minutes} minutes after it closes (late commits).")
    def _schedule(context: dg.ScheduleEvaluationContext):
        cutoff = context.scheduled_execution_time - lag
        # The window containing the cutoff is still open (or just closed): the ready one ends where it starts.
        current = partitions.time_window_for_partition_key(
            partitions.get_partition_key_for_timestamp(cutoff.timestamp()))
        ready_key = partitions.get_partition_key_for_timestamp(current.start.timestamp() - 1)
        if partitions.time_window_for_partition_key(ready_key).start < partitions.start:
            return dg.SkipReason("no window has closed long enough ago yet")
        live = [s for s in dg.DagsterRunStatus if s not in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)]
        if context.instance.get_runs_count(dg.RunsFilter(
                statuses=live, tags={"dagster/schedule_name": f"{job.name}_schedule", "dagster/run_key": ready_key})):
            return dg.SkipReason(f"window {ready_key} is already backed up or being backed up")
        return dg.RunRequest(run_key=ready_key, partition_key=ready_key)

    return _schedule
