"""The partition status sensor leaves each backup asset's partition status current, so the UI never builds it.

Against a real Dagster instance on PostgreSQL: a backfill (one run over a range of windows, as the backup's
single-run backfill policy launches it) and a failed window of a job shaped like `backup`; the sensor's tick
writes Dagster's partition status cache, and the webserver's read of it (with the partitions definition as the
webserver gets it, through the code location's snapshot) then has nothing left to update.
"""

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from dagster._core.remote_representation.external_data import RepositorySnap
from dagster._core.storage.partition_status_cache import (
    AssetPartitionStatus,
    get_and_update_asset_status_cache_value,
)

from sf_pipeline.backup.schedules import RANGE_END_TAG, RANGE_START_TAG
from sf_pipeline.backup.sensors import partition_status_sensor, refresh_partition_status, stale_status_keys
from sf_pipeline_tests.pipeline_fixtures import dagster_home

START = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=3)
FMT = "%Y-%m-%d-%H:%M"
PARTITIONS = dg.TimeWindowPartitionsDefinition(
    cron_schedule="*/15 * * * *", start=START.replace(tzinfo=None), timezone="UTC", fmt=FMT
)
WINDOWS = PARTITIONS.get_partition_keys(current_time=START + timedelta(hours=4))  # 16 closed windows
FAIL_WINDOWS: set[str] = set()


@dg.asset(key=["salesforce", "Account"], partitions_def=PARTITIONS, backfill_policy=dg.BackfillPolicy.single_run())
def account_mirror(context: dg.AssetExecutionContext) -> None:
    if FAIL_WINDOWS & set(context.partition_keys):
        raise dg.Failure(f"window {sorted(FAIL_WINDOWS & set(context.partition_keys))} failed")


@dg.asset(
    key=["history", "Account"],
    deps=[account_mirror],
    partitions_def=PARTITIONS,
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def account_history() -> None:
    pass


KEYS = [account_history.key, account_mirror.key]
SENSOR = partition_status_sensor(KEYS, PARTITIONS)
DEFS = dg.Definitions(
    assets=[account_mirror, account_history],
    jobs=[dg.define_asset_job("backup", selection=[account_mirror, account_history])],
    sensors=[SENSOR],
)


@pytest.fixture
def instance(tmp_path, pg_url):
    home = dagster_home(tmp_path / "dagster_home", pg_url)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance
        CURSORS.pop(id(instance), None)
    FAIL_WINDOWS.clear()


def backfill(instance: dg.DagsterInstance, first: str, last: str) -> bool:
    """One run over [first, last], as a backfill of the backup assets launches it (single-run policy)."""
    job = DEFS.resolve_job_def("backup")
    tags = {RANGE_START_TAG: first, RANGE_END_TAG: last}
    return job.execute_in_process(tags=tags, instance=instance, raise_on_error=False).success


CURSORS: dict[int, str | None] = {}


def tick(instance: dg.DagsterInstance) -> str:
    """One tick of the sensor as the daemon runs it: with the cursor the previous tick left."""
    context = dg.build_sensor_context(instance=instance, cursor=CURSORS.get(id(instance)))
    result = SENSOR(context)
    assert isinstance(result, dg.SkipReason), "the sensor never launches a run"
    CURSORS[id(instance)] = context.cursor
    return result.skip_message


def webserver_partitions_defs() -> dict[dg.AssetKey, dg.PartitionsDefinition]:
    """The assets' partitions definitions as the webserver has them: rebuilt from the code location's snapshot."""
    snap = RepositorySnap.from_def(DEFS.get_repository_def())
    return {n.asset_key: n.partitions.get_partitions_definition() for n in snap.asset_nodes if n.partitions}


def cached_status(instance: dg.DagsterInstance, key: dg.AssetKey):
    [record] = instance.get_asset_records([key])
    return record.asset_entry.cached_status


def test_after_a_backfill_the_sensor_leaves_the_partition_status_current_for_the_ui(instance):
    assert tick(instance) == "the partition status of all 2 backup assets is current"  # nothing materialized yet
    assert backfill(instance, WINDOWS[0], WINDOWS[-1])
    assert stale_status_keys(instance, KEYS, PARTITIONS) == KEYS
    assert tick(instance).startswith("refreshed the partition status of 2 assets in ")
    remote_defs = webserver_partitions_defs()
    for key in KEYS:
        cached = cached_status(instance, key)
        assert cached.deserialize_materialized_partition_subsets(PARTITIONS).get_partition_keys() == WINDOWS
        # what the partitions page reads: the webserver's partitions definition finds the cache current, so
        # Dagster's update (the one the page's queries make) reads no event and writes nothing
        remote = remote_defs[key]
        assert stale_status_keys(instance, [key], remote) == []
        assert get_and_update_asset_status_cache_value(instance, key, remote) == cached
        assert cached_status(instance, key) == cached
    assert tick(instance) == "no event since the last tick: the partition status is current"  # reads no record

    # the next windows (the schedule's runs): only what changed is refreshed, incrementally
    assert backfill(instance, WINDOWS[-1], WINDOWS[-1])
    assert stale_status_keys(instance, KEYS, PARTITIONS) == KEYS
    assert tick(instance).startswith("refreshed the partition status of 2 assets")
    assert stale_status_keys(instance, KEYS, PARTITIONS) == []


def test_a_failed_window_is_left_to_the_pages_cheap_update_and_still_shown_failed(instance):
    assert backfill(instance, WINDOWS[0], WINDOWS[9])
    tick(instance)
    FAIL_WINDOWS.add(WINDOWS[10])
    assert not backfill(instance, WINDOWS[10], WINDOWS[10])
    # nothing materialized: no window to read and parse, so the sensor leaves the statuses alone (a running or
    # failed run costs the page only its run status, and re-reading every asset of a running backup on each
    # tick would cost more than it saves) ...
    assert stale_status_keys(instance, KEYS, PARTITIONS) == []
    assert tick(instance) == "the partition status of all 2 backup assets is current"
    # ... and the page's read still shows the window failed, the ten before it materialized
    remote = webserver_partitions_defs()[account_mirror.key]
    status = instance.get_status_by_partition(account_mirror.key, WINDOWS[:11], remote)
    assert [status[w] for w in WINDOWS[:11]] == [AssetPartitionStatus.MATERIALIZED] * 10 + [AssetPartitionStatus.FAILED]


def test_a_tick_stops_when_its_time_is_spent_and_the_next_one_carries_on(instance):
    assert backfill(instance, WINDOWS[0], WINDOWS[5])
    refreshed, left = refresh_partition_status(instance, KEYS, PARTITIONS, budget_s=0)
    assert (refreshed, left) == ([account_history.key], [account_mirror.key])  # at least one per tick
    assert tick(instance).startswith("refreshed the partition status of 1 asset in ")
    assert stale_status_keys(instance, KEYS, PARTITIONS) == []
