"""The backup stage's Definitions: assets per object, the `backup` job and its schedule."""

from __future__ import annotations

import dagster as dg
from dagster_dbt import DbtProject

from sf_pipeline.settings import Settings

from .assets import ORG_TAG, history_assets, history_key, mirror_asset, mirror_key
from .checks import backup_complete_check
from .dbt import DbtCli, dbt_executable, dbt_project_dir, prepare_manifest
from .partitions import backup_partitions
from .resources import SalesforceOrgResource, WarehouseResource, locked_io_manager, locked_resource
from .schedules import backup_schedule


def backup_executor() -> dg.ExecutorDefinition:
    """One process per step, `max_concurrent` at a time, forked from a server that has the code loaded.

    `spawn` (the multiprocess default) starts each step's process by importing Dagster, dbt and the code
    location again, seconds of CPU per object and window; `forkserver` pays that once per run, in a
    server that preloads `sf_pipeline.backup.preload` (the code location) and forks each step from it.
    """

    @dg.configured(dg.multiprocess_executor, config_schema={
        "max_concurrent": dg.Field(int, default_value=0, description=(
            "Steps of this run that may run at once (each object's extraction is a step). 0: the "
            "DAGSTER_MULTIPROCESS_EXECUTOR_MAX_CONCURRENT variable, else the CPU count. Across runs, the org's "
            "pool (salesforce_<alias>) caps the steps calling Salesforce.")),
    })
    def multiprocess_forkserver(config: dict) -> dict:
        return {"max_concurrent": config["max_concurrent"],
                "start_method": {"forkserver": {"preload_modules": ["sf_pipeline.backup.preload"]}}}

    return multiprocess_forkserver


def default_executor() -> dg.ExecutorDefinition:
    """The other jobs' executor: Dagster's multiprocess executor with `max_concurrent` as its only launch setting
    (its default config would also let a run config name modules for a forkserver to import)."""

    @dg.configured(dg.multiprocess_executor, config_schema={
        "max_concurrent": dg.Field(int, default_value=0, description=(
            "Steps of this run that may run at once. 0: the DAGSTER_MULTIPROCESS_EXECUTOR_MAX_CONCURRENT "
            "variable, else the CPU count.")),
    })
    def multiprocess(config: dict) -> dict:
        return {"max_concurrent": config["max_concurrent"]}

    return multiprocess


def backup_definitions(settings: Settings) -> dg.Definitions:
    partitions = backup_partitions(settings)
    project_dir = dbt_project_dir()
    manifest = prepare_manifest(project_dir, [o.name for o in settings.objects])
    project = DbtProject(project_dir=project_dir, profiles_dir=project_dir)
    mirrors = [mirror_asset(obj, settings, partitions) for obj in settings.objects]
    history = history_assets(settings, partitions, project, manifest)
    job = dg.define_asset_job(
        # the anomaly checks run in their own run, launched by the sensor once history is materialized
        "backup", selection=dg.AssetSelection.assets(*mirrors, history).without_checks(),
        description=f"Back up the configured objects of '{settings.backup_org}': extract each window into the "
                    "mirror tables, then snapshot it into history.",
        executor_def=backup_executor(),
        tags={ORG_TAG: settings.backup_org},
    )
    complete = backup_complete_check([mirror_key(o.name) for o in settings.objects],
                                     [history_key(o.name) for o in settings.objects], partitions,
                                     settings.schedule_lag_minutes, settings.max_windows_per_tick)
    return dg.Definitions(
        assets=[*mirrors, history],
        asset_checks=[complete],
        jobs=[job],
        schedules=[backup_schedule(job, partitions, settings.schedule_lag_minutes, backed_up_keys=list(history.keys),
                                   max_windows_per_tick=settings.max_windows_per_tick,
                                   retry_max_minutes=settings.retry_max_minutes)],
        # Settings file and environment only: run config cannot reach any of these (see resources.py).
        resources={
            "salesforce": locked_resource(SalesforceOrgResource.from_settings(settings),
                                          f"The backed-up org '{settings.backup_org}' (settings file)."),
            "warehouse": locked_resource(WarehouseResource(), "The backup database (SF_PIPELINE_DATABASE_URL)."),
            "dbt": locked_resource(
                DbtCli(project_dir=project, profiles_dir=str(project_dir), dbt_executable=dbt_executable()),
                "dbt from this environment, on the project the settings generate."),
            "io_manager": locked_io_manager(),
        },
        executor=default_executor(),
    )
