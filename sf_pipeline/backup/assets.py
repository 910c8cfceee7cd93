"""Per configured object: `salesforce/<Object>` (mirror table) and `history/<Object>` (dbt snapshot).

Both are partitioned by the same SystemModstamp windows. A backfill over a range runs as one run per
object (`BackfillPolicy.single_run()`): the range is extracted as one window, so a first full load
of a large org is simply a backfill.
"""



import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from sf_pipeline.salesforce.extract import ExtractStats, extract_window
from sf_pipeline.settings import ObjectSettings, Settings
from sf_pipeline.warehouse import backup_fields, dbt_env_from_url, ensure_mirror_table, load_window
from sf_pipeline.warehouse.erased import drop_erased_rows
from sf_pipeline.warehouse.lookups import email_columns, ensure_lookup_indexes
from sf_pipeline.warehouse.names import HISTORY_SCHEMA, MIRROR_SCHEMA
from sf_pipeline.warehouse.org_identity import verify_org

from .partitions import extraction_bounds
from .reconciliation import ReconcileSettings, learn_vanished
from .resources import SalesforceOrgResource, WarehouseResource

ORG_TAG = "sf_pipeline/org"
"""Run tag naming the org a run works on; dagster.yaml limits the runs per org with it."""


def salesforce_pool(alias: str) -> str:
    """The concurrency pool of an org: every step that calls its API holds one slot of it, across all runs.

    The instance sets the pool's limit (`concurrency: pools:` in dagster.yaml, or
    `dagster instance concurrency set salesforce_<alias> N`), bounded by the org's API limits.
    """
    return f"salesforce_{alias}"


def mirror_key(sobject: str) -> dg.AssetKey:
    return dg.AssetKey(["salesforce", sobject])


def history_key(sobject: str) -> dg.AssetKey:
    return dg.AssetKey(["history", sobject])


