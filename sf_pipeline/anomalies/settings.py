"""Thresholds of the anomaly detectors: built-in defaults, overridable per object and per field.

Settings come as a plain dict (the `anomalies` block of `sf_pipeline.yaml`, merged with each object's own
`anomalies` block by `overrides_from_settings`):

    defaults:                       # every object
      mass_delete: {min_share: 0.05}
    objects:
      Opportunity:
        mass_nulling: {min_records: 50, min_share: 0.2}
        skip_fields: [NextStep]     # columns never reported (besides the built-in bookkeeping list)
        fields:
          AccountId:                # field-level overrides (mass_nulling, mass_overwrite, orphans)
            mass_nulling: {min_records: 10, min_share: 0.01}

Why shares are taken of the object's *live records* and not of the window's changed records: in a window
where an integration nulls AccountId on every Opportunity, that change is ~100% of the window's changes
but so is any legitimate nightly job; what makes it damage is that it hits a large part of the object.
A share of live records alone would miss 10,000 nulled lookups in a 1,000,000-record org (1%), so each
mass-change detector also has an absolute `warn_min_records` that raises a *warning* whatever the share.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sf_pipeline.anomalies.errors import AnomalySettingsError

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


_DETECTOR_TYPES: dict[str, type] = {
    "mass_nulling": MassChangeThresholds,
    "mass_overwrite": MassChangeThresholds,
    "mass_delete": MassChangeThresholds,
    "mass_vanishing": MassChangeThresholds,
    "user_share": UserShareThresholds,
    "volume": VolumeThresholds,
    "orphans": OrphanThresholds,
}
# Detectors whose thresholds may differ per field.
FIELD_DETECTORS: tuple[str, ...] = ("mass_nulling", "mass_overwrite", "orphans")


@dataclass(frozen=True)
class AnomalyThresholds:
    """Every detector's thresholds for one object (and, in `fields`, per field where settings say so).

    `fields` maps lower-cased column names to the thresholds resolved for that field; use `for_field`.
    """

    mass_nulling: MassChangeThresholds = MassChangeThresholds()
    mass_overwrite: MassChangeThresholds = MassChangeThresholds()
    mass_delete: MassChangeThresholds = MassChangeThresholds(min_share=0.1)
    # records gone for good (hard delete, purge, merge, unknown: anomalies/vanishing.py): a lower bar than deletes
    mass_vanishing: MassChangeThresholds = MassChangeThresholds(min_records=20, min_share=0.05, warn_min_records=200)
    user_share: UserShareThresholds = UserShareThresholds()
    volume: VolumeThresholds = VolumeThresholds()
    orphans: OrphanThresholds = OrphanThresholds()
    skip_fields: tuple[str, ...] = ()
    fields: Mapping[str, AnomalyThresholds] = field(default_factory=dict)

    def for_field(self, column: str) -> AnomalyThresholds:
        """The thresholds of one field (its column name or API name): field overrides, else the object's."""
        return self.fields.get(column.lower(), self)

    def floor(self, detector: str) -> int:
        """The smallest record count any field could be reported with by a mass-change detector."""
        levels = [self, *self.fields.values()]
        floors = [getattr(t, detector).floor for t in levels if getattr(t, detector).enabled]
        return min(floors) if floors else 0

    def enabled(self, detector: str) -> bool:
        """Whether a detector runs at all: enabled for the object or for at least one field."""
        return any(getattr(t, detector).enabled for t in [self, *self.fields.values()])


DEFAULT_THRESHOLDS = AnomalyThresholds()


def _coerce(where: str, name: str, value: Any, default: Any, annotation: str) -> Any:
    """Check one settings value against the type of the threshold it overrides."""
    if "Severity" in annotation:
        if value not in SEVERITIES:
            raise AnomalySettingsError(
                f"{where}.{name}: severity must be 'error' or 'warning', got {value!r}"
            )
        return value
    if value is None and "None" in annotation:
        return None
    if isinstance(default, bool) or annotation == "bool":
        if not isinstance(value, bool):
            raise AnomalySettingsError(f"{where}.{name}: expected true or false, got {value!r}")
        return value
    if annotation.startswith("int"):
        if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value or value < 0:
            raise AnomalySettingsError(f"{where}.{name}: expected a whole number >= 0, got {value!r}")
        return int(value)
    if annotation == "float":
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise AnomalySettingsError(f"{where}.{name}: expected a number >= 0, got {value!r}")
        if name.endswith("share") and value > 1:
            raise AnomalySettingsError(
                f"{where}.{name}: a share is between 0 and 1 (0.2 = 20%), got {value!r}"
            )
        return float(value)
    return value


