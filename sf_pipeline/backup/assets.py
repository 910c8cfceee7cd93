"""Per configured object: `salesforce/<Object>` (mirror table) and `history/<Object>` (dbt snapshot).

Both are partitioned by the same SystemModstamp windows. A backfill over a range runs as one run per
object (`BackfillPolicy.single_run()`): the range is extracted as one window, so a first full load
of a large org is simply a backfill.
"""

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from sf_pipeline.resources import (
    WarehouseResource,
    history_key,
    mirror_key,
    org_resource_keys,
    salesforce_pool,
)
from sf_pipeline.salesforce.catalog import ObjectPlan, ReadApi, SkippedObject, Strategy, plan_object
from sf_pipeline.salesforce.extract import ExtractStats, extract_all, extract_window
from sf_pipeline.settings import BackupOrgSettings, ObjectSettings, Settings
from sf_pipeline.warehouse import backup_fields, dbt_env_from_url, ensure_mirror_table, load_window
from sf_pipeline.warehouse.dbt_project import environment, parse_outcome, reusing_parse, snapshot_env
from sf_pipeline.warehouse.erased import drop_erased_rows
from sf_pipeline.warehouse.full_read import load_full_read
from sf_pipeline.warehouse.lookups import email_columns, ensure_lookup_indexes
from sf_pipeline.warehouse.names import HISTORY_SCHEMA, MIRROR_SCHEMA
from sf_pipeline.warehouse.run_state import keep_calculated_columns, kept_calculated_columns
from sf_pipeline.warehouse.schema import mirror_columns

from .files import backup_window_files
from .partitions import extraction_bounds
from .preflight import objects_preflight, window_preflight
from .reconciliation import ReconcileSettings, VanishedReport, learn_vanished


def window_plan(name: str, describe: dict[str, Any]) -> ObjectPlan:
    """How this window reads the object, from its describe now; an object the catalog would skip but that has
    SystemModstamp (named in an object list) is read incrementally, as it always was."""
    plan = plan_object(describe, describe)
    if isinstance(plan, SkippedObject):
        if any(f["name"] == "SystemModstamp" for f in describe.get("fields", [])):
            return ObjectPlan(name, Strategy.INCREMENTAL, ReadApi.BULK_OR_REST, (), "SystemModstamp (listed by name)")
        raise dg.Failure(f"{name} cannot be backed up: {plan.reason}")
    return plan


SYNTHETIC_STAMP = {"name": "SystemModstamp", "type": "datetime", "label": "Version time (set by sf-pipeline)"}


