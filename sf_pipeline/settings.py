"""The settings file (`sf_pipeline.yaml`, or the path in SF_PIPELINE_SETTINGS): orgs, objects, windows.

Secrets are never here: org credentials come from `SALESFORCE_<ALIAS>_*` and the backup database
from `SF_PIPELINE_DATABASE_URL`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from dataclasses import replace as dataclass_replace
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from sf_pipeline.blobs.errors import BlobSettingsError
from sf_pipeline.blobs.settings import BlobSettings, blob_settings

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SETTINGS = REPO_ROOT / "sf_pipeline.yaml"


class SettingsError(ValueError):
    """The settings file is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class ObjectSettings:
    name: str
    exclude: tuple[str, ...] = ()
    anomalies: dict[str, Any] = field(default_factory=dict)
    plan: Any = None  # the object's sf_pipeline.salesforce.catalog.ObjectPlan, once a catalog is known


ALL_OBJECTS = "all"


@dataclass(frozen=True)
class BackupOrgSettings:
    """One backed-up org: its objects (a list, or every object the describe allows: `objects: all`).

    With `all`, `include`/`exclude` are glob patterns on API names and `per_object` keeps the settings of
    named objects (field excludes, anomaly settings); `objects` is filled from the org's catalog
    (`resolve_objects`).
    """

    alias: str
    objects: tuple[ObjectSettings, ...] = ()
    all_objects: bool = False
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    per_object: tuple[ObjectSettings, ...] = ()
    primary: bool = True  # the first org keeps today's asset keys (salesforce/<Object>, history/<Object>)

    @property
    def key_prefix(self) -> tuple[str, ...]:
        return () if self.primary else (self.alias,)

    @property
    def resolved(self) -> bool:
        return not self.all_objects or bool(self.objects)

    def settings_for(self, name: str) -> ObjectSettings:
        for obj in self.per_object:
            if obj.name.lower() == name.lower():
                return obj
        return ObjectSettings(name)


@dataclass(frozen=True)
class SalesforceSettings:
    """How the pipeline talks to every org: API version, HTTP timeouts, retry backoff (the `salesforce:` section).

    Like everything here it comes from the settings file only: run config cannot change it.
    """

    api_version: str = "59.0"
    connect_timeout_seconds: float = 10.0  # to open a connection to the org
    read_timeout_seconds: float = 120.0  # between bytes of an answer: a call that hangs longer is retried
    retry_backoff_seconds: float = 0.5  # before the first retry of a transient failure; doubles each time


@dataclass(frozen=True)
class Settings:
    path: Path
    orgs: tuple[str, ...]
    backup_org: str  # the primary backed-up org (the first of backup.orgs), the one the other stages work on
    objects: tuple[ObjectSettings, ...]  # the primary org's objects (empty until resolved with `objects: all`)
    window_cron: str = "0 * * * *"
    start: datetime = datetime(2026, 1, 1)
    timezone: str = "UTC"
    schedule_lag_minutes: int = 10
    max_windows_per_tick: int = 48  # missed windows the schedule requests per minute (backup.max_windows_per_tick)
    retry_max_minutes: int = 60  # longest backoff before a failed window is retried (backup.retry_max_minutes)
    budget_share: float = 0.5
    bulk_threshold: int = 20_000
    bulk_slice_records: int = 250_000
    # backup.shared_step_below_records: objects with fewer records (the catalog's COUNT()) share one step per window
    shared_step_below_records: int = 10_000
    anomalies: dict[str, Any] = field(default_factory=dict)
    dagster_base_url: str | None = None  # alerts: dagster_base_url: where alerts link to the Dagster UI
    salesforce: SalesforceSettings = SalesforceSettings()
    # backup: reconcile: {every_window_below: N, large_every_hours: H} (README, "Vanished records")
    reconcile_every_window_below: int = 200_000
    reconcile_large_every_hours: float = 24.0
    privacy: dict[str, Any] = field(default_factory=dict)  # masking: and retention: (parsed by sf_pipeline.privacy)
    backups: tuple[BackupOrgSettings, ...] = ()  # every backed-up org, the primary first
    blobs: BlobSettings = BlobSettings()  # blobs: where file bodies are stored (sf_pipeline.blobs, README "Files")

    def blob_store(self):  # noqa: ANN201 - LocalBlobStore | S3BlobStore
        """The store of file bodies the `blobs:` block describes (a local path is relative to this file)."""
        from sf_pipeline.blobs.store import blob_store_from_settings

        return blob_store_from_settings(self.blobs, self.path.parent)

    def object(self, name: str) -> ObjectSettings:
        for obj in self.objects:
            if obj.name.lower() == name.lower():
                return obj
        raise SettingsError(f"object {name!r} is not configured for backup in {self.path}; configured: "
                            f"{', '.join(o.name for o in self.objects)}")


