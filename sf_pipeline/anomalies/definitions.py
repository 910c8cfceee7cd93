"""The anomaly stage's Definitions: a check per history asset, the check job and its sensor."""

import dagster as dg

from sf_pipeline.backup.partitions import backup_partitions
from sf_pipeline.settings import Settings

from .checks import anomaly_check
from .sensors import anomaly_sensor


def anomaly_definitions(settings: Settings) -> dg.Definitions:
    partitions = backup_partitions(settings)
    checks = [anomaly_check(obj, settings, partitions) for obj in settings.objects]
    history = [dg.AssetKey(["history", o.name]) for o in settings.objects]
    job = dg.define_asset_job(
        # The job spans the history assets so it takes their partitions (a job of checks alone has none);
        # the sensor's runs select the checks only, never re-materializing history.
        "anomaly_checks",
        selection=dg.AssetSelection.assets(*history),
        description="Anomaly checks of one backup window (launched by the sensor after each history materialization).",
    )
    return dg.Definitions(
        asset_checks=checks, jobs=[job], sensors=[anomaly_sensor(job, [o.name for o in settings.objects])]
    )
