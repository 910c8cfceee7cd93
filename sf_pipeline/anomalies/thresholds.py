"""The thresholds of the anomaly detectors: one frozen dataclass per kind, and every detector's for one object.

Plain data with no knowledge of which detectors exist: the detectors and their default thresholds are listed
once, in `registry.py`; `settings.py` resolves the settings file's `anomalies` block against that list.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["error", "warning"]
SEVERITIES: tuple[str, ...] = ("error", "warning")

# Columns that change with every edit or are bookkeeping: never reported as damaged fields.
# `isdeleted` is the mass-delete detector's own signal; `dbt_*` are the snapshot's validity columns, `_sfp_*`
# the backup's vanished-record flags (warehouse/vanished.py).
SKIPPED_COLUMNS: frozenset[str] = frozenset(
    {
        "id",
        "systemmodstamp",
        "lastmodifieddate",
        "lastmodifiedbyid",
        "lastvieweddate",
        "lastreferenceddate",
        "isdeleted",
    }
)
# Columns a restore cannot write (set by Salesforce on insert): left out of whole-record restores.
AUDIT_COLUMNS: frozenset[str] = frozenset({"createddate", "createdbyid"})


def is_skipped_column(column: str, extra: frozenset[str] | tuple[str, ...] = ()) -> bool:
    """True for bookkeeping columns the detectors never report (see `SKIPPED_COLUMNS`)."""
    name = column.lower()
    return name in SKIPPED_COLUMNS or name.startswith(("dbt_", "_sfp_")) or name in extra


@dataclass(frozen=True)
class MassChangeThresholds:
    """Mass nulling, mass overwrite and mass deletion: many records hit the same way by one user.

    Severity `severity` when at least `min_records` records AND at least `min_share` of the object's live
    records are hit; `warning` when fewer than `min_share` but at least `warn_min_records` (None: never).
    """

    enabled: bool = True
    min_records: int = 50
    min_share: float = 0.2
    warn_min_records: int | None = 1000
    severity: Severity = "error"

    def classify(self, count: int, share: float) -> Severity | None:
        """The severity of `count` records (`share` of the live records) hit, or None when it is normal."""
        if not self.enabled or count <= 0:
            return None
        if count >= self.min_records and share >= self.min_share:
            return self.severity
        if self.warn_min_records is not None and count >= max(self.warn_min_records, self.min_records):
            return "warning"
        return None

    @property
    def floor(self) -> int:
        """The smallest number of records that can be reported at all (for filtering in SQL)."""
        candidates = [self.min_records]
        if self.warn_min_records is not None:
            candidates.append(max(self.warn_min_records, self.min_records))
        return min(candidates)


@dataclass(frozen=True)
class UserShareThresholds:
    """One user changing an unusual share of an object's live records in one window.

    A warning by default: a legitimate integration can do it too, and real damage of this kind is also
    caught as mass nulling/overwrite (error) or as a volume spike.
    """

    enabled: bool = True
    min_records: int = 100
    min_share: float = 0.3
    severity: Severity = "warning"

    def classify(self, count: int, share: float) -> Severity | None:
        if self.enabled and count >= self.min_records and share >= self.min_share:
            return self.severity
        return None


@dataclass(frozen=True)
class VolumeThresholds:
    """Change volume of a window against the same window of previous days.

    Spike: more than `spike_factor` x the baseline median AND more than `spike_min_changes` changes.
    Drop: at most `drop_max_changes` changes while the median is at least `drop_min_baseline` (a sync that
    silently returns nothing, e.g. after a permission change). No alarm with fewer than
    `min_baseline_windows` previous windows; `same_weekday` compares with the same weekday of previous
    weeks instead of every previous day (orgs that are quiet at weekends).
    """

    enabled: bool = True
    spike_factor: float = 10.0
    spike_min_changes: int = 200
    spike_severity: Severity = "error"
    drop_max_changes: int = 0
    drop_min_baseline: float = 50.0
    drop_severity: Severity = "warning"
    baseline_days: int = 14
    min_baseline_windows: int = 7
    same_weekday: bool = False


@dataclass(frozen=True)
class OrphanThresholds:
    """Children left pointing at parents that are deleted or missing in the backup."""

    enabled: bool = True
    min_records: int = 20
    severity: Severity = "error"


@dataclass(frozen=True)
class AnomalyThresholds:
    """Every detector's thresholds for one object (and, in `fields`, per field where settings say so).

    `detectors` maps each detector's name (as in the registry and the settings file) to its thresholds, also
    readable as an attribute (`thresholds.mass_nulling`). `fields` maps lower-cased column names to the
    thresholds resolved for that field; use `for_field`.
    """

    detectors: Mapping[str, Any]
    skip_fields: tuple[str, ...] = ()
    fields: Mapping[str, AnomalyThresholds] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        # only called for names that are not attributes: a detector's thresholds by its name
        detectors = self.__dict__.get("detectors") or {}
        if name in detectors:
            return detectors[name]
        raise AttributeError(f"{type(self).__name__} has no detector or attribute {name!r}")

    def of(self, detector: str) -> Any:
        """One detector's thresholds for the object."""
        return self.detectors[detector]

    def for_field(self, column: str) -> AnomalyThresholds:
        """The thresholds of one field (its column name or API name): field overrides, else the object's."""
        return self.fields.get(column.lower(), self)

    def floor(self, detector: str) -> int:
        """The smallest record count any field could be reported with by a mass-change detector."""
        levels = [self, *self.fields.values()]
        floors = [t.of(detector).floor for t in levels if t.of(detector).enabled]
        return min(floors) if floors else 0

    def enabled(self, detector: str) -> bool:
        """Whether a detector runs at all: enabled for the object or for at least one field."""
        return any(t.of(detector).enabled for t in [self, *self.fields.values()])
