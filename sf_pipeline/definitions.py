"""The sf-pipeline code location: one Definitions built from the settings file.

Reads like a table of contents: each stage of the data flow contributes its own Definitions.
"""

from __future__ import annotations

import dagster as dg

from sf_pipeline.anomalies.definitions import anomaly_definitions
from sf_pipeline.backup.catalog_state import check_state_fits, load_state, read_state
from sf_pipeline.backup.definitions import backup_definitions
from sf_pipeline.privacy.definitions import privacy_definitions
from sf_pipeline.restore.definitions import restore_definitions
from sf_pipeline.seeding.definitions import seeding_definitions
from sf_pipeline.settings import load_settings, resolve_objects


def build_definitions(settings_path: str | None = None, state: str | None = None) -> dg.Definitions:
    """`state`: the orgs' catalogs (the backup component's state); else the stored state file, fetched from
    the orgs only when an org backs up `objects: all` and none is stored yet."""
    settings = load_settings(settings_path)
    catalogs = read_state(state) if state is not None else load_state(settings)
    check_state_fits(settings, catalogs, "the component state")
    settings = resolve_objects(settings, {alias: c.objects for alias, c in catalogs.items()})
    return dg.Definitions.merge(
        backup_definitions(settings, catalogs),
        anomaly_definitions(settings),
        restore_definitions(settings),
        seeding_definitions(settings),
        privacy_definitions(settings),
    )


defs = build_definitions()
