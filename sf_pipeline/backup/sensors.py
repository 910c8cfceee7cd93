"""The partition status sensor: the backup assets' partition status kept current for the UI.

Dagster's UI draws a partitioned asset's health (its partitions page, the "x% filled" of the asset graph) from
a per-asset partition status cache in the instance (`cached_status_data`), updated incrementally from the event
log. Whoever reads it first after new materializations pays for the update: after a year of windows or any large
backfill, the first person to open an asset's partitions page waited for Dagster to read and parse every
materialized window (15 s for a year of 15-minute windows; the same page warm: 2.5 s). This sensor does that
work in the daemon instead, as soon as a backup run, a backfill or a reported event materializes windows, through
Dagster's own public read of that status (`DagsterInstance.get_status_by_partition`, which updates the cache
exactly as the webserver's partition queries do), so the page finds it current.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import dagster as dg

SENSOR_NAME = "backup_partition_status"

# Seconds of refreshing per tick: the daemon gives a sensor's evaluation 60 s; what is left waits for the next tick.
TICK_BUDGET_S = 30.0


def status_is_stale(entry, partitions_id: str) -> bool:
    """Whether an asset's cached partition status misses materializations (`entry`: its `AssetEntry`).

    Stale: no cache yet, a cache written for another partitions definition (the settings' start or windows
    changed), or windows materialized since it was written: the part of Dagster's update that reads and parses
    every new window. A run that started or failed since is not counted: Dagster's update for it reads only the
    run's status, cheap on the page, and refreshing every asset of a running backup on each tick would cost more
    than it saves.
    """
    latest = entry.last_materialization_storage_id
    if not latest:
        return False
    cached = entry.cached_status
    return cached is None or cached.partitions_def_id != partitions_id or cached.latest_storage_id < latest


def stale_status_keys(
    instance: dg.DagsterInstance, keys: Sequence[dg.AssetKey], partitions: dg.PartitionsDefinition
) -> list[dg.AssetKey]:
    """The assets of `keys` whose cached partition status is stale, in their order (one query for all)."""
    partitions_id = partitions.get_serializable_unique_identifier()
    entries = {r.asset_entry.asset_key: r.asset_entry for r in instance.get_asset_records(list(keys))}
    return [k for k in keys if k in entries and status_is_stale(entries[k], partitions_id)]


def refresh_partition_status(
    instance: dg.DagsterInstance,
    keys: Sequence[dg.AssetKey],
    partitions: dg.PartitionsDefinition,
    budget_s: float | None = None,
) -> tuple[list[dg.AssetKey], list[dg.AssetKey]]:
    """Bring the cached partition status of the stale assets of `keys` up to date, in their order, until `budget_s`
    seconds are spent (at least one asset each time). Returns (refreshed, left for later)."""
    stale = stale_status_keys(instance, keys, partitions)
    started = time.monotonic()
    refreshed: list[dg.AssetKey] = []
    for key in stale:
        if budget_s is not None and refreshed and time.monotonic() - started > budget_s:
            break
        # Dagster's public status read updates the asset's status cache on its way (AssetMethods.
        # get_status_by_partition -> get_and_update_asset_status_cache_value, the webserver's own path);
        # no partition key is asked for: the update is the point.
        instance.get_status_by_partition(key, [], partitions)
        refreshed.append(key)
    return refreshed, stale[len(refreshed) :]


def newest_event_id(instance: dg.DagsterInstance) -> int | None:
    """The event log's newest id (None where the storage cannot say: SQLite keeps an event log per run)."""
    try:
        return instance.event_log_storage.get_maximum_record_id() or 0
    except NotImplementedError:
        return None


def partition_status_sensor(keys: Sequence[dg.AssetKey], partitions: dg.PartitionsDefinition) -> dg.SensorDefinition:
    """Every 30 s, the partition status of the backup assets (`keys`) that changed since, refreshed; never a run."""
    keys = list(keys)
    partitions_id = partitions.get_serializable_unique_identifier()

    @dg.sensor(
        name=SENSOR_NAME,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Keeps the partition status of the backup assets current (the health bar of their partitions "
            "pages and the asset graph's fill), so nobody opening a page after a backup or a backfill waits "
            "for Dagster to read every materialized window. Launches no run."
        ),
    )
    def _sensor(context: dg.SensorEvaluationContext):
        # The cursor: the event log's newest id (and the partitions) when every status was last found current: a
        # tick with no event since reads nothing more.
        newest = newest_event_id(context.instance)
        mark = f"{newest}:{partitions_id}" if newest is not None else None
        if mark is not None and context.cursor == mark:
            return dg.SkipReason("no event since the last tick: the partition status is current")
        t = time.monotonic()
        refreshed, left = refresh_partition_status(context.instance, keys, partitions, TICK_BUDGET_S)
        if not left and mark is not None:
            context.update_cursor(mark)
        if not refreshed:
            return dg.SkipReason(f"the partition status of all {len(keys)} backup assets is current")
        more = f"; {len(left)} left for the next tick" if left else ""
        assets = f"{len(refreshed)} asset{'' if len(refreshed) == 1 else 's'}"
        return dg.SkipReason(
            f"refreshed the partition status of {assets} in {time.monotonic() - t:.1f} s "
            f"({', '.join(k.to_user_string() for k in refreshed[:5])}{', ...' if len(refreshed) > 5 else ''}){more}"
        )

    return _sensor