def settings_path() -> Path:
    return Path(os.environ.get("SF_PIPELINE_SETTINGS") or DEFAULT_SETTINGS)


def load_settings(path: str | Path | None = None) -> Settings:
    path = Path(path) if path else settings_path()
    if not path.exists():
        raise SettingsError(f"settings file {path} does not exist (set SF_PIPELINE_SETTINGS to its path)")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SettingsError(f"settings file {path} is not valid YAML: {exc}") from None
    orgs = data.get("orgs") or {"production": {}}
    if not isinstance(orgs, dict):
        raise SettingsError(f"{path}: 'orgs' must be a mapping of alias -> options")
    backup = data.get("backup") or {}
    backups = _backup_orgs(path, backup, orgs)
    backup_org, objects = backups[0].alias, backups[0].objects
    part = backup.get("partitions") or {}
    start = part.get("start", "2026-01-01T00:00:00")
    try:
        start_dt = start if isinstance(start, datetime) else datetime.fromisoformat(str(start).replace("Z", "+00:00"))
    except ValueError:
        raise SettingsError(f"{path}: backup.partitions.start {start!r} is not an ISO datetime") from None
    budget = (backup.get("api_budget") or {}).get("max_share_of_daily_limit", 0.5)
    if not 0 < float(budget) <= 1:
        raise SettingsError(f"{path}: api_budget.max_share_of_daily_limit must be in (0, 1], got {budget}")
    return Settings(
        path=path, orgs=tuple(orgs), backup_org=backup_org, objects=tuple(objects),
        window_cron=part.get("cron", "0 * * * *"), start=start_dt.replace(tzinfo=None),
        timezone=part.get("timezone", "UTC"), schedule_lag_minutes=int(backup.get("schedule_lag_minutes", 10)),
        budget_share=float(budget), bulk_threshold=int(backup.get("bulk_threshold", 20_000)),
        bulk_slice_records=_positive(path, backup, "bulk_slice_records", 250_000),
        shared_step_below_records=_non_negative(path, backup, "shared_step_below_records", 10_000),
        max_windows_per_tick=_positive(path, backup, "max_windows_per_tick", 48),
        retry_max_minutes=_positive(path, backup, "retry_max_minutes", 60),
        anomalies=dict(data.get("anomalies") or {}),
        dagster_base_url=_dagster_base_url(path, data.get("alerts") or {}),
        salesforce=_salesforce_settings(path, data.get("salesforce") or {}),
        **_reconcile(path, backup.get("reconcile")),
        privacy={k: data[k] for k in ("masking", "retention", "forget") if data.get(k) is not None},
        backups=backups,
        blobs=_blobs(path, data.get("blobs")),
    )


_ORG_KEYS = {"objects", "include", "exclude", "per_object"}


