"""The `restore` job, launched from the Dagster launchpad: plan (dry run) → apply that plan → verify, with audit.

Thin glue over `sf_pipeline.restore`: the launchpad config is the restore contract (what incident
reports suggest), every field documented. A dry run stores its plan; nothing is written unless a run
with the same config says `dry_run: false` and `plan: <the dry run's run id>`, and then exactly that
plan is written.
"""

from typing import Any

import dagster as dg
import psycopg

from sf_pipeline.anomalies.incidents import incident_restore_selection
from sf_pipeline.launchpad import launchpad_config
from sf_pipeline.resources import (
    ORG_TAG,
    SalesforceOrgResource,
    WarehouseResource,
    dagster_metadata,
    salesforce_pool,
    single_op_job,
)
from sf_pipeline.salesforce.client import SalesforceClient
from sf_pipeline.settings import Settings
from sf_pipeline.warehouse.org_identity import OrgIdentityError, verify_org

from . import (
    RestoreApplyError,
    RestoreConfig,
    RestoreError,
    RestorePlan,
    RestoreVerifyError,
    apply_plan,
    load_plan,
    plan_restore,
    verify_plan,
)
from .files import is_file_restore
from .files_job import run_file_restore
from .results import apply_config_markdown, plan_metadata
from .run_as import restore_client

# The launchpad's config is the restore contract itself (restore/config.py), in Dagster's config types; `object`
# may be left out because `incident: <id>` gives it.
RestoreRunConfig = launchpad_config(RestoreConfig, "RestoreRunConfig", optional={"object"})


def read_config(
    context: dg.OpExecutionContext, config: dg.Config, conn: psycopg.Connection[Any], settings: Settings
) -> tuple[RestoreConfig, dict[str, Any]]:
    """The launched config as the restore contract reads it, and its keys that have a value. Beside an incident,
    only the keys the launchpad config gives (the run's own config, before Dagster fills in defaults such as
    restore_deleted: false) override the incident's."""
    raw = {k: v for k, v in config.model_dump(mode="json").items() if v not in (None, [])}
    if raw.get("incident") is not None:
        launched = context.run.run_config["ops"][context.op_def.name]["config"]
        raw = {k: v for k, v in raw.items() if k in launched}
    try:
        cfg = RestoreConfig.from_dict(
            raw, orgs=list(settings.orgs), incidents=lambda number: incident_restore_selection(conn, number)
        )
    except RestoreError as exc:
        raise dg.Failure(description=f"invalid restore config: {exc}") from None
    conn.commit()
    return cfg, raw


def restore_job(settings: Settings) -> dg.JobDefinition:
    # The pool and tag are those of the backed-up org, which a restore usually writes to; a rehearsal into
    # another org holds a slot of it too (a pool is fixed when the job is defined, the target at launch).
    @dg.op(
        name="restore",
        tags={"kind": "salesforce"},
        pool=salesforce_pool(settings.backup_org),
        description="Plan the restore from the backup history and the org's current values; if not a dry "
        "run, write with per-record results, then verify against the org.",
    )
    def _restore(
        context: dg.OpExecutionContext,
        config: RestoreRunConfig,
        salesforce: dg.ResourceParam[SalesforceOrgResource],
        warehouse: dg.ResourceParam[WarehouseResource],
    ) -> dg.Output:
        with warehouse.connect() as conn:
            cfg, raw = read_config(context, config, conn, settings)
            try:
                # as the settings file's restore user (orgs.<alias>.restore.run_as), serial writes if it says so
                client, user = restore_client(salesforce, settings, cfg.target_org)
                verify_org(conn, client)  # the org this alias always reached, or nothing is planned nor written
                if is_file_restore(cfg):  # ContentDocument / ContentVersion / Attachment: restore/files.py
                    return run_file_restore(context, conn, client, cfg, raw, settings)
                # history is the backed-up org's, whichever org the values are written to
                plan = (
                    plan_restore(conn, client, cfg, context.run_id, source_org=settings.backup_org)
                    if cfg.dry_run
                    else load_plan(conn, cfg, context.run_id)
                )
                conn.commit()
                summary = plan.summary()
                context.log.info(f"restore plan: {summary['counts']} ({summary['records_to_write']} records to write)")
                metadata = {
                    "dry_run": cfg.dry_run,
                    "target_org": cfg.target_org,
                    **plan_metadata(summary),
                    # who reads (and, applied, writes): sharing decides what the plan sees, automation may key on it
                    "read_as" if cfg.dry_run else "written_as": user.as_metadata(),
                }
                if cfg.dry_run:
                    context.log.info(
                        f"to write this plan: launch the same config with dry_run: false and plan: {context.run_id}"
                    )
                    metadata |= {
                        "api_calls": client.api_calls,
                        "apply_config": apply_config_markdown(raw, context.run_id),
                    }
                    return dg.Output(summary, metadata=dagster_metadata(metadata))
                metadata["plan_of"] = cfg.plan or ""
                applied, verified = apply_and_verify(context, conn, client, plan, metadata)
                return dg.Output(
                    {**summary, "applied": applied, "verified": verified}, metadata=dagster_metadata(metadata)
                )
            except (RestoreError, OrgIdentityError) as exc:
                raise dg.Failure(description=str(exc)) from None

    # A restore is what someone is waiting for during an incident: the run queue and the org's pool take it
    # before waiting backups (`dagster/priority`, higher first).
    return single_op_job(
        _restore,
        description="Restore selected fields of selected records to their "
        "values at a point in time (dry run first). Launch from the launchpad with an incident's "
        "suggested config.",
        tags={"sf_pipeline/kind": "restore", ORG_TAG: settings.backup_org, "dagster/priority": "10"},
    )


def apply_and_verify(
    context: dg.OpExecutionContext,
    conn: psycopg.Connection[Any],
    client: SalesforceClient,
    plan: RestorePlan,
    metadata: dict[str, Any],
) -> tuple[dict[str, int], int]:
    """Write the reviewed plan and read it back, adding what each shows to `metadata`; (outcomes, records
    verified). A shortfall fails the run with the metadata so far: what was written stays audited."""
    try:
        applied = apply_plan(conn, client, plan)
    except RestoreApplyError as exc:
        conn.commit()  # the audit of what was written stays
        metadata |= exc.result.as_metadata()
        raise dg.Failure(
            description=f"restore applied only partly: {exc}", metadata=dagster_metadata(metadata)
        ) from None
    conn.commit()
    metadata |= applied.as_metadata()
    for rid, why in list(applied.changed.items())[:20]:
        context.log.warning(f"not written, changed since the dry run: {rid}: {why}")
    try:
        verified = verify_plan(client, plan, conn=conn)
    except RestoreVerifyError as exc:
        metadata |= exc.result.as_metadata()
        raise dg.Failure(
            description=f"verification found differences: {exc}", metadata=dagster_metadata(metadata)
        ) from None
    conn.commit()
    metadata |= {**verified.as_metadata(), "api_calls": client.api_calls}
    return applied.outcomes, verified.checked
