"""The anomaly stage's Definitions: a check per history asset, the check job and its sensor."""

import dagster as dg

from sf_pipeline.backup.partitions import backup_partitions
from sf_pipeline.settings import Settings

from .checks import anomaly_check
from .sensors import anomaly_sensor
from .settings import resolve_settings


def anomaly_definitions(settings: Settings) -> dg.Definitions:
    # Thresholds are resolved here, when the code location loads: a bad one fails the load (and
    # `dagster definitions validate`) with the key it is at, not the first check after a backup.
    thresholds = resolve_settings(
        settings.anomalies, {o.name: o.anomalies for o in settings.objects}, [o.name for o in settings.objects]
    )
    partitions = backup_partitions(settings)
    checks = [anomaly_check(obj, settings, partitions, thresholds[obj.name]) for obj in settings.objects]
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
