"""Objects back up in parallel: each `salesforce/<Object>` is its own step in the org's concurrency pool.

The `backup` job runs on the multiprocess executor (one process per step), so two mirror steps of one
run overlap in time; the pool's limit, kept in the instance's database, bounds them across runs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from sf_pipeline.devorg.generator import generate_org
from sf_pipeline.resources import salesforce_pool
from sf_pipeline_tests.pipeline_fixtures import Pipeline

T0 = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
WINDOW = T0.strftime("%Y-%m-%d-%H:%M")
POOL = salesforce_pool("production")
MIRROR_STEPS = {"salesforce__Account", "salesforce__Opportunity"}


def backup_job() -> dg.JobDefinition:
    """The `backup` job built from the settings in the environment (reconstructed in each step's process)."""
    from sf_pipeline.definitions import build_definitions

    return build_definitions().resolve_job_def("backup")


def test_every_step_calling_salesforce_is_in_the_orgs_pool(pipeline):
    defs = pipeline.defs()
    backup = defs.resolve_job_def("backup")
    pools = {node.name: node.pool for node in backup.graph.node_defs}
    assert {name for name, pool in pools.items() if pool == POOL} == {
        f"salesforce__{o}" for o in ("Account", "Contact", "Opportunity", "Case")
    }
    assert [pool for name, pool in pools.items() if name.startswith("history")] == [None]  # dbt, no API calls
    assert [node.pool for node in defs.resolve_job_def("restore").graph.node_defs] == [POOL]
    # steps run in separate processes, forked from one that has the code loaded; the launchpad takes
    # `execution: config: max_concurrent`
    assert backup.executor_def.name == "multiprocess_forkserver"
    assert set(backup.executor_def.config_schema.config_type.fields) == {"max_concurrent"}
    # so do the other jobs' steps, and those of the runs Dagster launches for backfills (the Definitions' executor)
    for job in (
        defs.resolve_job_def("restore"),
        defs.resolve_job_def("anomaly_checks"),
        defs.resolve_implicit_global_asset_job_def(),
    ):
        assert job.executor_def.name == "multiprocess_forkserver", job.name
    assert backup.tags["sf_pipeline/org"] == "production"


def _step_intervals(instance: dg.DagsterInstance, run_id: str) -> dict[str, tuple[float, float]]:
    starts = {e.step_key: e.timestamp for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START)}
    ends = {e.step_key: e.timestamp for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)}
    return {key: (starts[key], ends[key]) for key in starts if key in MIRROR_STEPS}


def _overlap(intervals: dict[str, tuple[float, float]]) -> float:
    (a_start, a_end), (b_start, b_end) = intervals.values()
    return min(a_end, b_end) - max(a_start, b_start)


def _run_mirrors(p: Pipeline) -> dg.JobExecutionResult:
    """The `backup` job's mirror steps for one window, through the multiprocess executor (as a launched run)."""
    with dg.execute_job(
        dg.reconstructable(backup_job),
        instance=p.instance,
        tags={"dagster/partition": WINDOW},
        asset_selection=[dg.AssetKey(["salesforce", "Account"]), dg.AssetKey(["salesforce", "Opportunity"])],
        run_config={"execution": {"config": {"max_concurrent": 2}}},
    ) as result:
        assert result.success, [e.message for e in result.all_events if e.is_failure]
        return result


@pytest.mark.e2e
def test_mirror_steps_overlap_and_the_orgs_pool_limit_serializes_them(deployed_pipeline_factory):
    p = deployed_pipeline_factory(
        ["Account", "Opportunity"], partitions={"cron": "0 * * * *", "start": T0.strftime("%Y-%m-%dT%H:%M:%SZ")}
    )
    p.set_clock(T0 - timedelta(minutes=1))
    generate_org(p.devorg.org, 100)
    p.set_clock(T0 + timedelta(hours=1, minutes=10))
    # Every query answers after a second, as a busy org does: each mirror step takes a few seconds.
    p.devorg.app.faults.add("slow", rate=1.0, delay=1.0, path="/query")

    # The pool's limit comes from deploy/dagster.yaml (default_limit 4): both mirror steps run at once.
    parallel = _step_intervals(p.instance, _run_mirrors(p).run_id)
    assert set(parallel) == MIRROR_STEPS
    assert _overlap(parallel) > 1.0, parallel
    assert p.instance.event_log_storage.get_concurrency_info(POOL).slot_count == 4

    # One slot for the org (`dagster instance concurrency set salesforce_production 1`): one step at a time,
    # however many processes the run may use.
    p.instance.event_log_storage.set_concurrency_slots(POOL, 1)
    serial = _step_intervals(p.instance, _run_mirrors(p).run_id)
    assert _overlap(serial) <= 0, serial
    with p.conn() as conn:
        assert conn.execute("SELECT count(*) FROM salesforce.opportunity").fetchone()[0] == 100


# ---- the run takes a busy step's events as fast as they come while another step is busy elsewhere
EVENTS = 400


@dg.op
def _many_events():
    for i in range(EVENTS):
        yield dg.AssetMaterialization(asset_key=f"probe_{i}")
    yield dg.Output(None)


@dg.op
def _busy_elsewhere() -> None:
    import time

    time.sleep(15)  # a large object's query, say: no event meanwhile


@dg.op(ins={"after": dg.In(dg.Nothing)})
def _next_step() -> None:
    return None


def _event_probe_job() -> dg.JobDefinition:
    from sf_pipeline.backup.definitions import backup_executor

    @dg.job(executor_def=backup_executor())
    def event_probe():
        _next_step(after=_many_events())
        _busy_elsewhere()

    return event_probe


def test_a_steps_events_reach_the_run_while_another_step_is_busy(tmp_path, pg_url: str):
    # Dagster's executor waits 20 ms on a step with no event before it takes the next event of another: 400 events
    # of one step took 8 s to reach the run while the other slept, and the step after it waited for them.
    # (The instance names its database itself: a forkserver started by an earlier test keeps that test's
    # environment, which deploy/dagster.yaml's DAGSTER_PG_* would read.)
    from dagster._core.executor import child_process_executor

    from sf_pipeline_tests.pipeline_fixtures import dagster_home

    tick = child_process_executor.TICK
    with dg.DagsterInstance.from_config(str(dagster_home(tmp_path / "home", pg_url))) as instance:
        with dg.execute_job(
            dg.reconstructable(_event_probe_job),
            instance=instance,
            run_config={"execution": {"config": {"max_concurrent": 2}}},
        ) as result:
            assert result.success
        logs = instance.all_logs(result.run_id)
    first = {}
    for entry in logs:
        if entry.dagster_event is not None and entry.step_key:
            first.setdefault((entry.step_key, entry.dagster_event.event_type_value), entry.timestamp)
    done = first[("_many_events", "STEP_SUCCESS")]  # written by the step's own process
    launched = first[("_next_step", "STEP_WORKER_STARTING")]  # by the run, once it had taken every event
    assert launched - done < EVENTS * tick / 2, (launched - done, tick)
    assert first[("_busy_elsewhere", "STEP_SUCCESS")] > launched  # the other step was still busy meanwhile
    assert child_process_executor.TICK == tick  # Dagster's own wait again after the run
