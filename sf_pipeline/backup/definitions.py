"""The backup stage's Definitions: assets per object, the `backup` job and its schedule."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.definitions.executor_definition import multiple_process_executor_requirements
from dagster._core.execution.retries import RetryMode
from dagster._core.executor import child_process_executor
from dagster._core.executor.multiprocess import MultiprocessExecutor
from dagster_dbt import DbtProject

from sf_pipeline.resources import (
    ORG_TAG,
    DbtCli,
    SalesforceOrgResource,
    WarehouseResource,
    database_url_env,
    history_key,
    locked_io_manager,
    locked_resource,
    mirror_key,
    org_resource_keys,
)
from sf_pipeline.salesforce.catalog import Catalog
from sf_pipeline.settings import BackupOrgSettings, ObjectSettings, Settings
from sf_pipeline.warehouse.dbt_project import dbt_env_from_url, dbt_executable, dbt_project_dir, prepare_manifest

from .assets import history_assets, mirror_asset, shares_step, small_mirrors_asset
from .catalog_asset import catalog_spec
from .checks import backup_complete_check
from .files import file_bodies_findings
from .partitions import backup_partitions
from .schedules import backup_schedule
from .sensors import partition_status_sensor

# How long the executor waits on one step process's event queue before it looks at the next (Dagster's is 20 ms).
CHILD_EVENT_POLL_SECONDS = 0.002


class BackupExecutor(MultiprocessExecutor):
    """Dagster's multiprocess executor, taking a step process's events as fast as it sends them.

    The run's process takes one event from each running step in turn, waiting up to
    `dagster._core.executor.child_process_executor.TICK` (20 ms) on a step that has none. While a step of
    hundreds of small objects sends its 2 events per object (an output and a materialization), a step
    that is busy elsewhere (a large object's query, a process starting) makes each of them wait those 20 ms:
    850 events took 17 s to reach the run after the step had finished (an unchanged window of issue 14's org,
    BENCHMARKS.md launch-window), and the next step waits for them. The wait is shortened to
    `CHILD_EVENT_POLL_SECONDS` while this executor runs (a few % of a CPU for the polls of idle steps).
    """

    def execute(self, plan_context: Any, execution_plan: Any) -> Iterator[Any]:
        previous = child_process_executor.TICK
        child_process_executor.TICK = min(previous, CHILD_EVENT_POLL_SECONDS)
        try:
            yield from super().execute(plan_context, execution_plan)
        finally:
            child_process_executor.TICK = previous


@dg.executor(
    name="multiprocess_forkserver",
    config_schema={
        "max_concurrent": dg.Field(
            int,
            default_value=0,
            description=(
                "Steps of this run that may run at once (each object's extraction is a step). 0: the "
                "DAGSTER_MULTIPROCESS_EXECUTOR_MAX_CONCURRENT variable, else the CPU count. Across runs, the org's "
                "pool (salesforce_<alias>) caps the steps calling Salesforce."
            ),
        ),
    },
    requirements=multiple_process_executor_requirements(),
)
def _backup_executor(init_context: dg.InitExecutorContext) -> BackupExecutor:
    return BackupExecutor(
        retries=RetryMode.ENABLED,
        max_concurrent=init_context.executor_config["max_concurrent"],
        start_method="forkserver",
        explicit_forkserver_preload=["sf_pipeline.backup.preload"],
    )


def backup_executor() -> dg.ExecutorDefinition:
    """One process per step, `max_concurrent` at a time, forked from a server that has the code loaded: the
    executor of every job of the code location (the backup jobs, the restore, the anomaly checks, and the runs
    Dagster launches for backfills and asset checks, which take the Definitions' executor).

    `spawn` (the multiprocess default) starts each step's process by importing Dagster, dbt and the code
    location again, seconds of CPU per step (per object and window in a backup, per object in a check run);
    `forkserver` pays that once per run, in a server that preloads `sf_pipeline.backup.preload` (the code
    location) and forks each step from it. Its events reach the run without Dagster's 20 ms wait per busy step
    (`BackupExecutor`). Only `max_concurrent` is settable from a run config: Dagster's own config would also let
    a run config name modules for the forkserver to import.
    """
    return _backup_executor


def backup_definitions(settings: Settings, catalogs: Mapping[str, Catalog] | None = None) -> dg.Definitions:
    """Every backed-up org's assets, job, schedule and check. The primary org (the first) keeps today's names:
    `salesforce/<Object>`, `history/<Object>`, job `backup`; each other org has its alias in front of its asset
    keys, its own group, pool (`salesforce_<alias>`), job `backup_<alias>`, schedule, database and resources."""
    catalogs = catalogs or {}
    partitions = backup_partitions(settings)
    project_dir = dbt_project_dir()
    everything = list(dict.fromkeys(o.name for org in settings.backups for o in org.objects))
    # parsed on the primary org's database when this process knows it: its first snapshot reuses the parse
    manifest = prepare_manifest(project_dir, everything, _known_database_url())
    project = DbtProject(project_dir=project_dir, profiles_dir=project_dir)
    several = len(settings.backups) > 1
    defs = [
        _org_definitions(settings, org, partitions, project, manifest, several, catalogs.get(org.alias))
        for org in settings.backups
    ]
    shared = dg.Definitions(
        resources={
            "dbt": locked_resource(
                DbtCli(project_dir=project, profiles_dir=str(project_dir), dbt_executable=dbt_executable()),
                "dbt from this environment, on the project the settings generate.",
            ),
            "io_manager": locked_io_manager(),
        },
        executor=backup_executor(),
        # the partition status the UI draws, kept current in the daemon (history first: the pages people open)
        sensors=[
            partition_status_sensor(
                [history_key(o.name, org.key_prefix) for org in settings.backups for o in org.objects]
                + [mirror_key(o.name, org.key_prefix) for org in settings.backups for o in org.objects],
                partitions,
            )
        ],
    )
    return dg.Definitions.merge(shared, *defs)


def _known_database_url() -> str | None:
    """The primary org's backup database URL if this process has a valid one (a run would fail on a bad one: the
    code location still loads)."""
    url = os.environ.get(database_url_env())
    try:
        return url if url and dbt_env_from_url(url) else None
    except ValueError:
        return None


def _stamp(obj: ObjectSettings) -> str | None:
    """The field an object's windows are read on: SystemModstamp unless the catalog planned otherwise."""
    return obj.plan.stamp_field if obj.plan is not None else "SystemModstamp"


def mirror_assets(
    settings: Settings, org: BackupOrgSettings, partitions: dg.TimeWindowPartitionsDefinition
) -> list[dg.AssetsDefinition]:
    """The mirror assets of an org: the small objects (the catalog counted fewer records than
    `backup.shared_step_below_records`) in one subsettable step, every other object in its own step."""
    small = [o for o in org.objects if shares_step(o, settings)]
    if len(small) < 2:
        small = []
    shared = [small_mirrors_asset(small, settings, partitions, org)] if small else []
    names = {o.name for o in small}
    return [*shared, *(mirror_asset(o, settings, partitions, org) for o in org.objects if o.name not in names)]


def _org_definitions(
    settings: Settings,
    org: BackupOrgSettings,
    partitions: dg.TimeWindowPartitionsDefinition,
    project: DbtProject,
    manifest: Path,
    several: bool,
    catalog: Catalog | None,
) -> dg.Definitions:
    mirrors = mirror_assets(settings, org, partitions)
    history = history_assets(settings, partitions, project, manifest, org, only_its_objects=several)
    job = dg.define_asset_job(
        # the anomaly checks run in their own run, launched by the sensor once history is materialized
        "backup" if org.primary else f"backup_{org.alias}",
        selection=dg.AssetSelection.assets(*mirrors, history).without_checks(),
        description=f"Back up the configured objects of '{org.alias}': extract each window into the "
        "mirror tables, then snapshot it into history.",
        executor_def=backup_executor(),
        tags={ORG_TAG: org.alias},
    )
    complete = backup_complete_check(
        [mirror_key(o.name, org.key_prefix) for o in org.objects],
        [history_key(o.name, org.key_prefix) for o in org.objects],
        partitions,
        settings.schedule_lag_minutes,
        settings.max_windows_per_tick,
        name="backup_complete" if org.primary else f"backup_complete_{org.alias}",
        object_names=[o.name for o in org.objects],
        stamps=[_stamp(o) for o in org.objects],
        reconcile_every_hours=settings.reconcile_large_every_hours,
        resource_keys=org_resource_keys(org),
        # file bodies live in the primary org's database and blob store
        more_findings=file_bodies_findings(settings) if org.primary else None,
    )
    salesforce_key, warehouse_key = org_resource_keys(org)
    database = database_url_env(None if org.primary else org.alias)
    return dg.Definitions(
        assets=[*mirrors, history, *([catalog_spec(org, catalog)] if catalog is not None else [])],
        asset_checks=[complete],
        jobs=[job],
        schedules=[
            backup_schedule(
                job,
                partitions,
                settings.schedule_lag_minutes,
                backed_up_keys=list(history.keys),
                max_windows_per_tick=settings.max_windows_per_tick,
                retry_max_minutes=settings.retry_max_minutes,
            )
        ],
        # Settings file and environment only: run config cannot reach any of these (see resources.py).
        resources={
            salesforce_key: locked_resource(
                SalesforceOrgResource.from_settings(settings, org.alias),
                f"The backed-up org '{org.alias}' (settings file).",
            ),
            warehouse_key: locked_resource(
                WarehouseResource(None if org.primary else org.alias),
                f"The backup database of '{org.alias}' ({database}).",
            ),
        },
    )