def mirror_asset(obj: ObjectSettings, settings: Settings, partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """The asset that extracts one window of `obj` and upserts it into `salesforce.<object>`."""

    @dg.asset(
        key=mirror_key(obj.name),
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name=settings.backup_org,
        kinds={"salesforce", "postgres"},
        description=f"Mirror of {obj.name} in salesforce.{obj.name.lower()}: current state of every record "
                    "(deleted ones kept, flagged isdeleted), loaded window by window on SystemModstamp.",
        pool=salesforce_pool(settings.backup_org),
    )
    def _mirror(context: dg.AssetExecutionContext, salesforce: dg.ResourceParam[SalesforceOrgResource],
                warehouse: dg.ResourceParam[WarehouseResource]) -> dg.MaterializeResult:
        window = context.partition_time_window
        start, end = extraction_bounds(partitions, window)
        client = salesforce.client()
        describe = client.describe(obj.name)
        fields = backup_fields(describe["fields"], obj.exclude)
        names = [f["name"] for f in fields]
        stats = ExtractStats(obj.name, start, end)
        with warehouse.connect() as conn:
            verify_org(conn, client)  # never another org's records into this org's history
            table = ensure_mirror_table(conn, obj.name, describe["fields"], exclude=obj.exclude)
            if table.added_columns:
                context.log.info(f"{obj.name}: new fields {list(table.added_columns)} added as columns")
            for change in table.type_changes:
                context.log.warning(f"{obj.name}: field type changed, mirror and history follow: {change.describe()}")
            # the e-mail lookups of an erasure request (forget) read an index, never the whole table
            built = ensure_lookup_indexes(conn, MIRROR_SCHEMA, obj.name, email_columns(settings.privacy, obj.name))
            if built:
                context.log.info(f"{obj.name}: built the erasure lookup indexes {built} on the mirror")
            batches = extract_window(client, obj.name, names, start, end,
                                     bulk_threshold=settings.bulk_threshold,
                                     bulk_slice_records=settings.bulk_slice_records, stats=stats)
            # one extraction never repeats a record: a first load may COPY straight into the mirror
            result = load_window(conn, table, batches, start, end, unique_ids=True)
            # deletions, merges, purges and hard deletes: flagged, and closed in history by this window's snapshot
            vanished = learn_vanished(client, conn, table, obj.name, start, end, ReconcileSettings(
                settings.reconcile_every_window_below, settings.reconcile_large_every_hours),
                first_load=result.into_empty_table)
            # records erased on request (sf_pipeline.privacy.forget) never come back through a later window
            erased = drop_erased_rows(conn, obj.name)
        if vanished.reconciled:
            context.log.info(f"{obj.name}: reconciled ids ({vanished.reconcile_reason}): "
                             f"{vanished.reconcile_calls} API calls, {vanished.reconcile_seconds:.1f} s")
        if erased:
            context.log.warning(f"{obj.name}: {len(erased)} records erased on request are still in the org and "
                                "changed again; they were not backed up (sf_pipeline.erased_records)")
        if result.extracted != stats.extracted:
            raise dg.Failure(f"{obj.name}: extracted {stats.extracted} records but loaded {result.extracted}")
        context.log.info(f"{obj.name} {start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M}: "
                         f"{stats.extracted} records via {stats.mode}, {client.api_calls} API calls")
        return dg.MaterializeResult(metadata={
            "window_start": dg.MetadataValue.text(start.isoformat()),
            "window_end": dg.MetadataValue.text(end.isoformat()),
            "records_extracted": dg.MetadataValue.int(result.extracted),
            "records_inserted": dg.MetadataValue.int(result.inserted),
            "records_updated": dg.MetadataValue.int(result.updated),
            "records_unchanged": dg.MetadataValue.int(result.unchanged),
            "records_deleted": dg.MetadataValue.int(result.deleted),
            "api_calls": dg.MetadataValue.int(client.api_calls),
            "api_retries": dg.MetadataValue.int(client.retries),
            "org_api_usage": dg.MetadataValue.text(f"{client.usage[0]}/{client.usage[1]}" if client.usage else "unknown"),
            "extract_mode": dg.MetadataValue.text(stats.mode),
            "bytes": dg.MetadataValue.int(client.bytes_received + result.bytes),
            "seconds": dg.MetadataValue.float(round(stats.seconds + 0.0, 3)),
            "load_seconds": dg.MetadataValue.float(round(result.seconds, 3)),
            "fields": dg.MetadataValue.int(len(names)),
            "new_columns": dg.MetadataValue.text(", ".join(table.added_columns) or "none"),
            **vanished.as_metadata(),
            "erased_records_skipped": dg.MetadataValue.json({"count": len(erased), "ids": erased[:50]}),
            "type_changes": dg.MetadataValue.text("; ".join(c.describe() for c in table.type_changes) or "none"),
        })

    return _mirror


class HistoryTranslator(DagsterDbtTranslator):
    """dbt snapshot `<object>` is `history/<Object>`; its window model stands for `salesforce/<Object>`."""

    def __init__(self, objects: Mapping[str, str], group: str):
        super().__init__()
        self.objects = objects  # lower-case table name -> Salesforce API name
        self.group = group

    def _object(self, props: Mapping[str, Any]) -> str | None:
        name = props.get("name", "")
        if props.get("resource_type") == "snapshot":
            return self.objects.get(name)
        if props.get("resource_type") == "model" and name.endswith("_window"):
            return self.objects.get(name[: -len("_window")])
        if props.get("resource_type") == "source":
            return self.objects.get(name)
        return None

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        sobject = self._object(dbt_resource_props)
        if sobject is None:
            return super().get_asset_key(dbt_resource_props)
        if dbt_resource_props.get("resource_type") == "snapshot":
            return history_key(sobject)
        return mirror_key(sobject)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return self.group


def history_assets(settings: Settings, partitions: dg.PartitionsDefinition, project: DbtProject,
                   manifest: Path) -> dg.AssetsDefinition:
    objects = {o.name.lower(): o.name for o in settings.objects}

    @dbt_assets(
        manifest=manifest,
        select="resource_type:snapshot",
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        dagster_dbt_translator=HistoryTranslator(objects, settings.backup_org),
        name=f"history_{settings.backup_org}",
        project=project,
    )
    def _history(context: dg.AssetExecutionContext, dbt: dg.ResourceParam[DbtCliResource],
                 warehouse: dg.ResourceParam[WarehouseResource]):
        start, end = extraction_bounds(partitions, context.partition_time_window)
        # profiles.yml reads the connection from SF_PIPELINE_PG_*; derive them from the one database URL.
        os.environ.update(dbt_env_from_url(warehouse.database_url))
        variables = {"window_start": start.isoformat(), "window_end": end.isoformat()}
        yield from dbt.cli(["snapshot", "--vars", json.dumps(variables)], context=context).stream()
        # dbt made the history tables (its post-hook indexes them by record and time); the e-mail lookups of an
        # erasure request (forget) need theirs too, made now rather than at the request (warehouse/lookups.py)
        with warehouse.connect() as conn:
            for key in context.selected_asset_keys:
                sobject = objects.get(key.path[-1].lower())
                if sobject is not None:
                    built = ensure_lookup_indexes(conn, HISTORY_SCHEMA, sobject, email_columns(settings.privacy, sobject))
                    if built:
                        context.log.info(f"{sobject}: built the erasure lookup indexes {built} on the history")

    return _history
