"""The pipeline as it runs in production: a code server, dagster-webserver and dagster-daemon as real
processes on the instance of deploy/dagster.yaml and the workspace of deploy/workspace.yaml.

Nothing here executes in the test process except setting the scene (the org, the first full load): the
schedule ticks in the daemon, the sensor launches the checks, a user launches a restore and a backfill
through the webserver's GraphQL API. Assertions read the Dagster instance and the backup database.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import dagster as dg
import pytest
from dagster._core.execution.backfill import BulkActionStatus

from sf_pipeline.anomalies import list_incidents
from sf_pipeline.backup.partitions import PARTITION_FORMAT
from sf_pipeline.backup.sensors import SENSOR_NAME, stale_status_keys
from sf_pipeline.devorg.generator import generate_org
from sf_pipeline.devorg.scenarios import run_scenario
from sf_pipeline_tests.deploy.conftest import DagsterProcesses

T = TypeVar("T")
LOCATION = {"repositoryLocationName": "sf_pipeline", "repositoryName": "__repository__"}
OBJECTS = ["Account", "Opportunity"]
MIRROR_STEPS = {"salesforce__Account", "salesforce__Opportunity"}


def key(moment: datetime) -> str:
    return moment.strftime(PARTITION_FORMAT)


def wait_for(what: str, probe: Callable[[], T | None], processes: DagsterProcesses, timeout: float = 600) -> T:
    """Poll until `probe` returns something truthy; fail with the processes' logs if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        processes.assert_running()
        value = probe()
        if value:
            return value
        time.sleep(0.5)  # a probe is a query or two on the instance's database: cheap, so notice runs finish soon
    logs = "\n".join(f"--- {name}\n{processes.tail(name, 3000)}" for name in processes.logs)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{logs}")


def first_finished_run(instance: dg.DagsterInstance, **tags: str) -> dg.DagsterRun | None:
    """The first run with these tags, once it has finished (failing loudly if it failed)."""
    runs = instance.get_runs(dg.RunsFilter(tags=tags), ascending=True)
    return finished_run(instance, runs[0].run_id) if runs else None


def checks_runs_of(
    instance: dg.DagsterInstance, partition: str, objects: tuple[str, ...]
) -> list[dg.DagsterRun] | None:
    """The sensor-launched check runs of `partition` that check `objects` (the first run checking each), once
    every one of them has finished."""
    runs = instance.get_runs(
        dg.RunsFilter(tags={"sf_pipeline/trigger": "history_materialized", "dagster/partition": partition}),
        ascending=True,
    )
    chosen: dict[str, str] = {}
    for run in runs:
        for k in run.asset_check_selection or ():
            chosen.setdefault(k.asset_key.path[-1], run.run_id)
    if any(o not in chosen for o in objects):
        return None
    finished = [finished_run(instance, run_id) for run_id in dict.fromkeys(chosen[o] for o in objects)]
    return None if any(r is None for r in finished) else finished  # type: ignore[return-value]


def finished_run(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRun | None:
    run = instance.get_run_by_id(run_id)
    if run is None or not run.is_finished:
        return None
    if not run.is_success:
        failures = [e.user_message for e in instance.all_logs(run_id) if e.dagster_event and e.dagster_event.is_failure]
        raise AssertionError(f"run {run_id} ({run.job_name}, {run.tags}) ended {run.status}: {failures}")
    return run


def step_intervals(instance: dg.DagsterInstance, run_id: str) -> dict[str, tuple[float, float]]:
    starts = {e.step_key: e.timestamp for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START)}
    ends = {e.step_key: e.timestamp for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)}
    return {k: (starts[k], ends[k]) for k in starts if k in MIRROR_STEPS}


def mutate(processes: DagsterProcesses, query: str, variables: dict[str, Any], field: str, success: str) -> dict:
    result = processes.graphql(query, variables)[field]
    assert result["__typename"] == success, result
    return result


START_SCHEDULE = """mutation($selector: ScheduleSelector!) { startSchedule(scheduleSelector: $selector) {
  __typename ... on ScheduleStateResult { scheduleState { status } } ... on PythonError { message } } }"""
