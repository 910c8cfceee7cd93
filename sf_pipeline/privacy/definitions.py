"""The privacy stage's Definitions: the `forget` job (and the settings check of `masking:` at load time).

Thin glue over sf_pipeline.privacy: the settings file's blocks are validated when the code location loads,
so a typo fails there, not in the middle of a seeding run.
"""

from datetime import UTC, datetime
from typing import Any

import dagster as dg
from pydantic import Field

from sf_pipeline.launchpad import launchpad_config
from sf_pipeline.privacy.errors import PrivacyError
from sf_pipeline.privacy.forget import ForgetRequest, forget, match_fields, note_still_in_org
from sf_pipeline.privacy.masking import MaskingSettings
from sf_pipeline.privacy.retention import (
    RetentionSettings,
    apply_retention,
    protected_ids,
    retention_metadata,
    retention_summary,
)
from sf_pipeline.resources import SalesforceOrgResource, WarehouseResource, single_op_job
from sf_pipeline.salesforce.writes import query_by_ids
from sf_pipeline.settings import Settings, SettingsError

# Tags that name who launched a run: Dagster+ sets dagster/user; a launcher or a script can set ours.
REQUESTER_TAGS = ("dagster/user", "sf_pipeline/requested_by", "user")


# The launchpad's config is the forget contract itself (privacy/forget.py), in Dagster's config types.
ForgetRunConfig = launchpad_config(ForgetRequest, "ForgetRunConfig")


def requested_by(tags: dict[str, str]) -> str:
    for tag in REQUESTER_TAGS:
        if tags.get(tag):
            return tags[tag]
    return "unknown (launched without a dagster/user or sf_pipeline/requested_by tag)"


def forget_job(settings: Settings) -> dg.JobDefinition:
    backed_up = [o.name for o in settings.objects]

    @dg.op(
        name="forget",
        tags={"kind": "postgres"},
        description="Erase a data subject's records from the backup (mirror, history, restore audit, incident "
        "samples, id map), list them so later backups skip them, and log the erasure without "
        "personal data.",
    )
    def _forget(
        context: dg.OpExecutionContext,
        config: ForgetRunConfig,
        salesforce: dg.ResourceParam[SalesforceOrgResource],
        warehouse: dg.ResourceParam[WarehouseResource],
    ) -> dg.Output:
        raw: dict[str, Any] = {k: v for k, v in config.model_dump().items() if v not in (None, [])}
        try:
            request = ForgetRequest.from_dict(raw, backed_up)
            fields = match_fields(settings.privacy, backed_up)
        except PrivacyError as exc:
            raise dg.Failure(description=f"invalid forget config: {exc}") from None
        with warehouse.connect() as conn:
            result = forget(
                conn,
                request,
                backed_up=backed_up,
                fields=fields,
                requested_by=requested_by(dict(context.run.tags)),
                run_id=context.run_id,
                blob_store=settings.blob_store(),
            )
            still = _still_in_org(salesforce.for_org(settings.backup_org), result.records, context.log)
            note_still_in_org(conn, result, still)
        if result.still_in_org:
            context.log.warning(
                f"{sum(map(len, result.still_in_org.values()))} erased records still exist in org "
                f"{settings.backup_org!r}: erasing them there is the org's job; until then later backups skip them "
                "(sf_pipeline.erased_records)"
            )
        return dg.Output(result.summary(), metadata=result.as_metadata())

    return single_op_job(
        _forget,
        description="Erase a data subject from the backup (dry run by default).",
        tags={"sf_pipeline/kind": "forget"},
    )


def _still_in_org(org: SalesforceOrgResource, records: dict[str, list[str]], log: Any) -> dict[str, list[str]]:
    """Per object, the erased ids the backed-up org still holds (not in its recycle bin)."""
    if not records:
        return {}
    try:
        client = org.client()
        return {
            o: sorted(
                rid for rid, rec in query_by_ids(client, o, ids, ["IsDeleted"]).items() if not rec.get("IsDeleted")
            )
            for o, ids in records.items()
        }
    except Exception as exc:  # noqa: BLE001 - the erasure is done; the run says it could not check
        log.warning(f"could not check whether org {org.alias!r} still has the erased records: {exc}")
        return {"unknown": [f"org {org.alias!r} could not be reached"]}


class RetentionRunConfig(dg.Config):
    """Apply the settings file's retention to the history (the schedule runs it with these defaults)."""

    dry_run: bool = Field(default=False, description="Count the versions retention would remove, remove none.")


def retention_job(settings: Settings, retention: RetentionSettings) -> dg.JobDefinition:
    @dg.op(
        name="apply_retention",
        tags={"kind": "postgres"},
        description="Thin every backed-up object's history by the settings' retention (every version, then one "
        "per day, then one per month, up to the maximum age), keeping each record's latest version "
        "and the versions incidents and restore plans refer to.",
    )
    def _retention(
        context: dg.OpExecutionContext, config: RetentionRunConfig, warehouse: dg.ResourceParam[WarehouseResource]
    ) -> dg.Output:
        now = context.run.tags.get("dagster/scheduled_execution_time")
        moment = datetime.fromisoformat(now) if now else datetime.now(UTC)
        results = []
        with warehouse.connect() as conn:
            protected = protected_ids(conn)
            for obj in settings.objects:
                results.append(
                    apply_retention(
                        conn, obj.name, retention.policy(obj.name), moment, protected=protected, dry_run=config.dry_run
                    )
                )
                context.log.info(
                    f"{obj.name}: {results[-1].removed} versions {'would be ' if config.dry_run else ''}removed"
                )
        return dg.Output(
            retention_summary(results), metadata=retention_metadata(results, len(protected), config.dry_run)
        )

    return single_op_job(
        _retention,
        description="Thin the backup history by the retention settings.",
        tags={"sf_pipeline/kind": "retention"},
    )


def privacy_definitions(settings: Settings) -> dg.Definitions:
    try:
        MaskingSettings.from_dict(settings.privacy.get("masking"))
        match_fields(settings.privacy, [o.name for o in settings.objects])
        retention = RetentionSettings.from_dict(settings.privacy.get("retention"))
    except PrivacyError as exc:
        raise SettingsError(f"{settings.path}: {exc}") from None
    if retention is None:
        return dg.Definitions(jobs=[forget_job(settings)])
    job = retention_job(settings, retention)
    schedule = dg.ScheduleDefinition(
        name="apply_retention_schedule",
        job=job,
        cron_schedule=retention.schedule,
        execution_timezone=settings.timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    return dg.Definitions(jobs=[forget_job(settings), job], schedules=[schedule])
