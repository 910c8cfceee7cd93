"""The restore op's branch for files (ContentDocument, ContentVersion, Attachment, Document): thin glue over
restore/files.py."""

from __future__ import annotations

from typing import Any

import dagster as dg
import psycopg

from sf_pipeline.resources import dagster_metadata
from sf_pipeline.restore.config import RestoreConfig
from sf_pipeline.restore.files import apply_file_plan, load_file_plan, plan_file_restore
from sf_pipeline.restore.results import apply_config_markdown, plan_metadata
from sf_pipeline.salesforce.client import SalesforceClient
from sf_pipeline.settings import Settings


def run_file_restore(
    context: dg.OpExecutionContext,
    conn: psycopg.Connection[Any],
    client: SalesforceClient,
    cfg: RestoreConfig,
    raw: dict[str, Any],
    settings: Settings,
) -> dg.Output:
    store = settings.blob_store()
    if cfg.dry_run:
        plan = plan_file_restore(conn, client, cfg, context.run_id, store, source_org=settings.backup_org)
    else:
        plan = load_file_plan(conn, cfg, context.run_id)
    summary = plan.summary()
    context.log.info(f"file restore plan: {summary['counts']} ({summary['records_to_write']} files to write)")
    metadata = {
        "dry_run": cfg.dry_run,
        "target_org": cfg.target_org,
        **plan_metadata(summary),
        "blob_store": store.description,
    }
    if cfg.dry_run:
        metadata |= {"api_calls": client.api_calls, "apply_config": apply_config_markdown(raw, context.run_id)}
        return dg.Output(summary, metadata=dagster_metadata(metadata))
    metadata["plan_of"] = cfg.plan or ""
    result = apply_file_plan(conn, client, plan, store, cfg)
    metadata |= {**result.as_metadata(plan.items), "api_calls": client.api_calls}
    if failed := result.shortfall(plan.items):
        raise dg.Failure(
            description=f"file restore applied only partly ({result.outcomes}):\n{failed}",
            metadata=dagster_metadata(metadata),
        )
    return dg.Output(
        {**summary, "applied": result.outcomes, "verified": result.verified}, metadata=dagster_metadata(metadata)
    )
