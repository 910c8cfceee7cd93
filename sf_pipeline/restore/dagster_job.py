"""The `restore` job, launched from the Dagster launchpad: plan (dry run) → apply that plan → verify, with audit.

Thin glue over `sf_pipeline.restore`: the launchpad config is the restore contract (what incident
reports suggest), every field documented. A dry run stores its plan; nothing is written unless a run
with the same config says `dry_run: false` and `plan: <the dry run's run id>`, and then exactly that
plan is written.
"""

from typing import Any

import dagster as dg
import yaml

from sf_pipeline.anomalies.incidents import incident_restore_selection
from sf_pipeline.launchpad import launchpad_config
from sf_pipeline.resources import ORG_TAG, SalesforceOrgResource, WarehouseResource, salesforce_pool, single_op_job
from sf_pipeline.settings import Settings
from sf_pipeline.warehouse.org_identity import OrgIdentityError, verify_org

from . import (
    RestoreApplyError,
    RestoreConfig,
    RestoreError,
    RestoreVerifyError,
    apply_plan,
    load_plan,
    plan_restore,
    verify_plan,
)
from .files import is_file_restore
from .files_job import run_file_restore
from .run_as import restore_client

# The launchpad's config is the restore contract itself (restore/config.py), in Dagster's config types; `object`
# may be left out because `incident: <id>` gives it.
RestoreRunConfig = launchpad_config(RestoreConfig, "RestoreRunConfig", optional={"object"})


def apply_config_markdown(dry_run_config: dict[str, Any], run_id: str) -> str:
    """The launchpad config that writes a dry run's plan: the same config, dry_run: false, plan: <its run id>."""
    config = {**{k: v for k, v in dry_run_config.items() if k != "dry_run"}, "dry_run": False, "plan": run_id}
    text = yaml.safe_dump({"ops": {"restore": {"config": config}}}, sort_keys=False)
    return (
        "Review the plan above; to write exactly it, launch the restore job with this config (records "
        f"changed in the org since this dry run are refused as conflicts):\n\n```yaml\n{text}```"
    )


def _launched_keys(context: dg.OpExecutionContext) -> set[str]:
    """The keys of the op's config as launched (the run's own config, before Dagster fills in defaults)."""
    launched = (context.run.run_config or {}).get("ops", {}).get("restore", {}).get("config") or {}
    if launched:
        return set(launched)
    # no run config recorded (should not happen): every value that is not its field's default counts as given
    defaults = {name: f.default for name, f in RestoreRunConfig.model_fields.items()}
    return {k for k, v in context.op_config.items() if k not in defaults or v != defaults[k]}


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
        raw: dict[str, Any] = {k: v for k, v in config.model_dump(mode="json").items() if v not in (None, [])}
        if config.incident is not None:
            # Beside an incident, only the keys the launchpad config gives override it: the defaults Dagster
            # fills in (restore_deleted: false, ...) must not.
            given = _launched_keys(context)
            raw = {k: v for k, v in raw.items() if k in given or k == "incident"}
        with warehouse.connect() as conn:
            try:
                cfg = RestoreConfig.from_dict(
                    raw, orgs=list(settings.orgs), incidents=lambda number: incident_restore_selection(conn, number)
                )
            except RestoreError as exc:
                raise dg.Failure(description=f"invalid restore config: {exc}") from None
            conn.commit()
            try:
                # as the settings file's restore user (orgs.<alias>.restore.run_as), serial writes if it says so
                client, user = restore_client(salesforce, settings, cfg.target_org)
                verify_org(conn, client)  # the org this alias always reached, or nothing is planned nor written
                if is_file_restore(cfg):  # ContentDocument / ContentVersion / Attachment: restore/files.py
                    return run_file_restore(context, conn, client, cfg, raw, settings, apply_config_markdown)
                if cfg.dry_run:
                    # history is the backed-up org's, whichever org the values are written to
                    plan = plan_restore(conn, client, cfg, context.run_id, source_org=settings.backup_org)
                else:
                    plan = load_plan(conn, cfg, context.run_id)
                conn.commit()
                summary = plan.summary()
                context.log.info(f"restore plan: {summary['counts']} ({summary['records_to_write']} records to write)")
                metadata: dict[str, Any] = {
                    "dry_run": cfg.dry_run,
                    "object": summary["object"],
                    "target_org": cfg.target_org,
                    "records_planned": summary["records"],
                    "records_to_write": summary["records_to_write"],
                    "counts": dg.MetadataValue.json(summary["counts"]),
                    "plan": dg.MetadataValue.md(summary["preview"]),
                    "notes": "; ".join(summary["notes"]) or "none",
                    # who reads (and, applied, writes): sharing decides what the plan sees, automation may key on it
                    "written_as" if not cfg.dry_run else "read_as": dg.MetadataValue.json(user.metadata()),
                }
                if "tree" in summary:  # a whole-hierarchy restore: per object undelete/re-create/re-point/cannot
                    metadata["tree"] = {
                        "objects": summary["tree"],
                        "order": summary["order"],
                        "cannot": summary["cannot"],
                    }
                if cfg.dry_run:
                    metadata["api_calls"] = client.api_calls
                    metadata["apply_config"] = dg.MetadataValue.md(apply_config_markdown(raw, context.run_id))
                    context.log.info(
                        f"to write this plan: launch the same config with dry_run: false and plan: {context.run_id}"
                    )
                    return dg.Output(summary, metadata=metadata)
                metadata["plan_of"] = cfg.plan or ""
                try:
                    applied = apply_plan(conn, client, plan)
                except RestoreApplyError as exc:
                    conn.commit()  # the audit of what was written stays
                    result = getattr(exc, "result", None)
                    if result is not None and hasattr(result, "summary"):
                        metadata["apply"] = dg.MetadataValue.json(result.summary())
                    raise dg.Failure(description=f"restore applied only partly: {exc}", metadata=metadata) from None
                conn.commit()
                metadata["outcomes"] = dg.MetadataValue.json(applied.outcomes)
                # writes an interrupted earlier run left pending, settled against the org first (journal.py)
                metadata["reconciled"] = dg.MetadataValue.json(applied.reconciled)
                metadata["values_written"] = applied.values_written
                metadata["changed_since_plan"] = dg.MetadataValue.json(dict(list(applied.changed.items())[:50]))
                for rid, why in list(applied.changed.items())[:20]:
                    context.log.warning(f"not written, changed since the dry run: {rid}: {why}")
                if applied.failed or applied.interrupted:
                    failed = "\n".join(f"- {rid}: {err}" for rid, err in list(applied.failed.items())[:50])
                    raise dg.Failure(
                        description=f"restore applied only partly ({applied.outcomes}); failed "
                        f"records:\n{failed}\n{applied.interrupted or ''}",
                        metadata=metadata,
                    )
                try:
                    verified = verify_plan(client, plan, conn=conn)
                except RestoreVerifyError as exc:
                    # records automation changed again after our write are named apart from plain failures
                    metadata["verify"] = dg.MetadataValue.json(exc.result.summary())
                    metadata["changed_by_automation"] = len(exc.result.automation)
                    raise dg.Failure(description=f"verification found differences: {exc}", metadata=metadata) from None
                conn.commit()
                metadata["verified_records"] = verified.checked
                metadata["api_calls"] = client.api_calls
                if not verified.success:
                    raise dg.Failure(
                        description=f"verification found differences: {verified.summary()}", metadata=metadata
                    )
                return dg.Output(
                    {**summary, "applied": applied.outcomes, "verified": verified.checked}, metadata=metadata
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
