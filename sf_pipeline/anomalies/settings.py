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
from collections.abc import Iterable, Mapping
from typing import Any

from sf_pipeline.anomalies.errors import AnomalySettingsError
from sf_pipeline.anomalies.registry import DEFAULT_THRESHOLDS, DETECTORS_BY_NAME, FIELD_DETECTORS
from sf_pipeline.anomalies.thresholds import (
    AUDIT_COLUMNS,
    SEVERITIES,
    SKIPPED_COLUMNS,
    AnomalyThresholds,
    MassChangeThresholds,
    OrphanThresholds,
    Severity,
    UserShareThresholds,
    VolumeThresholds,
    is_skipped_column,
)

__all__ = [
    "AUDIT_COLUMNS",
    "DEFAULT_THRESHOLDS",
    "FIELD_DETECTORS",
    "SEVERITIES",
    "SKIPPED_COLUMNS",
    "AnomalyThresholds",
    "MassChangeThresholds",
    "OrphanThresholds",
    "Severity",
    "UserShareThresholds",
    "VolumeThresholds",
    "is_skipped_column",
    "overrides_from_settings",
    "resolve_settings",
    "thresholds_for",
]


def _coerce(where: str, name: str, value: Any, default: Any, annotation: str) -> Any:
    """Check one settings value against the type of the threshold it overrides."""
    if "Severity" in annotation:
        if value not in SEVERITIES:
            raise AnomalySettingsError(f"{where}.{name}: severity must be 'error' or 'warning', got {value!r}")
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
            raise AnomalySettingsError(f"{where}.{name}: a share is between 0 and 1 (0.2 = 20%), got {value!r}")
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


def _merge_level(base: AnomalyThresholds, where: str, level: Any, allow: tuple[str, ...]) -> AnomalyThresholds:
    """Apply one level of settings (defaults, an object, a field) over `base`."""
    if level is None:
        return base
    if not isinstance(level, Mapping):
        raise AnomalySettingsError(f"{where}: expected a mapping, got {level!r}")
    changes: dict[str, Any] = {}
    detectors = dict(base.detectors)
    for key, values in level.items():
        if key in ("fields", "objects"):
            continue  # handled by the caller
        if key == "skip_fields":
            if isinstance(values, str) or not isinstance(values, list | tuple):
                raise AnomalySettingsError(f"{where}.skip_fields: expected a list of field names, got {values!r}")
            changes["skip_fields"] = tuple(sorted({*base.skip_fields, *(str(v).lower() for v in values)}))
            continue
        if key not in allow:
            raise AnomalySettingsError(
                f"{where}: unknown detector {key!r}; known here: {', '.join((*allow, 'skip_fields'))}"
            )
        detectors[key] = _apply(base.of(key), f"{where}.{key}", values)
    return dataclasses.replace(base, detectors=detectors, **changes)


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
        raise AnomalySettingsError(f"anomalies: expected a mapping with 'defaults' and 'objects', got {overrides!r}")
    unknown = set(overrides) - {"defaults", "objects"}
    if unknown:
        raise AnomalySettingsError(
            f"anomalies: unknown key(s) {sorted(unknown)}; use 'defaults' (every object) and 'objects' (per object)"
        )
    detectors = tuple(DETECTORS_BY_NAME)
    resolved = _merge_level(DEFAULT_THRESHOLDS, "anomalies.defaults", overrides.get("defaults"), detectors)
    objects = overrides.get("objects") or {}
    if not isinstance(objects, Mapping):
        raise AnomalySettingsError(f"anomalies.objects: expected a mapping of object -> settings, got {objects!r}")
    object_level = _lookup(objects, object_name)
    where = f"anomalies.objects.{object_name}"
    resolved = _merge_level(resolved, where, object_level, detectors)
    field_levels = (object_level or {}).get("fields") or {}
    if not isinstance(field_levels, Mapping):
        raise AnomalySettingsError(f"{where}.fields: expected a mapping of field -> settings, got {field_levels!r}")

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


def resolve_settings(
    anomalies: Mapping[str, Any] | None,
    per_object: Mapping[str, Mapping[str, Any]] | None,
    object_names: Iterable[str],
) -> dict[str, AnomalyThresholds]:
    """The resolved thresholds of every backed-up object, checking the whole `anomalies` block on the way (objects
    it names that are not backed up too). The code location calls it when it loads, so a misspelt detector or a
    threshold that is not a number fails `dagster definitions validate` and the deploy, naming the key, instead
    of the first check after a backup. Raises `AnomalySettingsError` listing every bad key, one a line."""
    overrides = overrides_from_settings(anomalies, per_object)
    if isinstance(anomalies, Mapping) and set(anomalies) - {"defaults", "objects"}:
        thresholds_for("", overrides=anomalies)  # raises: names the unknown keys
    problems: list[str] = []

    def check(object_name: str, level: Mapping[str, Any]) -> None:
        try:
            thresholds_for(object_name, overrides=level)
        except AnomalySettingsError as exc:
            if str(exc) not in problems:
                problems.append(str(exc))

    # the defaults alone, then each object alone: a bad default does not hide a bad object setting
    check("", {"defaults": overrides["defaults"]})
    for name in overrides["objects"]:
        check(str(name), {"objects": overrides["objects"]})
    if problems:
        raise AnomalySettingsError("\n".join(problems))
    return {name: thresholds_for(name, overrides=overrides) for name in object_names}
