"""The restore op's branch for files (ContentDocument, ContentVersion, Attachment, Document): thin glue over
restore/files.py."""

from __future__ import annotations

from typing import Any

import dagster as dg
import psycopg

from sf_pipeline.restore.config import RestoreConfig
from sf_pipeline.restore.files import apply_file_plan, load_file_plan, plan_file_restore
from sf_pipeline.salesforce.client import SalesforceClient
from sf_pipeline.settings import Settings


def run_file_restore(
    context: dg.OpExecutionContext,
    conn: psycopg.Connection[Any],
    client: SalesforceClient,
    cfg: RestoreConfig,
    raw: dict[str, Any],
    settings: Settings,
    apply_config_md: Any,
) -> dg.Output:
    store = settings.blob_store()
    if cfg.dry_run:
        plan = plan_file_restore(conn, client, cfg, context.run_id, store, source_org=settings.backup_org)
    else:
        plan = load_file_plan(conn, cfg, context.run_id)
    summary = plan.summary()
    context.log.info(f"file restore plan: {summary['counts']} ({summary['records_to_write']} files to write)")
    metadata: dict[str, Any] = {
        "dry_run": cfg.dry_run,
        "object": plan.object,
        "target_org": cfg.target_org,
        "records_planned": summary["records"],
        "records_to_write": summary["records_to_write"],
        "counts": dg.MetadataValue.json(summary["counts"]),
        "plan": dg.MetadataValue.md(summary["preview"]),
        "notes": "; ".join(summary["notes"]) or "none",
        "blob_store": store.description,
    }
    if cfg.dry_run:
        metadata["api_calls"] = client.api_calls
        metadata["apply_config"] = dg.MetadataValue.md(apply_config_md(raw, context.run_id))
        return dg.Output(summary, metadata=metadata)
    metadata["plan_of"] = cfg.plan or ""
    result = apply_file_plan(conn, client, plan, store, cfg)
    metadata.update(
        {
            "outcomes": dg.MetadataValue.json(result.outcomes),
            "verified_by_hash": result.verified,
            "links_created": result.links_created,
            "bytes_uploaded": result.bytes_uploaded,
            "new_ids": {i.source_id: i.new_id for i in plan.items if i.new_id},
            "api_calls": client.api_calls,
        }
    )
    bad = {i.source_id: i.outcome for i in plan.items if i.outcome in ("failed", "verify_failed")}
    if result.failed or bad:
        failed = "\n".join(f"- {rid}: {result.failed.get(rid, outcome)}" for rid, outcome in list(bad.items())[:50])
        raise dg.Failure(
            description=f"file restore applied only partly ({result.outcomes}):\n{failed}", metadata=metadata
        )
    return dg.Output({**summary, "applied": result.outcomes, "verified": result.verified}, metadata=metadata)
