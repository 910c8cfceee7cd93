"""Every anomaly detector, listed once: its name, thresholds, how it runs and how its findings read.

Adding a detector is one row of the `DETECTORS` table: its name (the key of its thresholds in the settings
file's `anomalies` block), its default thresholds, whether fields may override them, the function that runs it
over one window, the phrase the check's description uses, and the kinds of finding it reports (each a
`FindingKind` above the table: a title and the sentence that says what changed). Settings resolution
(`settings.py`), the check (`checks.py`), incident reports (`incidents.py`) and alerts (`alerts.py`) all read
this list.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg

from sf_pipeline.anomalies.detectors import (
    Finding,
    WindowChanges,
    analytics,
    detect_mass_delete,
    detect_mass_nulling,
    detect_mass_overwrite,
    detect_orphans,
    detect_user_share,
    detect_volume,
    resolve_thresholds,
    user_names_from_backup,
    window_changes,
    without_lookups_cleared_by_deletions,
)
from sf_pipeline.anomalies.thresholds import (
    AnomalyThresholds,
    MassChangeThresholds,
    OrphanThresholds,
    UserShareThresholds,
    VolumeThresholds,
)
from sf_pipeline.anomalies.vanishing import detect_mass_vanishing, without_vanished_deletions

if TYPE_CHECKING:
    from sf_pipeline.anomalies.incidents import IncidentReport


@dataclass(frozen=True)
class WindowRun:
    """What every detector gets: one window of one object, its resolved thresholds and the window's changed
    fields (materialized once and shared)."""

    conn: psycopg.Connection[Any]
    object_name: str
    start: datetime
    end: datetime
    thresholds: AnomalyThresholds
    changes: WindowChanges
    references: Mapping[str, str] | None = None
    history_start: datetime | None = None


@dataclass(frozen=True)
class FindingKind:
    """How one kind of finding reads: a title (`Mass nulling`) and the sentence saying what changed.

    `whole_records`: its restore brings records back whole (every field the org lets it write), so the restore
    config names no field."""

    title: str
    what: Callable[[IncidentReport], str]
    whole_records: bool = False


@dataclass(frozen=True)
class Detector:
    """One detector. `name` keys its thresholds in the settings file; `thresholds` are its defaults;
    `per_field`: fields may override them (`anomalies.objects.<Object>.fields.<Field>`); `run` finds its
    findings in one window; `describes` is its phrase in the check's description; `findings` are the kinds of
    finding it reports (their `detector` value, stored with each incident). `settle`, run after every
    detector, may take findings of other detectors over (records gone for good are not also deletions)."""

    name: str
    thresholds: Any
    per_field: bool
    run: Callable[[WindowRun], list[Finding]]
    describes: str
    findings: Mapping[str, FindingKind]
    settle: Callable[[psycopg.Connection[Any], str, list[Finding]], list[Finding]] | None = None


def _fields(report: IncidentReport) -> str:
    return ", ".join(f"`{f}`" for f in report.fields)


def _nulled(report: IncidentReport) -> str:
    return f"{_fields(report)} went from a value to empty"


def _one_user(report: IncidentReport) -> str:
    return f"one user changed {_fields(report) or 'records'} on an unusual share of {report.object}"


def _overwritten(report: IncidentReport) -> str:
    values = sorted({str(p.get("value")) for p in report.details.get("per_field", [])})
    return f"{_fields(report)} set to the same value ({', '.join(repr(v) for v in values)})"


def _deleted(report: IncidentReport) -> str:
    cascade = report.details.get("cascade") or {}
    if cascade:
        beneath = ", ".join(f"{n:,} {table}" for table, n in cascade.items())
        return (
            f"{report.object} records deleted, and with them (cascade, same transaction) {beneath}: one "
            "incident for the whole tree"
        )
    return f"{report.object} records deleted"


def _vanished(report: IncidentReport) -> str:
    return (
        f"{report.object} records {report.details.get('cause', 'gone')}: the org no longer holds them, not "
        "even in the recycle bin; the restore below re-creates them from history (new ids)"
    )


def _spike(report: IncidentReport) -> str:
    d = report.details
    return (
        f"{d.get('window_versions', 0):,} changes in the window, {d.get('factor') or 0:.0f}x the usual "
        f"{d.get('baseline_median', 0):g} ({d.get('baseline', 'same hours of previous days')}); the restore "
        "below selects what the most active user changed"
    )


def _drop(report: IncidentReport) -> str:
    d = report.details
    return (
        f"no change at all in the window, where there usually are {d.get('baseline_median', 0):g} "
        f"({d.get('baseline', 'same hours of previous days')}): check that the backup user can still see the "
        "object (permissions, sharing) and that the sync really ran"
    )


def _orphaned(report: IncidentReport) -> str:
    d = report.details
    cleared = d.get("lookups_cleared") or 0
    return (
        f"{_fields(report)} points at {d.get('parent_object')} records that are deleted "
        f"({d.get('parents_deleted', 0):,}) or missing in the backup ({d.get('parents_missing', 0):,})"
        + (f"; the deletion cleared {cleared:,} of these lookups (Salesforce empties them)" if cleared else "")
    )


def _runs(detect: Callable[..., list[Finding]], *shared: str) -> Callable[[WindowRun], list[Finding]]:
    """`detect(conn, object, start, end, thresholds)` over the window, given the `shared` inputs of the `WindowRun`
    it takes by keyword (`changes`, `references`, `history_start`)."""
    return lambda w: detect(w.conn, w.object_name, w.start, w.end, w.thresholds, **{k: getattr(w, k) for k in shared})


# default thresholds: deletions need a tenth of the live records; records gone for good (hard delete, purge, merge,
# unknown: vanishing.py) a lower bar than deletes
_DELETES = MassChangeThresholds(min_share=0.1)
_VANISHING = MassChangeThresholds(min_records=20, min_share=0.05, warn_min_records=200)

# The kinds of finding: a title and the sentence saying what changed; records gone for good come back whole.
_NULLED = FindingKind("Mass nulling", _nulled)
_OVERWRITTEN = FindingKind("Mass overwrite", _overwritten)
_DELETED = FindingKind("Mass deletion", _deleted)
_GONE = FindingKind("Records gone for good (hard delete, purge, merge)", _vanished, whole_records=True)
_ONE_USER = FindingKind("One user changed an unusual share", _one_user)
_SPIKE = FindingKind("Change volume spike", _spike)
_DROP = FindingKind("Change volume dropped to nothing", _drop)
_ORPHANS = FindingKind("Orphaned records (parents deleted)", _orphaned)
_DANGLING = FindingKind("Lookups to missing or deleted parents", _orphaned)

# One row a detector (a table: `ruff format` would put each argument on a line of its own).
# fmt: off
DETECTORS: tuple[Detector, ...] = (
    #        name              thresholds              per field  run over the window, given what it shares
    #        phrase in the check's description      kinds of finding it reports (their `detector` value)
    Detector("mass_nulling",   MassChangeThresholds(), True,  _runs(detect_mass_nulling, "changes"),
             "mass nulling",                        {"mass_nulling": _NULLED}),
    Detector("mass_overwrite", MassChangeThresholds(), True,  _runs(detect_mass_overwrite, "changes"),
             "mass overwrite",                      {"mass_overwrite": _OVERWRITTEN}),
    Detector("mass_delete",    _DELETES,               False, _runs(detect_mass_delete, "changes"),
             "mass deletion",                       {"mass_delete": _DELETED}),
    Detector("mass_vanishing", _VANISHING,             False, _runs(detect_mass_vanishing),
             "records gone for good",               {"mass_vanishing": _GONE}, settle=without_vanished_deletions),
    Detector("user_share",     UserShareThresholds(),  False, _runs(detect_user_share, "changes"),
             "one user changing an unusual share",  {"user_share": _ONE_USER}),
    Detector("volume",         VolumeThresholds(),     False, _runs(detect_volume, "history_start", "changes"),
             "change volume far from its baseline", {"volume_spike": _SPIKE, "volume_drop": _DROP}),
    Detector("orphans",        OrphanThresholds(),     True,  _runs(detect_orphans, "references"),
             "orphaned references",                 {"orphans": _ORPHANS, "dangling_references": _DANGLING},
             settle=without_lookups_cleared_by_deletions),
)
# fmt: on

DETECTORS_BY_NAME: Mapping[str, Detector] = {d.name: d for d in DETECTORS}
# Detectors whose thresholds may differ per field.
FIELD_DETECTORS: tuple[str, ...] = tuple(d.name for d in DETECTORS if d.per_field)
FINDING_KINDS: Mapping[str, FindingKind] = {kind: k for d in DETECTORS for kind, k in d.findings.items()}
DEFAULT_THRESHOLDS = AnomalyThresholds(detectors={d.name: d.thresholds for d in DETECTORS})


def title_of(kind: str) -> str:
    """A finding kind's title (`mass_nulling` -> `Mass nulling`); the kind itself for one no detector reports."""
    found = FINDING_KINDS.get(kind)
    return found.title if found else kind


