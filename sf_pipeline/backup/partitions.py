"""Backup windows: time partitions on SystemModstamp, from the settings file."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import dagster as dg

from sf_pipeline.settings import Settings

PARTITION_FORMAT = "%Y-%m-%d-%H:%M"


def backup_partitions(settings: Settings) -> dg.TimeWindowPartitionsDefinition:
    # Dagster reads a start's wall clock in `timezone` (it replaces the offset), so it gets the instant's there
    start = settings.start.astimezone(ZoneInfo(settings.timezone))
    return dg.TimeWindowPartitionsDefinition(
        cron_schedule=settings.window_cron,
        start=start,
        timezone=settings.timezone,
        fmt=PARTITION_FORMAT,
    )


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def extraction_bounds(
    partitions: dg.TimeWindowPartitionsDefinition, window: dg.TimeWindow
) -> tuple[datetime, datetime]:
    """The SystemModstamp range a window backs up.

    The first window also takes every record stamped before the partitions start, so the start can
    be the day a backup begins (not the day the org was born) and the first window is the full load.
    """
    start = EPOCH if window.start <= partitions.start else window.start
    return start, window.end
