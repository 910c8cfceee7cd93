"""The `seed_sandbox` job, launched from the Dagster launchpad: copy backed-up records into a sandbox.

Thin glue over `sf_pipeline.seeding`: every launchpad field is documented; credentials of both orgs
come from SALESFORCE_<ALIAS>_* variables.
"""

from typing import Any

import dagster as dg
import psycopg

from sf_pipeline.launchpad import launchpad_config
from sf_pipeline.privacy.errors import PrivacyError
from sf_pipeline.privacy.masking import MaskingSettings, Pseudonyms, masking_for_seeding
from sf_pipeline.resources import SalesforceOrgResource, WarehouseResource, dagster_metadata, single_op_job
from sf_pipeline.salesforce.client import SalesforceClient
from sf_pipeline.settings import Settings
from sf_pipeline.warehouse.org_identity import OrgIdentityError

from . import SeedConfig, SeedingError, seed_sandbox
from .files import SeedFilesResult, seed_files
from .users import org_users

# The launchpad's config is the seeding contract itself (seeding/config.py), in Dagster's config types.
SeedRunConfig = launchpad_config(SeedConfig, "SeedRunConfig")


def source_users(org: SalesforceOrgResource, log: Any = None) -> list[dict[str, Any]] | None:
    """The source org's users (to match owners by username/email/name), or None if it cannot be reached."""
    alias = org.alias
    try:
        return org_users(org.client())
    except Exception as exc:  # noqa: BLE001 - owners are then left to the target's defaults, and the run says so
        if log is not None:
            log.warning(f"could not read the users of org {alias!r} ({exc}); owners will not be matched")
        return None


def seed_job(settings: Settings) -> dg.JobDefinition:
    @dg.op(
        name="seed_sandbox",
        tags={"kind": "salesforce"},
        description="Copy records as of an instant from the backup into another org, parents first, every "
        "reference remapped through sf_pipeline.id_map; re-running updates instead of duplicating.",
    )
    def _seed(
        context: dg.OpExecutionContext,
        config: SeedRunConfig,
        salesforce: dg.ResourceParam[SalesforceOrgResource],
        warehouse: dg.ResourceParam[WarehouseResource],
    ) -> dg.Output:
        raw: dict[str, Any] = {k: v for k, v in config.model_dump(mode="json").items() if v not in (None, [])}
        try:
            cfg = SeedConfig.from_dict(raw, orgs=list(settings.orgs))
        except SeedingError as exc:
            raise dg.Failure(description=f"invalid seed config: {exc}") from None
        try:
            masking, pseudonyms = masking_for_seeding(settings.privacy)
        except PrivacyError as exc:
            raise dg.Failure(description=str(exc)) from None
        target = salesforce.for_org(cfg.target_org).client()
        users = source_users(salesforce.for_org(cfg.source_org), context.log)
        with warehouse.connect() as conn:
            try:
                result = seed_sandbox(
                    conn,
                    target,
                    cfg,
                    backed_up=[o.name for o in settings.objects],
                    source_users=users,
                    progress=context.log.info,
                    backup_org=settings.backup_org,
                    masking=masking,
                    pseudonyms=pseudonyms,
                )
            except (SeedingError, OrgIdentityError, PrivacyError) as exc:
                raise dg.Failure(description=str(exc)) from None
            conn.commit()
            files = _seed_files(conn, target, settings, cfg, masking, pseudonyms)
        metadata = {
            **result.as_metadata(masking.enabled),
            "files": files.as_metadata() if files else {"seed_files": "off"},
        }
        if result.failed:
            raise dg.Failure(description=result.failure_message(), metadata=dagster_metadata(metadata))
        return dg.Output(result.summary(), metadata=dagster_metadata(metadata))

    return single_op_job(
        _seed,
        description="Seed a sandbox from the backup (records as of an "
        "instant, with their parents and an id map), to rehearse a restore before running it on "
        "production.",
        tags={"sf_pipeline/kind": "seed"},
    )


def _seed_files(
    conn: psycopg.Connection[Any],
    target: SalesforceClient,
    settings: Settings,
    cfg: SeedConfig,
    masking: MaskingSettings,
    pseudonyms: Pseudonyms | None,
) -> SeedFilesResult | None:
    """The seeded records' attachments and documents (seeding/files.py), when the settings file copies them (else
    None). Masked: files withheld (skip, the default), placeholders, or kept as they are (masking.files)."""
    if not settings.blobs.seed_files:
        return None
    files = seed_files(
        conn,
        target,
        settings.blob_store(),
        source_org=cfg.source_org,
        target_org=cfg.target_org,
        as_of=cfg.as_of,
        max_bytes=int(settings.blobs.seed_max_file_mb * 1024 * 1024),
        mode="copy" if not masking.enabled or masking.files == "keep" else masking.files,
        digest=pseudonyms.digest if pseudonyms else None,
    )
    conn.commit()
    return files
