"""The backup schedule asks for every closed window not backed up yet, oldest first, and retries with backoff.

The decisions are plain functions (first tests); the schedule itself is evaluated against a real Dagster
instance on PostgreSQL with real materializations and failed runs of a job shaped like `backup`
(`salesforce/<Object>` then `history/<Object>`, the same 15-minute windows).
"""

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from sf_pipeline.backup.checks import backup_complete_check, window_holes
from sf_pipeline.backup.schedules import (
    ATTEMPT_TAG,
    RANGE_END_TAG,
    RANGE_START_TAG,
    WINDOW_TAG,
    backup_schedule,
)
from sf_pipeline.backup.windows import WindowAttempts, retry_delay, windows_to_request
from sf_pipeline_tests.pipeline_fixtures import dagster_home

# Five hours ago on the hour: the backoff is measured from when failed runs really ended.
START = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=5)
FMT = "%Y-%m-%d-%H:%M"


def key(moment: datetime) -> str:
    return moment.strftime(FMT)


# ---- decisions ---------------------------------------------------------------------------------------


def test_missed_windows_are_requested_oldest_first_and_the_newest_rereads_the_one_before():
    closed = [key(START + timedelta(minutes=15 * i)) for i in range(6)]
    missing = [closed[1], closed[2], closed[3], closed[5]]  # closed[0], the full load, and closed[4] are done
    requests, waiting = windows_to_request(
        missing, {}, START + timedelta(hours=2), 48, 60, newest=closed[5], reread=closed[4]
    )
    assert [r.window for r in requests] == missing
    assert [r.reread for r in requests] == [None, None, None, closed[4]]
    assert [r.reason for r in requests] == ["missed", "missed", "missed", "new"]
    assert waiting == []


def test_requests_per_tick_are_bounded_and_the_rest_wait_for_the_next_tick():
    closed = [key(START + timedelta(minutes=15 * i)) for i in range(10)]
    requests, waiting = windows_to_request(closed, {}, START + timedelta(hours=3), 4, 60, newest=closed[-1])
    assert [r.window for r in requests] == closed[:4]
    assert len(waiting) == 6 and "next tick" in waiting[0]


def test_a_failed_window_waits_out_its_backoff_and_a_window_in_flight_is_not_asked_twice():
    closed = [key(START), key(START + timedelta(minutes=15))]
    failed_at = START + timedelta(minutes=40)
    attempts = {
        closed[0]: WindowAttempts(failures=2, last_finished=failed_at),
        closed[1]: WindowAttempts(in_flight=True),
    }
    early, waiting = windows_to_request(closed, attempts, failed_at + timedelta(minutes=3), 48, 60)
    assert early == [] and "retried after" in waiting[0] and "being backed up" in waiting[1]
    due, _ = windows_to_request(closed, attempts, failed_at + timedelta(minutes=4), 48, 60)
    assert [(r.window, r.attempt, r.reason) for r in due] == [(closed[0], 3, "retry 2")]


def test_backoff_doubles_and_stops_at_the_cap():
    assert [retry_delay(n, 60).total_seconds() / 60 for n in (1, 2, 3, 6, 7, 40)] == [2, 4, 8, 60, 60, 60]
    with pytest.raises(ValueError, match="max_windows_per_tick"):
        windows_to_request(["x"], {}, START, 0, 60)


# ---- the schedule against a real instance --------------------------------------------------------------

FAIL_WINDOWS: set[str] = set()
"""Windows whose extraction fails (the org's API refuses, say) until a test takes them out."""

PARTITIONS = dg.TimeWindowPartitionsDefinition(
    cron_schedule="*/15 * * * *", start=START.replace(tzinfo=None), timezone="UTC", fmt=FMT
)


