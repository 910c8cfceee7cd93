"""The sf-pipeline code location: one Definitions built from the settings file.

Reads like a table of contents: each stage of the data flow contributes its own Definitions.
"""

from __future__ import annotations

import dagster as dg

from sf_pipeline.anomalies.definitions import anomaly_definitions
from sf_pipeline.backup.definitions import backup_definitions
from sf_pipeline.privacy.definitions import privacy_definitions
from sf_pipeline.restore.definitions import restore_definitions
from sf_pipeline.seeding.definitions import seeding_definitions
from sf_pipeline.settings import load_settings


def build_definitions(settings_path: str | None = None) -> dg.Definitions:
    settings = load_settings(settings_path)
    return dg.Definitions.merge(
        backup_definitions(settings),
        anomaly_definitions(settings),
        restore_definitions(settings),
        seeding_definitions(settings),
        privacy_definitions(settings),
    )


defs = build_definitions()
