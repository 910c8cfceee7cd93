"""Anomaly checks over the backup's history: find damage in a window and say how to undo it.

No Dagster here. Every detector is listed once, in `registry.py`. Asset checks and sensors call
`run_detectors` for a window of an object, turn each finding into an `IncidentReport` (`report_incident`),
store it (`save_incident`) and show its markdown and restore config.

    thresholds = resolve_settings(settings.anomalies, {o.name: o.anomalies for o in settings.objects},
                                  [o.name for o in settings.objects])  # raises on a bad threshold
    backup_start = settings.start  # the partitions' start (an aware instant)
    findings = run_detectors(conn, "Opportunity", start, end, thresholds["Opportunity"], user_names,
                             history_start=backup_start)
    for finding in findings:
        report = report_incident(conn, finding, org="production", field_names={"accountid": "AccountId"})
        save_incident(conn, report)
        print(report.to_markdown(), report.restore_config_yaml())
"""

from sf_pipeline.anomalies.chart import bar_chart_png, sparkline
from sf_pipeline.anomalies.detectors import (
    Baseline,
    Finding,
    SampleChange,
    WindowChanges,
    baseline,
    change_volume,
    detect_mass_delete,
    detect_mass_nulling,
    detect_mass_overwrite,
    detect_orphans,
    detect_user_share,
    detect_volume,
    reference_columns,
    user_names_from_backup,
    window_changes,
)
from sf_pipeline.anomalies.errors import AnomalyError, AnomalySettingsError
from sf_pipeline.anomalies.incidents import (
    MAX_RESTORE_IDS,
    IncidentReport,
    StoredIncident,
    ensure_incident_table,
    format_instant,
    get_incident,
    list_incidents,
    report_incident,
    restore_config_for,
    save_incident,
)
from sf_pipeline.anomalies.registry import DEFAULT_THRESHOLDS, DETECTORS, Detector, FindingKind, run_detectors
from sf_pipeline.anomalies.settings import overrides_from_settings, resolve_settings, thresholds_for
from sf_pipeline.anomalies.thresholds import (
    SKIPPED_COLUMNS,
    AnomalyThresholds,
    MassChangeThresholds,
    OrphanThresholds,
    UserShareThresholds,
    VolumeThresholds,
)

__all__ = [
    "DEFAULT_THRESHOLDS",
    "DETECTORS",
    "MAX_RESTORE_IDS",
    "SKIPPED_COLUMNS",
    "AnomalyError",
    "AnomalySettingsError",
    "AnomalyThresholds",
    "Baseline",
    "Detector",
    "Finding",
    "FindingKind",
    "IncidentReport",
    "MassChangeThresholds",
    "OrphanThresholds",
    "SampleChange",
    "StoredIncident",
    "UserShareThresholds",
    "VolumeThresholds",
    "WindowChanges",
    "bar_chart_png",
    "baseline",
    "change_volume",
    "detect_mass_delete",
    "detect_mass_nulling",
    "detect_mass_overwrite",
    "detect_orphans",
    "detect_user_share",
    "detect_volume",
    "ensure_incident_table",
    "format_instant",
    "get_incident",
    "list_incidents",
    "overrides_from_settings",
    "reference_columns",
    "report_incident",
    "resolve_settings",
    "restore_config_for",
    "run_detectors",
    "save_incident",
    "sparkline",
    "thresholds_for",
    "user_names_from_backup",
    "window_changes",
]