def _apply(base: Any, where: str, values: Any) -> Any:
    if not isinstance(values, Mapping):
        raise AnomalySettingsError(f"{where}: expected a mapping of threshold -> value, got {values!r}")
    known = {f.name: f for f in dataclasses.fields(base)}
    changes = {}
    for name, value in values.items():
        if name not in known:
            raise AnomalySettingsError(f"{where}: unknown threshold {name!r}; known: {', '.join(known)}")
        changes[name] = _coerce(where, name, value, getattr(base, name), str(known[name].type))
    return dataclasses.replace(base, **changes)


def _merge_level(
    base: AnomalyThresholds, where: str, level: Any, allow: tuple[str, ...]
) -> AnomalyThresholds:
    """Apply one level of settings (defaults, an object, a field) over `base`."""
    if level is None:
        return base
    if not isinstance(level, Mapping):
        raise AnomalySettingsError(f"{where}: expected a mapping, got {level!r}")
    changes: dict[str, Any] = {}
    for key, values in level.items():
        if key in ("fields", "objects"):
            continue  # handled by the caller
        if key == "skip_fields":
            if isinstance(values, str) or not isinstance(values, list | tuple):
                raise AnomalySettingsError(
                    f"{where}.skip_fields: expected a list of field names, got {values!r}"
                )
            changes["skip_fields"] = tuple(sorted({*base.skip_fields, *(str(v).lower() for v in values)}))
            continue
        if key not in allow:
            raise AnomalySettingsError(
                f"{where}: unknown detector {key!r}; known here: {', '.join((*allow, 'skip_fields'))}"
            )
        changes[key] = _apply(getattr(base, key), f"{where}.{key}", values)
    return dataclasses.replace(base, **changes)


def _lookup(mapping: Mapping[str, Any], name: str) -> Any:
    """A value by Salesforce name, case-insensitively (API names and column names both match)."""
    wanted = name.lower()
    for key, value in mapping.items():
        if str(key).lower() == wanted:
            return value
    return None


def thresholds_for(
    object_name: str,
    field: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> AnomalyThresholds:
    """The thresholds of an object (or of one of its fields): defaults <- `defaults` <- object <- field.

    Without `field`, the result's `fields` holds the resolved thresholds of every field the settings
    mention for this object, so detectors can apply field overrides without the settings dict.
    """
    overrides = overrides or {}
    if not isinstance(overrides, Mapping):
        raise AnomalySettingsError(
            f"anomalies: expected a mapping with 'defaults' and 'objects', got {overrides!r}"
        )
    unknown = set(overrides) - {"defaults", "objects"}
    if unknown:
        raise AnomalySettingsError(
            f"anomalies: unknown key(s) {sorted(unknown)}; use 'defaults' (every object) and 'objects' (per object)"
        )
    detectors = tuple(_DETECTOR_TYPES)
    resolved = _merge_level(DEFAULT_THRESHOLDS, "anomalies.defaults", overrides.get("defaults"), detectors)
    objects = overrides.get("objects") or {}
    if not isinstance(objects, Mapping):
        raise AnomalySettingsError(
            f"anomalies.objects: expected a mapping of object -> settings, got {objects!r}"
        )
    object_level = _lookup(objects, object_name)
    where = f"anomalies.objects.{object_name}"
    resolved = _merge_level(resolved, where, object_level, detectors)
    field_levels = (object_level or {}).get("fields") or {}
    if not isinstance(field_levels, Mapping):
        raise AnomalySettingsError(
            f"{where}.fields: expected a mapping of field -> settings, got {field_levels!r}"
        )

    per_field = {
        str(name).lower(): _merge_level(resolved, f"{where}.fields.{name}", level, FIELD_DETECTORS)
        for name, level in field_levels.items()
    }
    if field is not None:
        return per_field.get(field.lower(), resolved)
    return dataclasses.replace(resolved, fields=per_field)


def overrides_from_settings(
    anomalies: Mapping[str, Any] | None, per_object: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    """One overrides dict from the settings file's top-level `anomalies` block and each backed-up object's
    own `anomalies` block (`{Object: {...}}`); an object's own block wins over `anomalies.objects`."""
    merged: dict[str, Any] = {"defaults": dict((anomalies or {}).get("defaults") or {}), "objects": {}}
    for name, level in ((anomalies or {}).get("objects") or {}).items():
        merged["objects"][name] = dict(level or {})
    for name, level in (per_object or {}).items():
        if not level:
            continue
        existing = _lookup(merged["objects"], name)
        target = existing if existing is not None else merged["objects"].setdefault(name, {})
        for key, value in level.items():
            if isinstance(value, Mapping) and isinstance(target.get(key), Mapping):
                target[key] = {**target[key], **value}
            else:
                target[key] = value
    return merged
