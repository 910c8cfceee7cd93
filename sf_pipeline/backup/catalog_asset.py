"""The catalog in the UI: an asset (`salesforce_catalog`, per org) whose metadata lists every object backed up
with its strategy and field count, and every object skipped with the reason; each mirror asset also carries
its own strategy (assets.catalog_metadata)."""

from __future__ import annotations

import dagster as dg

from sf_pipeline.salesforce.catalog import Catalog
from sf_pipeline.settings import BackupOrgSettings


def catalog_key(org: BackupOrgSettings) -> dg.AssetKey:
    return dg.AssetKey([*org.key_prefix, "salesforce_catalog"])


def catalog_spec(org: BackupOrgSettings, catalog: Catalog) -> dg.AssetSpec:
    backed_up = {o.name for o in org.objects}
    objects = dg.TableMetadataValue(
        records=[
            dg.TableRecord(
                {
                    "object": p.name,
                    "strategy": p.strategy.value,
                    "read_api": p.read_api.value,
                    "fields": p.field_count,
                    "reason": p.reason,
                }
            )
            for p in catalog.objects
            if p.name in backed_up
        ],
        schema=dg.TableSchema(
            columns=[
                dg.TableColumn("object", "string"),
                dg.TableColumn("strategy", "string"),
                dg.TableColumn("read_api", "string"),
                dg.TableColumn("fields", "int"),
                dg.TableColumn("reason", "string"),
            ]
        ),
    )
    skipped = dg.TableMetadataValue(
        records=[dg.TableRecord({"object": s.name, "reason": s.reason}) for s in catalog.skipped],
        schema=dg.TableSchema(columns=[dg.TableColumn("object", "string"), dg.TableColumn("reason", "string")]),
    )
    return dg.AssetSpec(
        key=catalog_key(org),
        group_name=org.alias,
        kinds={"salesforce"},
        description=f"The objects of '{org.alias}' as its describe shows them (fetched {catalog.fetched_at}): "
        f"{len(objects.records)} backed up, {len(catalog.skipped)} skipped. Refreshed by "
        "`sf-pipeline objects --refresh` or `dg utils refresh-defs-state`.",
        metadata={
            "objects": objects,
            "skipped": skipped,
            "fetched_at": catalog.fetched_at,
            "objects_backed_up": len(objects.records),
            "objects_skipped": len(catalog.skipped),
        },
    )