START_SENSOR = """mutation($selector: SensorSelector!) { startSensor(sensorSelector: $selector) {
  __typename ... on Sensor { sensorState { status } } ... on PythonError { message } } }"""
SENSOR_TICKS = """query($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) {
  __typename ... on Sensor { sensorState { ticks(limit: 100) { status skipReason } } } } }"""
LAUNCH_RUN = """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on RunConfigValidationInvalid { errors { message } }
  ... on PythonError { message stack } } }"""
LAUNCH_BACKFILL = """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message stack } } }"""


@pytest.mark.e2e
@pytest.mark.timeout(2400)
def test_daemon_schedules_checks_restores_and_backfills_against_the_deployed_instance(
    deployed_pipeline_factory, dagster_processes, monkeypatch
):
    # Windows are hours on SystemModstamp; the schedule asks for every window closed `lag` ago and not backed
    # up yet. A lag of (minutes past the hour + 30) keeps its cutoff in the previous hour for the next 30
    # minutes, so the newest closed window stays `damaged`, two hours back; the window before it (never backed
    # up: the daemon was not running) is requested on the same first tick. The windows before that are the full
    # load's, so the daemon's runs cover two windows, not four.
    now = datetime.now(UTC)
    hour = now.replace(minute=0, second=0, microsecond=0)
    start, damaged = hour - timedelta(hours=5), hour - timedelta(hours=2)
    backfill_range = (hour - timedelta(hours=4), hour - timedelta(hours=3))
    p = deployed_pipeline_factory(
        OBJECTS, partitions={"cron": "0 * * * *", "start": start.isoformat()}, schedule_lag_minutes=now.minute + 30
    )
    monkeypatch.setenv("DAGSTER_MULTIPROCESS_EXECUTOR_MAX_CONCURRENT", "2")
    org = p.devorg.org

    # The code server and the webserver come up while the scene is set (they need only the environment, which the
    # factory has set); the schedule and the sensor are started through GraphQL as soon as the webserver serves.
    # Nothing ticks before the daemon runs, and it starts once the scene is set. If a minute began since the
    # schedule was started, the daemon's first iteration evaluates that minute's tick at once (Dagster's scheduler
    # runs a schedule's latest due tick), rather than waiting for the next minute.
    began = time.monotonic()
    timings: dict[str, float] = {}
    procs = dagster_processes()

    def start_schedule_and_sensor() -> tuple[dict, dict]:
        schedule = mutate(
            procs,
            START_SCHEDULE,
            {"selector": {**LOCATION, "scheduleName": "backup_schedule"}},
            "startSchedule",
            "ScheduleStateResult",
        )
        sensor = mutate(
            procs,
            START_SENSOR,
            {"selector": {**LOCATION, "sensorName": "history_materialized_checks"}},
            "startSensor",
            "Sensor",
        )
        return schedule, sensor

    starting = procs.start_in_background(procs.start_code_server, procs.start_webserver, start_schedule_and_sensor)

    # The org before the backup began, backed up in one run over the first two windows (the full load).
    p.set_clock(start - timedelta(minutes=1))
    generate_org(org, 300)
    assert p.backup(key(start), key(backfill_range[0])).success
    sf = p.sf()
    # New accounts in the two windows the backfill will cover (the first one's only in the backfill: its window
    # was backed up before the account existed) ...
    created = []
    for window in backfill_range:
        p.set_clock(window + timedelta(minutes=5))
        created.append(sf.Account.create({"Name": f"Backfilled {window:%H:%M}"})["id"])
    # ... and the damage in the window the schedule will back up.
    before = {r["Id"]: r["AccountId"] for r in sf.query_all("SELECT Id, AccountId FROM Opportunity")["records"]}
    orphaned = sorted(i for i, a in before.items() if a)
    run_scenario(org, "orphan-opportunities", at=damaged + timedelta(minutes=1))
    org.set_clock(datetime.now(UTC), freeze=False)  # from now on the org's clock is the real one
    timings["scene set"] = time.monotonic() - began

    # a) the schedule, started through GraphQL, ticks in the daemon and backs up the damaged window
    *_, (schedule, sensor) = starting.result()
    assert schedule["scheduleState"]["status"] == "RUNNING"
    assert sensor["sensorState"]["status"] == "RUNNING"
    procs.start_daemon()
    timings["processes up"] = time.monotonic() - began
    instance = p.instance

    scheduled = wait_for(
        "the scheduled backup of the damaged window",
        lambda: first_finished_run(
            instance, **{"dagster/schedule_name": "backup_schedule", "dagster/partition": key(damaged)}
        ),
        procs,
    )
    timings["scheduled backup done"] = time.monotonic() - began
    assert scheduled.job_name == "backup" and scheduled.tags["sf_pipeline/org"] == "production"
    # its two mirror steps ran at the same time, each in its own process
    intervals = step_intervals(instance, scheduled.run_id)
    assert set(intervals) == MIRROR_STEPS
    (a_start, a_end), (b_start, b_end) = intervals.values()
    assert min(a_end, b_end) > max(a_start, b_start), intervals
    # the window the daemon missed was asked for on the same tick (before the damaged one) and backed up too
    missed = wait_for(
        f"the scheduled backup of missed window {key(backfill_range[1])}",
        lambda: first_finished_run(
            instance, **{"dagster/schedule_name": "backup_schedule", "sf_pipeline/window": key(backfill_range[1])}
        ),
        procs,
    )
    assert missed.tags["sf_pipeline/reason"] == "missed"

    # d) a user backfills those two windows again (one run: BackfillPolicy.single_run)
    backfill_id = mutate(
        procs,
        LAUNCH_BACKFILL,
        {
            "params": {
                "allPartitions": False,
                "partitionsByAssets": [
                    {
                        "assetKey": {"path": [stage, sobject]},
                        "partitions": {"range": {"start": key(backfill_range[0]), "end": key(backfill_range[1])}},
                    }
                    for stage in ("salesforce", "history")
                    for sobject in OBJECTS
                ],
                "title": "backfill two windows",
            }
        },
        "launchPartitionBackfill",
        "LaunchBackfillSuccess",
    )["backfillId"]
    with p.conn() as conn:
        nulls = conn.execute(
            "SELECT count(*) FROM salesforce.opportunity WHERE accountid IS NULL AND id = ANY(%s)", (orphaned,)
        ).fetchone()[0]
        assert nulls == len(orphaned)
        versions = conn.execute(
            "SELECT count(*) FROM salesforce_history.opportunity WHERE dbt_valid_from >= %s", (damaged,)
        ).fetchone()[0]
        assert versions == len(orphaned)

    # b) the sensor sees the history materialization and launches the window's checks, which find the damage
    # (a sensor tick in the middle of the history step sees one object's materialization before the other's and
    # launches a check run for it alone; the other object's check follows in the next run: wait for both)
    check_runs = wait_for(
        "the anomaly checks of the damaged window",
        lambda: checks_runs_of(instance, key(damaged), ("Opportunity", "Account")),
        procs,
    )
    timings["checks done"] = time.monotonic() - began
    evaluations = {
        e.dagster_event.asset_check_evaluation_data.asset_key.path[1]: e.dagster_event.asset_check_evaluation_data
        for run in check_runs
        for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    }
    assert not evaluations["Opportunity"].passed
    assert evaluations["Opportunity"].severity == dg.AssetCheckSeverity.ERROR
    assert evaluations["Account"].passed
    with p.conn() as conn:
        incident = next(s for s in list_incidents(conn, object="Opportunity") if s.report.detector == "mass_nulling")
    assert incident.report.severity == "error" and incident.report.affected_count == len(orphaned)

    # c) the incident's launchpad YAML, pasted into the restore launchpad: a dry run first, which writes nothing,
    # then the same config with dry_run: false and plan: <the dry run's id>, which writes exactly that plan
    pasted = incident.report.launchpad_yaml(incident.id)
    assert "dry_run: true" in pasted and f"incident: {incident.id}" in pasted
    dry_id = mutate(
        procs,
        LAUNCH_RUN,
        {
            "params": {
                "selector": {**LOCATION, "jobName": "restore"},
                "runConfigData": pasted,
            }
        },
        "launchRun",
        "LaunchRunSuccess",
    )["run"]["runId"]
    dry = wait_for("the restore's dry run", lambda: finished_run(instance, dry_id), procs)
    assert dry.is_success
    assert all(
        r["AccountId"] is None
        for r in sf.query_all("SELECT AccountId FROM Opportunity WHERE Id IN ('" + "','".join(orphaned) + "')")[
            "records"
        ]
    )
    pasted = re.sub(
        r"^(\s*)dry_run: true", lambda m: f"{m[1]}dry_run: false\n{m[1]}plan: {dry_id}", pasted, flags=re.MULTILINE
    )
    launched = mutate(
        procs,
        LAUNCH_RUN,
        {
            "params": {
                "selector": {**LOCATION, "jobName": "restore"},
                "runConfigData": pasted,
            }
        },
        "launchRun",
        "LaunchRunSuccess",
    )["run"]["runId"]
    restore = wait_for("the restore run", lambda: finished_run(instance, launched), procs)
    timings["restore done"] = time.monotonic() - began
    assert restore.job_name == "restore" and restore.tags["sf_pipeline/org"] == "production"
    after = {r["Id"]: r["AccountId"] for r in sf.query_all("SELECT Id, AccountId FROM Opportunity")["records"]}
    assert {i: after[i] for i in orphaned} == {i: before[i] for i in orphaned}

    # d) the backfill completes: one run over the range, the new accounts in mirror and history
    backfill = wait_for("the backfill", lambda: _finished_backfill(instance, backfill_id), procs)
    timings["backfill done"] = time.monotonic() - began
    assert backfill.status == BulkActionStatus.COMPLETED_SUCCESS
    [backfill_run] = instance.get_runs(dg.RunsFilter.for_backfill(backfill_id))
    assert backfill_run.is_success
    assert (
        backfill_run.tags["dagster/asset_partition_range_start"],
        backfill_run.tags["dagster/asset_partition_range_end"],
    ) == tuple(key(w) for w in backfill_range)
    with p.conn() as conn:
        mirrored = conn.execute(
            "SELECT id FROM salesforce.account WHERE id = ANY(%s) ORDER BY id", (created,)
        ).fetchall()
        assert [r[0] for r in mirrored] == sorted(created)
        historic = conn.execute(
            "SELECT count(*) FROM salesforce_history.account WHERE id = ANY(%s)", (created,)
        ).fetchone()[0]
        assert historic == len(created)
    # The schedule kept ticking every minute meanwhile: each window it asked for ran once, oldest first.
    # (A schedule's run_key only dedupes the runs of one tick; a sensor's dedupes across all ticks.)
    by_schedule = instance.get_runs(dg.RunsFilter(tags={"dagster/schedule_name": "backup_schedule"}), ascending=True)
    assert [r.tags.get("sf_pipeline/window") for r in by_schedule] == [key(w) for w in (backfill_range[1], damaged)], (
        f"the schedule's runs: {[(r.tags.get('sf_pipeline/window'), r.status.value) for r in by_schedule]}"
    )

    # e) the partition status sensor, ticking in the daemon on its own (running by default), refreshed the
    # backup assets' partition status after these runs: the UI's partitions pages find it current
    keys = [dg.AssetKey([stage, sobject]) for stage in ("salesforce", "history") for sobject in OBJECTS]
    partitions = p.defs().resolve_asset_graph().get(keys[0]).partitions_def
    wait_for("the partition status sensor", lambda: stale_status_keys(instance, keys, partitions) == [], procs)
    ticks = procs.graphql(SENSOR_TICKS, {"selector": {**LOCATION, "sensorName": SENSOR_NAME}})["sensorOrError"]
    reasons = [t["skipReason"] or "" for t in ticks["sensorState"]["ticks"]]
    assert any(r.startswith("refreshed the partition status of") and "salesforce/Account" in r for r in reasons), (
        reasons
    )
    timings["partition status current"] = time.monotonic() - began
    print("\n" + ", ".join(f"{what} after {seconds:.0f} s" for what, seconds in timings.items()))


def _finished_backfill(instance: dg.DagsterInstance, backfill_id: str):
    backfill = instance.get_backfill(backfill_id)
    terminal = {
        BulkActionStatus.COMPLETED_SUCCESS,
        BulkActionStatus.COMPLETED_FAILED,
        BulkActionStatus.FAILED,
        BulkActionStatus.CANCELED,
    }
    return backfill if backfill is not None and backfill.status in terminal else None
