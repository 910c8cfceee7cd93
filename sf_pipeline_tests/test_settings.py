"""The settings file is one model: defaults written once, the first window's start keeps its offset, and a mistake
names its key and the problem."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sf_pipeline.backup.partitions import backup_partitions
from sf_pipeline.settings import Settings, SettingsError, load_settings

BASE = "orgs: {production: {}, sandbox: {}}\nbackup:\n  org: production\n  objects: [Account]\n"


def _load(tmp_path, extra: str = "") -> Settings:
    path = tmp_path / "sf_pipeline.yaml"
    path.write_text(BASE + extra)
    return load_settings(path)


def test_a_minimal_file_takes_the_models_defaults(tmp_path):
    settings = _load(tmp_path)
    for name, info in Settings.model_fields.items():
        if name in (
            "window_cron",
            "timezone",
            "schedule_lag_minutes",
            "max_windows_per_tick",
            "retry_max_minutes",
            "budget_share",
            "bulk_threshold",
            "bulk_slice_records",
            "reconcile_every_window_below",
            "reconcile_large_every_hours",
            "dagster_base_url",
        ):
            assert getattr(settings, name) == info.default, name
    assert settings.start == datetime(2026, 1, 1, tzinfo=UTC)  # the default start, in the default time zone
    assert (settings.orgs, settings.backup_org, [o.name for o in settings.objects]) == (
        ("production", "sandbox"),
        "production",
        ["Account"],
    )


@pytest.mark.parametrize(
    ("partitions", "first_window"),
    [
        ("{start: '2026-11-01T00:00:00+02:00'}", "2026-10-31-22:00"),  # the offset is kept, not dropped
        ("{start: '2026-11-01T00:00:00Z'}", "2026-11-01-00:00"),
        ("{start: '2026-11-01T00:00:00', timezone: Europe/Paris}", "2026-11-01-00:00"),  # no offset: in the time zone
        ("{start: '2026-11-01T00:00:00Z', timezone: Europe/Paris}", "2026-11-01-01:00"),
    ],
)
def test_the_first_window_starts_at_the_instant_the_file_names(tmp_path, partitions, first_window):
    settings = _load(tmp_path, f"  partitions: {partitions}\n")
    assert settings.start.tzinfo is not None
    assert backup_partitions(settings).get_first_partition_key() == first_window


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("  partitions: {start: 'soon'}\n", "backup.partitions.start 'soon' is not an ISO instant"),
        ("  partitions: {timezone: Mars/Base}\n", "backup.partitions.timezone 'Mars/Base' is not a time zone name"),
        (
            "  api_budget: {max_share_of_daily_limit: 2}\n",
            "api_budget.max_share_of_daily_limit must be in (0, 1], got 2",
        ),
        ("  max_windows_per_tick: -1\n", "backup.max_windows_per_tick must be a positive whole number, got -1"),
        ("  reconcile: {large_every_hours: 0}\n", "backup.reconcile.large_every_hours must be a positive number"),
        ("  reconcile: {every_window_below: 0}\n", "backup.reconcile.every_window_below must be a positive whole"),
        ("  schedule_lag_minutes: soon\n", "backup.schedule_lag_minutes: Input should be a valid integer"),
        ("  org: staging\n", "backup.org 'staging' is not one of the orgs"),
        ("salesforce: {api_version: 59}\n", 'salesforce.api_version must look like "59.0", got 59'),
        ("alerts: [1]\n", "'alerts' must be a mapping"),
        ("blobs: {colour: red}\n", "unknown blobs settings ['colour']"),
    ],
)
def test_a_mistake_names_the_file_the_key_and_the_problem(tmp_path, extra, message):
    with pytest.raises(SettingsError) as error:
        _load(tmp_path, extra)
    assert str(error.value).startswith(f"{tmp_path / 'sf_pipeline.yaml'}: ") and message in str(error.value)
