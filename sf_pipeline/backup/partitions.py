"""Backup windows: time partitions on SystemModstamp, from the settings file."""

from __future__ import annotations

import dagster as dg

from sf_pipeline.settings import Settings

PARTITION_FORMAT = "%Y-%m-%d-%H:%M"


def backup_partitions(settings: Settings) -> dg.TimeWindowPartitionsDefinition:
    return dg.TimeWindowPartitionsDefinition(
        cron_schedule=settings.window_cron, start=settings.start, timezone=settings.timezone, fmt=PARTITION_FORMAT,
    )