def _object_list(path: Path, where: str, items: Any) -> tuple[ObjectSettings, ...]:
    if not isinstance(items, list):
        raise SettingsError(f"{path}: {where} must be a list of objects or `all`, got {items!r}")
    objects = []
    for item in items:
        if isinstance(item, str):
            objects.append(ObjectSettings(item))
        elif isinstance(item, dict) and "name" in item:
            objects.append(ObjectSettings(item["name"], tuple(item.get("exclude") or ()),
                                          dict(item.get("anomalies") or {})))
        else:
            raise SettingsError(f"{path}: each backup object is a name or {{name, exclude}}; got {item!r}")
    return tuple(objects)


def _patterns(path: Path, where: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise SettingsError(f"{path}: {where} must be a list of glob patterns such as [\"*Share\", \"*Feed\"], "
                            f"got {value!r}")
    return tuple(value)


def _backup_org(path: Path, where: str, alias: str, section: dict[str, Any], primary: bool) -> BackupOrgSettings:
    objects = section.get("objects")
    include = _patterns(path, f"{where}.include", section.get("include"))
    exclude = _patterns(path, f"{where}.exclude", section.get("exclude"))
    per_object = _object_list(path, f"{where}.per_object", section.get("per_object") or [])
    if objects == ALL_OBJECTS:
        return BackupOrgSettings(alias, (), True, include, exclude, per_object, primary)
    if include or exclude or per_object:
        raise SettingsError(f"{path}: {where}.include, exclude and per_object go with `objects: all`; with an "
                            "object list, give each object's settings in the list itself")
    listed = _object_list(path, f"{where}.objects", objects or [])
    if not listed:
        raise SettingsError(f"{path}: {where}.objects lists no object to back up (a list of objects, or `all`)")
    return BackupOrgSettings(alias, listed, False, primary=primary)


def _backup_orgs(path: Path, backup: dict[str, Any], orgs: dict[str, Any]) -> tuple[BackupOrgSettings, ...]:
    """`backup: org: A` with `objects:` (one org), or `backup: orgs: {A: {objects: ...}, B: {...}}` (several)."""
    if "orgs" in backup:
        if "org" in backup or _ORG_KEYS & set(backup):
            raise SettingsError(f"{path}: backup.orgs names each org with its own objects; do not also give "
                                f"backup.org or backup.{'/'.join(sorted(_ORG_KEYS & set(backup)) or ['org'])}")
        named = backup["orgs"]
        if not isinstance(named, dict) or not named:
            raise SettingsError(f"{path}: backup.orgs must map each backed-up org alias to its objects, "
                                "e.g. {production: {objects: all}, emea: {objects: [Account]}}")
        out = []
        for i, (alias, section) in enumerate(named.items()):
            if alias not in orgs:
                raise SettingsError(f"{path}: backup.orgs names {alias!r}, which is not one of the orgs {sorted(orgs)}")
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", str(alias)):
                raise SettingsError(f"{path}: org alias {alias!r} must be letters, digits and _ (it names assets)")
            if not isinstance(section, dict) or set(section) - _ORG_KEYS:
                raise SettingsError(f"{path}: backup.orgs.{alias} takes {sorted(_ORG_KEYS)}, got {section!r}")
            out.append(_backup_org(path, f"backup.orgs.{alias}", alias, section, primary=i == 0))
        return tuple(out)
    backup_org = backup.get("org", "production")
    if backup_org not in orgs:
        raise SettingsError(f"{path}: backup.org {backup_org!r} is not one of the orgs {sorted(orgs)}")
    return (_backup_org(path, "backup", backup_org, backup, primary=True),)


def resolve_objects(settings: Settings, plans: dict[str, list[Any]]) -> Settings:
    """Settings whose backed-up orgs list their objects, each with its plan: `plans` maps an org alias to the
    ObjectPlans of its catalog. An org with `objects: all` takes every planned object (with its per_object
    settings); an object list keeps its order and settings and gains the plans the catalog has."""
    resolved = []
    for org in settings.backups:
        by_name = {p.name.lower(): p for p in plans.get(org.alias, [])}
        if org.all_objects:
            if org.alias not in plans:
                raise SettingsError(f"{settings.path}: org {org.alias!r} backs up `objects: all` but its catalog "
                                    "is not known yet (sf-pipeline objects --refresh)")
            objects = tuple(dataclass_replace(org.settings_for(p.name), name=p.name, plan=p)
                            for p in plans[org.alias])
        else:
            objects = tuple(dataclass_replace(o, plan=by_name.get(o.name.lower())) for o in org.objects)
        resolved.append(dataclass_replace(org, objects=objects))
    return dataclass_replace(settings, backups=tuple(resolved), objects=resolved[0].objects)


def _blobs(path: Path, section: Any) -> BlobSettings:
    try:
        return blob_settings(section, where=str(path))
    except BlobSettingsError as exc:
        raise SettingsError(str(exc)) from None


def _salesforce_settings(path: Path, section: Any) -> SalesforceSettings:
    if not isinstance(section, dict):
        raise SettingsError(f"{path}: 'salesforce' must be a mapping, e.g. {{read_timeout_seconds: 120}}")
    known = {f for f in SalesforceSettings.__dataclass_fields__}
    unknown = sorted(set(section) - known)
    if unknown:
        raise SettingsError(f"{path}: unknown salesforce settings {unknown}; known: {sorted(known)}")
    values: dict[str, Any] = {}
    for key, value in section.items():
        if key == "api_version":
            if not re.fullmatch(r"\d{2,3}\.0", str(value)):
                raise SettingsError(f"{path}: salesforce.api_version must look like \"59.0\", got {value!r}")
            values[key] = str(value)
        elif isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
            raise SettingsError(f"{path}: salesforce.{key} must be a number of seconds in (0, 3600], got {value!r}")
        else:
            values[key] = float(value)
    return SalesforceSettings(**values)


def _reconcile(path: Path, section: Any) -> dict[str, Any]:
    """`backup: reconcile:`: how often the id reconciliation runs (small objects every window, large on a timer)."""
    if section is None:
        return {}
    if not isinstance(section, dict) or set(section) - {"every_window_below", "large_every_hours"}:
        raise SettingsError(f"{path}: backup.reconcile takes every_window_below (records) and large_every_hours, "
                            f"got {section!r}")
    out: dict[str, Any] = {}
    if "every_window_below" in section:
        out["reconcile_every_window_below"] = _positive(path, section, "every_window_below", 200_000)
    if "large_every_hours" in section:
        hours = section["large_every_hours"]
        if isinstance(hours, bool) or not isinstance(hours, (int, float)) or hours <= 0:
            raise SettingsError(f"{path}: backup.reconcile.large_every_hours must be a positive number of hours, "
                                f"got {hours!r}")
        out["reconcile_large_every_hours"] = float(hours)
    return out


def _positive(path: Path, section: dict[str, Any], key: str, default: int) -> int:
    value = section.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise SettingsError(f"{path}: backup.{key} must be a positive whole number, got {value!r}")
    return value


def _non_negative(path: Path, section: dict[str, Any], key: str, default: int) -> int:
    value = section.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise SettingsError(f"{path}: backup.{key} must be a whole number >= 0, got {value!r}")
    return value


def _dagster_base_url(path: Path, alerts: Any) -> str | None:
    """`alerts: dagster_base_url:`, the Dagster UI's address as people open it, for the links in alerts."""
    if not isinstance(alerts, dict):
        raise SettingsError(f"{path}: 'alerts' must be a mapping (dagster_base_url: ...), got {alerts!r}")
    url = alerts.get("dagster_base_url")
    if url is None:
        return None
    parts = urlsplit(str(url))
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise SettingsError(f"{path}: alerts.dagster_base_url must be the Dagster UI's http(s) address, such as "
                            f"https://dagster.example.com, got {url!r}")
    if parts.username or parts.password:
        raise SettingsError(f"{path}: alerts.dagster_base_url must not carry credentials (it is sent in every "
                            "alert)")
    return str(url).rstrip("/")