@dg.asset(key=["salesforce", "Account"], partitions_def=PARTITIONS, backfill_policy=dg.BackfillPolicy.single_run())
def account_mirror(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    keys = context.partition_keys
    if FAIL_WINDOWS & set(keys):
        raise dg.Failure(f"window {sorted(FAIL_WINDOWS & set(keys))} failed")
    return dg.MaterializeResult(metadata={"windows": ",".join(keys)})


@dg.asset(
    key=["history", "Account"],
    deps=[account_mirror],
    partitions_def=PARTITIONS,
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def account_history(context: dg.AssetExecutionContext) -> None:
    pass


JOB = dg.define_asset_job("backup", selection=[account_mirror, account_history])
SCHEDULE = backup_schedule(
    JOB, PARTITIONS, lag_minutes=5, backed_up_keys=[account_history.key], max_windows_per_tick=48, retry_max_minutes=60
)
COMPLETE = backup_complete_check(
    [account_mirror.key], [account_history.key], PARTITIONS, lag_minutes=5, max_windows_per_tick=48
)
COMPLETE_JOB = dg.define_asset_job("complete", selection=dg.AssetSelection.checks(COMPLETE))
DEFS = dg.Definitions(
    assets=[account_mirror, account_history], asset_checks=[COMPLETE], jobs=[JOB, COMPLETE_JOB], schedules=[SCHEDULE]
)


@pytest.fixture
def instance(tmp_path, pg_url):
    home = dagster_home(tmp_path / "dagster_home", pg_url)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance
    FAIL_WINDOWS.clear()


def tick(instance: dg.DagsterInstance, at: datetime) -> list[dg.RunRequest]:
    result = SCHEDULE(dg.build_schedule_context(instance=instance, scheduled_execution_time=at))
    return [] if isinstance(result, dg.SkipReason) else list(result)


def run(instance: dg.DagsterInstance, request: dg.RunRequest) -> bool:
    """Launch a requested run in-process, as the daemon would launch it."""
    job = DEFS.resolve_job_def("backup")
    tags = dict(request.tags)
    partition = request.partition_key
    return job.execute_in_process(partition_key=partition, tags=tags, instance=instance, raise_on_error=False).success


def window_at(moment: datetime) -> str:
    return key(moment)


def test_after_an_outage_every_missed_window_is_requested_oldest_first(instance):
    # Backed up every quarter hour until 02:00, then the daemon was down until 04:37.
    for i in range(8):
        assert run(instance, tick(instance, START + timedelta(minutes=15 * (i + 1) + 5))[0])
    back = START + timedelta(hours=4, minutes=37)
    requests = tick(instance, back)
    missed = [key(START + timedelta(hours=2, minutes=15 * i)) for i in range(10)]  # 02:00 .. 04:15, all closed
    assert [r.tags[WINDOW_TAG] for r in requests] == missed
    assert [r.partition_key for r in requests[:-1]] == missed[:-1]
    # the newest (04:15) re-reads 04:00 only once 04:00 is backed up; mid-outage it is read in full on its own
    assert requests[-1].partition_key == missed[-1]
    for request in requests:
        assert run(instance, request)
    assert tick(instance, back + timedelta(minutes=1)) == []  # healed: nothing left to ask for
    done = instance.get_materialized_partitions(account_history.key)
    assert {key(START + timedelta(minutes=15 * i)) for i in range(18)} <= done


def test_the_newest_closed_window_is_backed_up_with_the_previous_one_reread(instance):
    quarter = timedelta(minutes=15)
    assert run(instance, tick(instance, START + quarter + timedelta(minutes=5))[0])  # 00:00, the full load
    [second] = tick(instance, START + 2 * quarter + timedelta(minutes=5))
    assert second.partition_key == key(START + quarter)  # the full load is not read twice
    assert run(instance, second)
    [request] = tick(instance, START + 3 * quarter + timedelta(minutes=5))
    assert request.partition_key is None
    assert (request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]) == (
        key(START + quarter),
        key(START + 2 * quarter),
    )
    assert run(instance, request)
    latest = instance.get_latest_materialization_event(account_mirror.key)
    assert (
        latest.asset_materialization.metadata["windows"].value == f"{key(START + quarter)},{key(START + 2 * quarter)}"
    )
    assert tick(instance, START + 3 * quarter + timedelta(minutes=6)) == []


def test_a_failed_window_is_requested_again_after_its_backoff_not_before(instance):
    FAIL_WINDOWS.add(key(START))
    [request] = tick(instance, START + timedelta(minutes=20))
    assert request.tags[ATTEMPT_TAG] == "1"
    assert not run(instance, request)
    failed_at = datetime.now(UTC)

    def asked_for_first_window(at: datetime) -> list[dg.RunRequest]:
        return [r for r in tick(instance, at) if r.tags[WINDOW_TAG] == key(START)]

    # The ticks right after the failure leave it alone (next attempt 2^1 minutes after the failed run ended) ...
    assert asked_for_first_window(failed_at + timedelta(seconds=90)) == []
    # ... and ask again once the backoff ran out; the second failure doubles it.
    [again] = asked_for_first_window(failed_at + timedelta(minutes=2, seconds=5))
    assert again.tags[ATTEMPT_TAG] == "2" and again.tags["sf_pipeline/reason"] == "retry 1"
    assert not run(instance, again)
    failed_again = datetime.now(UTC)
    assert asked_for_first_window(failed_again + timedelta(minutes=3, seconds=50)) == []
    FAIL_WINDOWS.clear()  # the org is healthy again
    [third] = asked_for_first_window(failed_again + timedelta(minutes=4, seconds=5))
    assert third.tags[ATTEMPT_TAG] == "3"
    assert run(instance, third)
    assert key(START) in instance.get_materialized_partitions(account_history.key)


def test_a_window_being_backed_up_is_not_requested_again(instance):
    [request] = tick(instance, START + timedelta(minutes=20))
    # A run launched by that tick and not finished yet (created, not started: as the queue holds it).
    instance.create_run_for_job(
        DEFS.resolve_job_def("backup"),
        tags=dict(request.tags, **{"dagster/partition": key(START)}),
        status=dg.DagsterRunStatus.NOT_STARTED,
    )
    assert tick(instance, START + timedelta(minutes=21)) == []


def backup_complete(instance: dg.DagsterInstance) -> dg.AssetCheckEvaluation:
    result = DEFS.resolve_job_def("complete").execute_in_process(instance=instance)
    [evaluation] = result.get_asset_check_evaluations()
    return evaluation


def test_holes_are_runs_of_missing_windows():
    assert window_holes(list("abcdefg"), set("adg")) == [("b", "c", 2), ("e", "f", 2)]
    assert window_holes(list("abc"), set("abc")) == []


def test_backup_complete_names_the_holes_and_passes_once_the_schedule_backed_them_up(instance):
    now = datetime.now(UTC)
    for request in tick(instance, START + timedelta(minutes=20)):  # only the first window backed up
        assert run(instance, request)
    evaluation = backup_complete(instance)
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    closed = PARTITIONS.get_partition_keys(current_time=now - timedelta(minutes=5))
    holes = evaluation.metadata["windows"].value
    assert f"{len(closed) - 1} of {len(closed)} closed windows not backed up: {closed[1]} .. {closed[-1]}" in holes
    assert "backup_schedule asks for them oldest first" in evaluation.metadata["windows_repair"].value
    requests = tick(instance, now)
    assert [r.tags[WINDOW_TAG] for r in requests] == closed[1:]
    for request in requests:
        assert run(instance, request)
    for request in tick(instance, datetime.now(UTC)):  # a window that closed meanwhile (the clock is real)
        assert run(instance, request)
    evaluation = backup_complete(instance)
    assert evaluation.passed, evaluation.metadata
    assert evaluation.metadata["windows"].value.startswith("all ")
