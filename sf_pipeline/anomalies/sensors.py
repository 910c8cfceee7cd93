"""The sensor that launches the anomaly checks right after each history materialization.

It keeps its own cursor over the materialization records of every `history/<Object>` asset and asks for
one check run per window, selecting the checks of the objects materialized in that window.
"""

import json
from collections import defaultdict

import dagster as dg

from .checks import check_key


def anomaly_sensor(job, objects: list[str]) -> dg.SensorDefinition:
    @dg.sensor(
        job=job,
        name="history_materialized_checks",
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Runs the anomaly checks of each window as soon as its history is materialized.",
    )
    def _sensor(context: dg.SensorEvaluationContext):
        cursor: dict[str, int] = json.loads(context.cursor) if context.cursor else {}
        by_partition: dict[str, list[str]] = defaultdict(list)
        newest: dict[str, int] = {}
        for sobject in objects:
            key = dg.AssetKey(["history", sobject])
            after = cursor.get(sobject)
            result = context.instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, after_storage_id=after), limit=1000, ascending=True
            )
            for record in result.records:
                partition = record.partition_key
                if partition and sobject not in by_partition[partition]:
                    by_partition[partition].append(sobject)
                newest[sobject] = max(newest.get(sobject, 0), record.storage_id)
        for partition, sobjects in sorted(by_partition.items()):
            marker = "-".join(str(newest[s]) for s in sobjects)
            yield dg.RunRequest(
                run_key=f"checks:{partition}:{marker}",
                partition_key=partition,
                asset_selection=[],
                asset_check_keys=[check_key(s) for s in sobjects],
                tags={"sf_pipeline/trigger": "history_materialized"},
            )
        cursor.update(newest)
        context.update_cursor(json.dumps(cursor))

    return _sensor