def what_changed(report: IncidentReport) -> str:
    """The sentence saying what a finding's records went through."""
    found = FINDING_KINDS.get(report.detector)
    return found.what(report) if found else report.detector


def restores_whole_records(kind: str) -> bool:
    """Whether the restore of this kind of finding brings records back whole (see `FindingKind`)."""
    found = FINDING_KINDS.get(kind)
    return bool(found and found.whole_records)


def check_description(object_name: str) -> str:
    """What the anomaly check of an object looks for, from every detector's phrase."""
    phrases = [d.describes for d in DETECTORS]
    listed = ", ".join(phrases[:-1]) + f" and {phrases[-1]}" if len(phrases) > 1 else phrases[0]
    return f"{listed[:1].upper()}{listed[1:]} in the window's {object_name} changes."


_SEVERITY_ORDER = {"error": 0, "warning": 1}


def run_detectors(
    conn: psycopg.Connection[Any],
    object_name: str,
    start: datetime,
    end: datetime,
    thresholds: AnomalyThresholds | Mapping[str, Any] | None = None,
    user_names: Mapping[str, str] | None = None,
    *,
    references: Mapping[str, str] | None = None,
    history_start: datetime | None = None,
) -> list[Finding]:
    """Every detector over one window of one object; errors first, then the largest.

    `thresholds`: resolved thresholds, or the settings dict (`{"defaults": ..., "objects": ...}`), or None
    for the defaults. `user_names` (id -> name, e.g. from the org) names the acting users; ids it lacks are
    looked up in the backup's User mirror when there is one. `references` and `history_start`: see
    `detect_orphans`/`reference_columns` and `baseline`.
    """
    resolved = resolve_thresholds(thresholds, object_name)
    findings: list[Finding] = []
    with analytics(conn), window_changes(conn, object_name, start, end) as changes:
        run = WindowRun(conn, object_name, start, end, resolved, changes, references, history_start)
        for detector in DETECTORS:
            findings += detector.run(run)
        for detector in DETECTORS:
            if detector.settle is not None:
                findings = detector.settle(conn, object_name, findings)

    names = dict(user_names or {})
    missing = sorted({f.user_id for f in findings if f.user_id and f.user_id not in names})
    if missing:
        names |= user_names_from_backup(conn, missing)
    findings = [replace(f, user_name=names.get(f.user_id)) if f.user_id in names else f for f in findings]
    return sorted(findings, key=lambda f: (_SEVERITY_ORDER.get(f.severity, 9), -f.affected_count, f.detector))


__all__ = [
    "DEFAULT_THRESHOLDS",
    "DETECTORS",
    "DETECTORS_BY_NAME",
    "FIELD_DETECTORS",
    "FINDING_KINDS",
    "Detector",
    "FindingKind",
    "WindowRun",
    "check_description",
    "restores_whole_records",
    "run_detectors",
    "title_of",
    "what_changed",
]
