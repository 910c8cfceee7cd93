"""Thresholds: defaults, then settings for every object, one object, one field."""

from __future__ import annotations

import pytest

from sf_pipeline.anomalies import (
    DEFAULT_THRESHOLDS,
    AnomalySettingsError,
    MassChangeThresholds,
    overrides_from_settings,
    thresholds_for,
)

SETTINGS = {
    "defaults": {"mass_delete": {"min_share": 0.05}, "volume": {"spike_factor": 5}},
    "objects": {
        "Opportunity": {
            "mass_nulling": {"min_records": 100, "min_share": 0.3},
            "skip_fields": ["NextStep"],
            "fields": {"AccountId": {"mass_nulling": {"min_records": 10, "min_share": 0.01, "severity": "error"}}},
        },
        "Case": {"user_share": {"enabled": False}},
    },
}


def test_defaults_follow_the_issue() -> None:
    t = DEFAULT_THRESHOLDS
    assert (t.mass_nulling.min_records, t.mass_nulling.min_share, t.mass_nulling.severity) == (
        50,
        0.2,
        "error",
    )
    assert (t.mass_overwrite.min_records, t.mass_overwrite.min_share) == (50, 0.2)
    assert (t.mass_delete.min_records, t.mass_delete.min_share) == (50, 0.1)
    assert (t.user_share.min_records, t.user_share.min_share) == (100, 0.3)
    assert (t.volume.spike_factor, t.volume.spike_min_changes, t.volume.drop_min_baseline) == (10, 200, 50)
    assert (t.volume.spike_severity, t.volume.drop_severity) == ("error", "warning")
    assert t.orphans.min_records == 20


def test_object_and_field_settings_win_over_defaults() -> None:
    opportunity = thresholds_for("Opportunity", overrides=SETTINGS)
    assert opportunity.mass_nulling.min_records == 100 and opportunity.mass_nulling.min_share == 0.3
    assert opportunity.mass_delete.min_share == 0.05 and opportunity.volume.spike_factor == 5.0
    assert opportunity.skip_fields == ("nextstep",)
    account_id = opportunity.for_field("AccountId")
    assert account_id.mass_nulling == MassChangeThresholds(min_records=10, min_share=0.01)
    assert account_id.mass_delete.min_share == 0.05  # the rest comes from the object
    assert opportunity.for_field("stagename") is opportunity
    assert opportunity.floor("mass_nulling") == 10
    assert thresholds_for("opportunity", "accountid", SETTINGS).mass_nulling.min_records == 10
    assert thresholds_for("Case", overrides=SETTINGS).user_share.enabled is False
    assert thresholds_for("Lead", overrides=SETTINGS).mass_nulling == DEFAULT_THRESHOLDS.mass_nulling
    assert thresholds_for("Lead") == DEFAULT_THRESHOLDS


def test_mass_change_severity_needs_count_and_share_or_a_large_count() -> None:
    limits = MassChangeThresholds()
    assert limits.classify(50, 0.2) == "error"
    assert limits.classify(49, 1.0) is None
    assert limits.classify(500, 0.19) is None
    assert limits.classify(1000, 0.01) == "warning"
    assert MassChangeThresholds(warn_min_records=None).classify(10**6, 0.01) is None
    assert MassChangeThresholds(enabled=False).classify(10**6, 1.0) is None


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"objects": {"Opportunity": {"mass_nuling": {}}}}, "unknown detector 'mass_nuling'"),
        ({"defaults": {"mass_nulling": {"min_record": 5}}}, "unknown threshold 'min_record'"),
        ({"defaults": {"mass_nulling": {"min_share": 20}}}, "a share is between 0 and 1"),
        ({"defaults": {"mass_nulling": {"severity": "critical"}}}, "'error' or 'warning'"),
        ({"defaults": {"mass_nulling": {"min_records": "many"}}}, "whole number"),
        ({"default": {}}, "unknown key"),
        (
            {"objects": {"Opportunity": {"fields": {"AccountId": {"volume": {}}}}}},
            "unknown detector 'volume'",
        ),
    ],
)
def test_settings_mistakes_are_reported_with_where_they_are(settings: dict, message: str) -> None:
    with pytest.raises(AnomalySettingsError, match=message):
        thresholds_for("Opportunity", overrides=settings)


def test_per_object_blocks_of_the_settings_file_merge_into_the_overrides() -> None:
    merged = overrides_from_settings(
        {
            "defaults": {"orphans": {"min_records": 5}},
            "objects": {"Case": {"mass_delete": {"min_records": 10}}},
        },
        {"case": {"mass_delete": {"min_share": 0.5}}, "Lead": {"volume": {"enabled": False}}, "Account": {}},
    )
    assert merged == {
        "defaults": {"orphans": {"min_records": 5}},
        "objects": {
            "Case": {"mass_delete": {"min_records": 10, "min_share": 0.5}},
            "Lead": {"volume": {"enabled": False}},
        },
    }
    assert thresholds_for("Case", overrides=merged).mass_delete.min_share == 0.5