def table_fields_for(plan: ObjectPlan, describe_fields: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The describe fields a mirror table holds: an object without SystemModstamp gets a `systemmodstamp` column
    all the same (CreatedDate of an append-only row, the window a full read saw a change in), since the mirror
    and history order versions by it."""
    if plan.strategy == Strategy.INCREMENTAL:
        return describe_fields
    return [*describe_fields, SYNTHETIC_STAMP]


def catalog_metadata(obj: ObjectSettings) -> dict[str, Any]:
    plan = obj.plan
    if plan is None:
        return {}
    return {
        "strategy": plan.strategy.value,
        "read_api": plan.read_api.value,
        "field_count": plan.field_count,
        "strategy_reason": plan.reason,
    }


def run_objects(context: dg.AssetExecutionContext, org: BackupOrgSettings) -> list[str]:
    """The objects of `org` whose mirror this run materializes (all of them when the run selects everything)."""
    selection = context.run.asset_selection
    configured = [o.name for o in org.objects]
    if not selection:
        return configured
    prefix = list(org.key_prefix)
    chosen = {
        k.path[-1]
        for k in selection
        if len(k.path) == len(prefix) + 2 and list(k.path[:-2]) == prefix and k.path[-2] == "salesforce"
    }
    return [name for name in configured if name in chosen] or configured


def mirror_description(obj: ObjectSettings) -> str:
    return (
        f"Mirror of {obj.name} in salesforce.{obj.name.lower()}: current state of every record "
        "(deleted ones kept, flagged isdeleted), loaded window by window on "
        f"{(obj.plan.stamp_field or 'a whole read') if obj.plan else 'SystemModstamp'}."
    )


def shares_step(obj: ObjectSettings, settings: Settings) -> bool:
    """Whether `obj` is small: the catalog counted fewer than `backup.shared_step_below_records` records in it.
    Small objects share one step per window (`small_mirrors_asset`); an object of unknown size (no catalog, or
    the org refused to count it) keeps its own, as every object did before."""
    records = obj.plan.records if obj.plan is not None else None
    return records is not None and records < settings.shared_step_below_records


def mirror_asset(
    obj: ObjectSettings, settings: Settings, partitions: dg.PartitionsDefinition, org: BackupOrgSettings | None = None
) -> dg.AssetsDefinition:
    """The asset that extracts one window of `obj` and upserts it into `salesforce.<object>`: its own step."""
    org = org or settings.backups[0]
    resource_keys = org_resource_keys(org)

    @dg.asset(
        key=mirror_key(obj.name, org.key_prefix),
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name=org.alias,
        kinds={"salesforce", "postgres"},
        description=mirror_description(obj),
        pool=salesforce_pool(org.alias),
        metadata=catalog_metadata(obj),
        required_resource_keys=set(resource_keys),
    )
    def _mirror(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        start, end = extraction_bounds(partitions, context.partition_time_window)
        client = getattr(context.resources, resource_keys[0]).client()
        with getattr(context.resources, resource_keys[1]).connect() as conn:
            since = usage_mark(client)
            pre = window_preflight(
                conn,
                client,
                context.run_id,
                obj.name,
                run_objects(context, org),
                [o.name for o in org.objects],
                start,
                end,
            )
            return backup_object(context, obj, settings, org, client, conn, pre, start, end, since)

    return _mirror


def small_objects_step_name(org: BackupOrgSettings) -> str:
    return "salesforce_small_objects" if org.primary else f"{org.alias}__salesforce_small_objects"


def small_mirrors_asset(
    objects: Sequence[ObjectSettings],
    settings: Settings,
    partitions: dg.PartitionsDefinition,
    org: BackupOrgSettings | None = None,
) -> dg.AssetsDefinition:
    """The mirrors of the small objects (`shares_step`) in ONE subsettable step per window: each is still its own
    asset `salesforce/<Object>` with its own materialization and metadata, but an unchanged window of hundreds of
    small objects costs one step (one process, one login, one database connection), not one per object. A run
    or backfill selecting some of them runs the step for those only (`can_subset`)."""
    org = org or settings.backups[0]
    resource_keys = org_resource_keys(org)
    by_key = {mirror_key(o.name, org.key_prefix): o for o in objects}

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                key,
                group_name=org.alias,
                kinds={"salesforce", "postgres"},
                description=mirror_description(o),
                metadata=catalog_metadata(o),
                skippable=True,
            )
            for key, o in by_key.items()
        ],
        name=small_objects_step_name(org),
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        can_subset=True,
        pool=salesforce_pool(org.alias),
        required_resource_keys=set(resource_keys),
        # first in the executor's queue (it would come after every large object's step, by name): its long
        # stream of events then overlaps the large objects' steps, which mostly start processes, in the other
        # slots, instead of following them (BENCHMARKS.md, launch-window)
        op_tags={"dagster/priority": "1"},
    )
    def _small_mirrors(context: dg.AssetExecutionContext):
        start, end = extraction_bounds(partitions, context.partition_time_window)
        chosen = [o for key, o in by_key.items() if key in context.selected_asset_keys]
        if not chosen:
            return
        output_keys_once(context)
        client = getattr(context.resources, resource_keys[0]).client()
        failed: list[str] = []
        step_calls = client.api_calls
        with getattr(context.resources, resource_keys[1]).connect() as conn:
            since = usage_mark(client)  # the first object's figures include the run's preflight, if it asked
            pres = objects_preflight(
                conn,
                client,
                context.run_id,
                [o.name for o in chosen],
                run_objects(context, org),
                [o.name for o in org.objects],
                start,
                end,
            )
            unchanged: list[str] = []
            known = known_tables(conn, [o.name for o in chosen])  # one catalog read for all, not two per object
            for obj in chosen:
                try:
                    result = backup_object(
                        context,
                        obj,
                        settings,
                        org,
                        client,
                        conn,
                        pres[obj.name],
                        start,
                        end,
                        since,
                        quiet=True,
                        known=known,
                    )
                    conn.commit()  # each object's window stands on its own: a later object's failure keeps it
                except Exception as exc:  # noqa: BLE001 - one object's failure must not stop the others' backup
                    conn.rollback()
                    failed.append(obj.name)
                    context.log.error(
                        f"{obj.name}: window {start:%Y-%m-%d %H:%M} not backed up: {type(exc).__name__}: {exc}"
                    )
                    continue
                finally:
                    since = usage_mark(client)
                if window_changed_nothing(result.metadata or {}):
                    unchanged.append(obj.name)
                yield result
        if unchanged:
            context.log.info(unchanged_summary(unchanged, len(chosen), start, end, client.api_calls - step_calls))
        if failed:
            raise dg.Failure(
                f"{len(failed)} of {len(chosen)} small objects failed in this window (see the "
                f"log for each error): {', '.join(failed)}; the others are backed up",
                metadata={"failed_objects": ", ".join(failed)},
            )

    return _small_mirrors


def output_keys_once(context: dg.AssetExecutionContext) -> None:
    """For every output a step yields, Dagster checks that no asset depending on it was yielded before it
    (`execute_step._step_output_error_checked_user_event_sequence`), listing the step's output asset keys each
    time (`StepExecutionContext.get_output_asset_keys`, a loop over all of them): quadratic in a step's outputs,
    0.85 s of a step of 425 objects (BENCHMARKS.md, launch-window). The list cannot change within a step, so this
    step's context computes it once; the check itself runs as before. Any other Dagster shape: left as it is."""
    step = getattr(context.op_execution_context, "_step_execution_context", None)
    listing = getattr(step, "get_output_asset_keys", None)
    if listing is None:
        return
    keys = listing()
    step.get_output_asset_keys = lambda: keys  # this context's, shadowing the method for this step only


def window_changed_nothing(metadata: Mapping[str, Any]) -> bool:
    """Whether a mirror materialization's window changed nothing in the mirror: no record extracted, nothing
    vanished and no field type changed (its history snapshot would read no row). Anything missing counts as a
    change, so nothing is skipped on a guess."""

    def value(name: str, default: Any) -> Any:
        item = metadata.get(name, default)
        return item.value if isinstance(item, dg.MetadataValue) else item

    return (
        value("records_extracted", 1) == 0
        and value("vanished_total", 1) == 0
        and value("type_changes", "none") == "none"
    )


def unchanged_summary(names: Sequence[str], of: int, start: datetime, end: datetime, api_calls: int) -> str:
    """One log line for the objects of a shared step whose window changed nothing, instead of two lines each (an
    event each in Dagster's event log): what each one found and paid is in its materialization's metadata."""
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    return (
        f"{len(names)} of {of} objects unchanged in {start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M}: no record "
        f"stamped in the window, nothing vanished ({shown}); {api_calls} API calls for the step. Each object's "
        "counts, reconciliation and API calls are in its materialization's metadata"
    )


@dataclass(frozen=True)
class KnownTables:
    """What a step reads once for all its objects before backing them up: each mirror table's columns (the
    catalog) and each object's kept calculated columns. An object whose describe changed nothing in its table
    then costs no DDL lock, no catalog read and no write for them (BENCHMARKS.md, launch-window)."""

    columns: Mapping[str, list[tuple[str, str]]]  # object name -> (column, type); empty: no table yet
    calculated: Mapping[str, set[str]]  # lower-cased object name -> calculated columns kept


def known_tables(conn: Any, names: Sequence[str]) -> KnownTables:
    return KnownTables(mirror_columns(conn, names), kept_calculated_columns(conn, names))


def usage_mark(client: Any) -> tuple[int, int, int]:
    """The client's API calls, retries and bytes so far: an object's figures are counted from such a mark."""
    return client.api_calls, client.retries, client.bytes_received


def backup_object(
    context: dg.AssetExecutionContext,
    obj: ObjectSettings,
    settings: Settings,
    org: BackupOrgSettings,
    client: Any,
    conn: Any,
    pre: Any,
    start: datetime,
    end: datetime,
    since: tuple[int, int, int],
    *,
    quiet: bool = False,
    known: KnownTables | None = None,
) -> dg.MaterializeResult:
    """Extract the window [start, end) of `obj` into its mirror table; its materialization. `since`: the client's
    usage mark its figures count from (before the preflight when this object's step asked it). `quiet`: log
    nothing for a window that changed nothing and cost no reconciliation call (the shared step of the small
    objects sums those up in one line); its metadata says the same. `known`: what the step read for all its
    objects (`known_tables`), else read here for this one."""
    stats = ExtractStats(obj.name, start, end)
    plan = window_plan(obj.name, pre.describe)  # from today's describe: capabilities can change
    known = known or known_tables(conn, [obj.name])
    table, fields = _mirror_table(context, conn, settings, obj, plan, pre.describe["fields"], known)
    names = [f["name"] for f in fields]
    result, vanished = _extract_and_load(client, conn, settings, obj, plan, table, names, pre, start, end, stats)
    # records erased on request (sf_pipeline.privacy.forget) never come back through a later window
    erased = drop_erased_rows(conn, obj.name)
    # file bodies (base64 fields) of the window's new and changed versions, into the blob store
    files = backup_window_files(context, client, conn, settings, obj, pre.describe["fields"], start, end)
    for note in stats.notes:
        context.log.info(f"{obj.name}: {note}")
    routine = (
        quiet
        and result.extracted == 0
        and not vanished.flagged
        and not vanished.missing_from_backup
        and vanished.reconcile_calls == 0
        and not table.type_changes
    )
    if vanished.reconciled and not routine:
        context.log.info(
            f"{obj.name}: reconciled ids ({vanished.reconcile_reason}): "
            f"{vanished.reconcile_calls} API calls, {vanished.reconcile_seconds:.1f} s"
        )
    if erased:
        context.log.warning(
            f"{obj.name}: {len(erased)} records erased on request are still in the org and "
            "changed again; they were not backed up (sf_pipeline.erased_records)"
        )
    if result.extracted != stats.extracted:
        raise dg.Failure(f"{obj.name}: extracted {stats.extracted} records but loaded {result.extracted}")
    api_calls = client.api_calls - since[0]  # this object's, and the run's preflight if it asked
    if not routine:
        context.log.info(
            f"{obj.name} {start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M}: "
            f"{stats.extracted} records via {stats.mode}, {api_calls} API calls"
        )
    return dg.MaterializeResult(
        asset_key=mirror_key(obj.name, org.key_prefix),
        metadata={
            "window_start": start.isoformat(),
            "window_end": end.isoformat(),
            **_window_metadata(client, since, stats, result, plan, pre, table, fields),
            **vanished.as_metadata(),
            "erased_records_skipped": {"count": len(erased), "ids": erased[:50]},
            "type_changes": "; ".join(c.describe() for c in table.type_changes) or "none",
            **({"file_bodies": files.as_metadata()} if files else {}),
        },
    )


def _mirror_table(
    context: dg.AssetExecutionContext,
    conn: Any,
    settings: Settings,
    obj: ObjectSettings,
    plan: ObjectPlan,
    describe_fields: list[dict[str, Any]],
    known: KnownTables,
) -> tuple[Any, list[dict[str, Any]]]:
    """The object's mirror table following today's describe (new columns, field type changes, the erasure lookup
    indexes), and the fields the backup reads. `known`: the table's columns and calculated columns as the step
    read them; nothing is written or locked when they already follow the describe."""
    table_fields = table_fields_for(plan, describe_fields)
    fields = backup_fields(table_fields, obj.exclude)
    keep_calculated_columns(
        conn,
        obj.name,
        [f["name"] for f in fields if f.get("calculated")],
        kept=known.calculated.get(obj.name.lower(), set()),
    )
    table = ensure_mirror_table(conn, obj.name, table_fields, exclude=obj.exclude, existing=known.columns.get(obj.name))
    if table.added_columns:
        context.log.info(f"{obj.name}: new fields {list(table.added_columns)} added as columns")
    for change in table.type_changes:
        context.log.warning(f"{obj.name}: field type changed, mirror and history follow: {change.describe()}")
    # the e-mail lookups of an erasure request (forget) read an index, never the whole table
    built = ensure_lookup_indexes(
        conn, MIRROR_SCHEMA, obj.name, email_columns(settings.privacy, obj.name), present=table.column_types
    )
    if built:
        context.log.info(f"{obj.name}: built the erasure lookup indexes {built} on the mirror")
    return table, fields


def _extract_and_load(
    client: Any,
    conn: Any,
    settings: Settings,
    obj: ObjectSettings,
    plan: ObjectPlan,
    table: Any,
    names: list[str],
    pre: Any,
    start: datetime,
    end: datetime,
    stats: ExtractStats,
) -> tuple[Any, VanishedReport]:
    """The window read from the org and loaded into the mirror, by the object's strategy; what vanished."""
    use_bulk = plan.read_api == ReadApi.BULK_OR_REST
    if plan.strategy == Strategy.FULL_READ:
        # no timestamp: read it whole, compare with the mirror (changed rows, vanished rows)
        batches = extract_all(
            client,
            obj.name,
            [n for n in names if n != "SystemModstamp"],
            bulk_threshold=settings.bulk_threshold,
            stats=stats,
            use_bulk=use_bulk,
        )
        return load_full_read(conn, table, batches, start, end, found_at=datetime.now(UTC)), VanishedReport()
    batches = extract_window(
        client,
        obj.name,
        names,
        start,
        end,
        bulk_threshold=settings.bulk_threshold,
        bulk_slice_records=settings.bulk_slice_records,
        stats=stats,
        stamp=plan.stamp_field or "SystemModstamp",
        use_bulk=use_bulk,
        expected=pre.counts.window_count,
    )
    # one extraction never repeats a record: a first load may COPY straight into the mirror
    result = load_window(conn, table, batches, start, end, unique_ids=True)
    # deletions, merges, purges and hard deletes: flagged, and closed in history by this window's snapshot
    vanished = learn_vanished(
        client,
        conn,
        table,
        obj.name,
        start,
        end,
        ReconcileSettings(settings.reconcile_every_window_below, settings.reconcile_large_every_hours),
        first_load=result.into_empty_table,
        counts=pre.counts,
    )
    return result, vanished


def _window_metadata(
    client: Any,
    since: tuple[int, int, int],
    stats: ExtractStats,
    result: Any,
    plan: ObjectPlan,
    pre: Any,
    table: Any,
    fields: list[dict[str, Any]],
) -> dict[str, Any]:
    """What a window's extraction and load did and cost, as the mirror materialization's metadata."""
    calls_before, retries_before, bytes_before = since
    return {
        "records_extracted": result.extracted,
        "records_inserted": result.inserted,
        "records_updated": result.updated,
        "records_unchanged": result.unchanged,
        "records_deleted": result.deleted,
        "api_calls": client.api_calls - calls_before,
        "api_retries": client.retries - retries_before,
        "org_api_usage": f"{client.usage[0]}/{client.usage[1]}" if client.usage else "unknown",
        "extract_mode": stats.mode,
        "strategy": plan.strategy.value,
        "strategy_reason": plan.reason,
        "bytes": client.bytes_received - bytes_before + result.bytes,
        "seconds": round(stats.seconds + 0.0, 3),
        "load_seconds": round(result.seconds, 3),
        "fields": len(fields),
        "calculated_fields": ", ".join(f["name"] for f in fields if f.get("calculated")) or "none",
        "preflight": f"this step asked the org for the run ({pre.api_calls} API calls; describes re-read: "
        f"{', '.join(pre.describes_refreshed) or 'none'})"
        if pre.first_step
        else "read from the run's preflight (no API call)",
        "new_columns": ", ".join(table.added_columns) or "none",
    }


class HistoryTranslator(DagsterDbtTranslator):
    """dbt snapshot `<object>` is `history/<Object>`; its window model stands for `salesforce/<Object>`."""

    def __init__(
        self,
        objects: Mapping[str, str],
        group: str,
        prefix: Sequence[str] = (),
        metadata: Mapping[str, Mapping[str, Any]] | None = None,
    ):
        super().__init__()
        self.objects = objects  # lower-case table name -> Salesforce API name
        self.group = group
        self.prefix = tuple(prefix)
        self.catalog = metadata or {}  # Salesforce API name -> catalog metadata (strategy, fields)

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
            return history_key(sobject, self.prefix)
        return mirror_key(sobject, self.prefix)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return self.group

    def get_metadata(self, dbt_resource_props: Mapping[str, Any]) -> Mapping[str, Any]:
        sobject = self._object(dbt_resource_props)
        extra = self.catalog.get(sobject, {}) if dbt_resource_props.get("resource_type") == "snapshot" else {}
        return {**super().get_metadata(dbt_resource_props), **extra}


def changed_objects(
    context: dg.AssetExecutionContext, history_keys: list[dg.AssetKey]
) -> tuple[list[dg.AssetKey], dict[dg.AssetKey, str]]:
    """Split the history keys of a run into those whose window changed the mirror and those it left unchanged.

    Unchanged: this run materialized `salesforce/<Object>` with no record extracted, nothing vanished and no type
    change; the snapshot would read no row. Anything else (a mirror not materialized by this run) counts as
    changed, so history is never skipped on a guess.
    """
    changed: list[dg.AssetKey] = []
    unchanged: dict[dg.AssetKey, str] = {}
    mirrors = {key: mirror_key(key.path[-1], key.path[:-2]) for key in history_keys}
    latest = context.instance.get_latest_materialization_events(list(mirrors.values()))  # one query for all
    for key in history_keys:
        event = latest.get(mirrors[key])
        if event is None or event.run_id != context.run_id or event.asset_materialization is None:
            changed.append(key)
            continue
        if window_changed_nothing(event.asset_materialization.metadata):
            unchanged[key] = "the window changed nothing in the mirror (no record extracted, nothing vanished)"
        else:
            changed.append(key)
    return changed, unchanged


def history_assets(
    settings: Settings,
    partitions: dg.PartitionsDefinition,
    project: DbtProject,
    manifest: Path,
    org: BackupOrgSettings | None = None,
    only_its_objects: bool = False,
) -> dg.AssetsDefinition:
    """`history/<Object>` of one org's objects: the dbt snapshots. `only_its_objects` when the project also
    holds other orgs' objects (several orgs share one dbt project)."""
    org = org or settings.backups[0]
    objects = {o.name.lower(): o.name for o in org.objects}
    select = "resource_type:snapshot"
    if only_its_objects:
        select = " ".join(f"resource_type:snapshot,{name}" for name in sorted(objects))
    warehouse_key = org_resource_keys(org)[1]

    @dbt_assets(
        manifest=manifest,
        select=select,
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        dagster_dbt_translator=HistoryTranslator(
            objects, org.alias, org.key_prefix, {o.name: catalog_metadata(o) for o in org.objects}
        ),
        name=f"history_{org.alias}",
        project=project,
        required_resource_keys={"dbt", warehouse_key},
    )
    def _history(context: dg.AssetExecutionContext):
        dbt: DbtCliResource = context.resources.dbt
        warehouse: WarehouseResource = getattr(context.resources, warehouse_key)
        start, end = extraction_bounds(partitions, context.partition_time_window)
        changed, unchanged = changed_objects(context, sorted(context.selected_asset_keys))
        windows = context.partition_keys  # this run's window, or each window of a backfill's range
        for key, why in unchanged.items():
            # nothing to snapshot: the window is backed up as it is (history already holds every version). A
            # materialization of each window without an output: the step has no downstream in the run, and an
            # output would cost one more event-log write per object and window (BENCHMARKS.md, window-wall)
            for window in windows:
                yield dg.AssetMaterialization(asset_key=key, partition=window, metadata={"snapshot": f"skipped: {why}"})
        if not changed:
            context.log.info(f"no object changed in this window: dbt not run ({len(unchanged)} unchanged)")
            return
        # profiles.yml reads the connection from SF_PIPELINE_PG_* (derived from the one database URL), the window
        # macro the window from SF_PIPELINE_WINDOW_START/END: in dbt's environment (this step's process) only, not
        # in --vars, whose every change makes dbt parse the whole project again
        connection = dbt_env_from_url(warehouse.database_url)
        args = ["snapshot"]
        if unchanged:
            args += ["--exclude", " ".join(k.path[-1].lower() for k in unchanged)]
        step = f"{context.op_execution_context.op.name}-{context.run.run_id[:8]}-{uuid.uuid4().hex[:8]}"
        target = Path(dbt.project_dir).resolve() / "target" / step  # as dagster-dbt names it
        with reusing_parse(dbt.project_dir, target, connection):
            with environment({**connection, **snapshot_env(start, end)}):
                invocation = dbt.cli(args, context=context, target_path=target)  # dbt starts here, with the window
            yield from invocation.stream()
        context.log.info(f"dbt parse: {parse_outcome(target)}")  # `reused` unless the project or database changed
        # dbt made the history tables (its post-hook indexes them by record and time); the e-mail lookups of an
        # erasure request (forget) need theirs too, made now rather than at the request (warehouse/lookups.py)
        with warehouse.connect() as conn:
            for key in changed:
                sobject = objects.get(key.path[-1].lower())
                if sobject is not None:
                    built = ensure_lookup_indexes(
                        conn, HISTORY_SCHEMA, sobject, email_columns(settings.privacy, sobject)
                    )
                    if built:
                        context.log.info(f"{sobject}: built the erasure lookup indexes {built} on the history")

    return _history
