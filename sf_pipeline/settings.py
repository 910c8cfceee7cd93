"""The settings file (`sf_pipeline.yaml`, or the path in SF_PIPELINE_SETTINGS): orgs, objects, windows.

One pydantic model, `Settings`: each value's place in the file, its default and its check are written once, on
its field; an error names the key and the problem.

Secrets are never here: org credentials come from `SALESFORCE_<ALIAS>_*` and the backup database
from `SF_PIPELINE_DATABASE_URL`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from dataclasses import replace as dataclass_replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AliasPath,
    BeforeValidator,
    ConfigDict,
    Field,
    SkipValidation,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from sf_pipeline.blobs.errors import BlobSettingsError
from sf_pipeline.blobs.settings import BlobSettings, blob_settings
from sf_pipeline.contract import Contract, problem
from sf_pipeline.instants import InstantError, parse_instant

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
class RestoreOrgSettings:
    """How restores write into one org (`orgs: <alias>: restore:`); like everything here, never set at launch.

    `run_as`: the username of a dedicated integration user every restore into this org logs in as (its
    credentials from `SALESFORCE_<ALIAS>_RESTORE_*`, see restore/run_as.py); None: the org's own credentials.
    `serial`: no Bulk API 2.0 jobs (processed in parallel), one sObject Collections call at a time
    (salesforce/writes.py), against lock storms when the org's automation works on shared parents.
    """

    run_as: str | None = None
    serial: bool = False


class SalesforceSettings(Contract):
    """How the pipeline talks to every org: API version, HTTP timeouts, retry backoff (the `salesforce:` section).

    Like everything here it comes from the settings file only: run config cannot change it.
    """

    api_version: str = "59.0"
    connect_timeout_seconds: float = 10.0  # to open a connection to the org
    read_timeout_seconds: float = 120.0  # between bytes of an answer: a call that hangs longer is retried
    retry_backoff_seconds: float = 0.5  # before the first retry of a transient failure; doubles each time

    @model_validator(mode="before")
    @classmethod
    def _known(cls, section: Any) -> Any:
        if not isinstance(section, dict):
            raise SettingsError("'salesforce' must be a mapping, e.g. {read_timeout_seconds: 120}")
        unknown = sorted(set(section) - set(cls.model_fields))
        if unknown:
            raise SettingsError(f"unknown salesforce settings {unknown}; known: {sorted(cls.model_fields)}")
        return section

    @field_validator("api_version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> str:
        if not re.fullmatch(r"\d{2,3}\.0", str(value)):
            raise SettingsError(f'salesforce.api_version must look like "59.0", got {value!r}')
        return str(value)

    @field_validator("connect_timeout_seconds", "read_timeout_seconds", "retry_backoff_seconds", mode="before")
    @classmethod
    def _seconds(cls, value: Any, info: ValidationInfo) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
            raise SettingsError(f"salesforce.{info.field_name} must be a number of seconds in (0, 3600], got {value!r}")
        return float(value)


def _positive(key: str) -> Any:
    """A positive whole number at `key` of the file (errors name it)."""

    def check(value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise SettingsError(f"{key} must be a positive whole number, got {value!r}")
        return value

    return BeforeValidator(check)


def _non_negative(key: str) -> Any:
    """A whole number >= 0 at `key` of the file (errors name it)."""

    def check(value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise SettingsError(f"{key} must be a whole number >= 0, got {value!r}")
        return value

    return BeforeValidator(check)


def _at(key: str) -> AliasPath:
    """Where a setting is in the file: `backup.partitions.cron` -> AliasPath("backup", "partitions", "cron")."""
    return AliasPath(*key.split("."))


class Settings(Contract):
    """The settings file as one model: each field says where it is in the file (`validation_alias`) and its
    default; `load_settings` reads the file into it. Sections with a shape of their own (the backed-up orgs and
    their objects, `blobs:`, the privacy sections) are read by their own readers when the model is built."""

    model_config = ConfigDict(frozen=True, extra="ignore", arbitrary_types_allowed=True)

    path: Path
    orgs: tuple[str, ...]
    backup_org: str  # the primary backed-up org (the first of backup.orgs), the one the other stages work on
    # the primary org's objects (empty until resolved with `objects: all`)
    objects: SkipValidation[tuple[ObjectSettings, ...]]
    window_cron: str = Field("0 * * * *", validation_alias=_at("backup.partitions.cron"))
    timezone: str = Field("UTC", validation_alias=_at("backup.partitions.timezone"))
    # the first window's start; without an offset it is in `timezone` (kept as the instant it names, in UTC)
    start: datetime = Field(
        "2026-01-01T00:00:00", validation_alias=_at("backup.partitions.start"), validate_default=True
    )
    schedule_lag_minutes: int = Field(10, validation_alias=_at("backup.schedule_lag_minutes"))
    # missed windows the schedule requests per minute
    max_windows_per_tick: Annotated[int, _positive("backup.max_windows_per_tick")] = Field(
        48, validation_alias=_at("backup.max_windows_per_tick")
    )
    # longest backoff before a failed window is retried
    retry_max_minutes: Annotated[int, _positive("backup.retry_max_minutes")] = Field(
        60, validation_alias=_at("backup.retry_max_minutes")
    )
    budget_share: float = Field(0.5, validation_alias=_at("backup.api_budget.max_share_of_daily_limit"))
    bulk_threshold: int = Field(20_000, validation_alias=_at("backup.bulk_threshold"))
    bulk_slice_records: Annotated[int, _positive("backup.bulk_slice_records")] = Field(
        250_000, validation_alias=_at("backup.bulk_slice_records")
    )
    # objects with fewer records (the catalog's COUNT()) share one step per window; 0: every object its own step
    shared_step_below_records: Annotated[int, _non_negative("backup.shared_step_below_records")] = Field(
        10_000, validation_alias=_at("backup.shared_step_below_records")
    )
    anomalies: dict[str, Any] = Field(default_factory=dict, validation_alias="anomalies")
    # alerts: dagster_base_url: where alerts link to the Dagster UI
    dagster_base_url: str | None = Field(None, validation_alias=_at("alerts.dagster_base_url"))
    salesforce: SalesforceSettings = Field(default_factory=SalesforceSettings, validation_alias="salesforce")
    # backup: reconcile: {every_window_below: N, large_every_hours: H} (README, "Vanished records")
    reconcile_every_window_below: Annotated[int, _positive("backup.reconcile.every_window_below")] = Field(
        200_000, validation_alias=_at("backup.reconcile.every_window_below")
    )
    reconcile_large_every_hours: float = Field(24.0, validation_alias=_at("backup.reconcile.large_every_hours"))
    privacy: dict[str, Any] = Field(default_factory=dict)  # masking: and retention: (parsed by sf_pipeline.privacy)
    backups: SkipValidation[tuple[BackupOrgSettings, ...]] = ()  # every backed-up org, the primary first
    # blobs: where file bodies are stored (sf_pipeline.blobs, README "Files")
    blobs: SkipValidation[BlobSettings] = BlobSettings()
    # orgs: <alias>: restore: how restores write into each org (restore/run_as.py, salesforce/writes.py)
    restore: SkipValidation[dict[str, RestoreOrgSettings]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _sections(cls, data: Any) -> Any:
        """The sections' shapes, and what their own readers make of the orgs, objects, blobs and privacy."""
        data = dict(data)
        orgs = data.get("orgs") or {"production": {}}
        if not isinstance(orgs, dict):
            raise SettingsError("'orgs' must be a mapping of alias -> options")
        for section in ("backup", "alerts", "anomalies"):
            if data.get(section) is None:
                data[section] = {}
            elif not isinstance(data[section], dict):
                raise SettingsError(f"'{section}' must be a mapping, got {data[section]!r}")
        backup = data["backup"] = dict(data["backup"])
        for section in ("partitions", "api_budget"):
            if backup.get(section) is None:
                backup.pop(section, None)
            elif not isinstance(backup[section], dict):
                raise SettingsError(f"backup.{section} must be a mapping, got {backup[section]!r}")
        reconcile = backup.get("reconcile")
        if reconcile is not None and (
            not isinstance(reconcile, dict) or set(reconcile) - {"every_window_below", "large_every_hours"}
        ):
            raise SettingsError(
                f"backup.reconcile takes every_window_below (records) and large_every_hours, got {reconcile!r}"
            )
        if data.get("salesforce") is None:
            data.pop("salesforce", None)
        backups = _backup_orgs(backup, orgs)
        try:
            blobs = blob_settings(data.get("blobs"), where=str(data.get("path", "settings file")))
        except BlobSettingsError as exc:
            raise SettingsError(str(exc).removeprefix(f"{data.get('path')}: ")) from None
        return {
            **data,
            "orgs": tuple(orgs),
            "backups": backups,
            "backup_org": backups[0].alias,
            "objects": backups[0].objects,
            "blobs": blobs,
            "restore": _restore_settings(orgs),
            "privacy": {k: data[k] for k in ("masking", "retention", "forget") if data.get(k) is not None},
        }

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise SettingsError(
                f"backup.partitions.timezone {value!r} is not a time zone name (e.g. UTC, Europe/Paris)"
            ) from None
        return value

    @field_validator("start", mode="before")
    @classmethod
    def _start(cls, value: Any, info: ValidationInfo) -> datetime:
        zone = ZoneInfo(info.data["timezone"]) if "timezone" in info.data else UTC
        try:
            return parse_instant(value, "backup.partitions.start", naive_in=zone)
        except InstantError as exc:
            raise SettingsError(str(exc)) from None

    @field_validator("budget_share", mode="before")
    @classmethod
    def _budget(cls, value: Any) -> float:
        try:
            share = float(value)
        except (TypeError, ValueError):
            share = -1.0
        if not 0 < share <= 1:
            raise SettingsError(f"api_budget.max_share_of_daily_limit must be in (0, 1], got {value}")
        return share

    @field_validator("reconcile_large_every_hours", mode="before")
    @classmethod
    def _hours(cls, hours: Any) -> float:
        if isinstance(hours, bool) or not isinstance(hours, int | float) or hours <= 0:
            raise SettingsError(f"backup.reconcile.large_every_hours must be a positive number of hours, got {hours!r}")
        return float(hours)

    @field_validator("dagster_base_url", mode="before")
    @classmethod
    def _dagster_base_url(cls, url: Any) -> str | None:
        """`alerts: dagster_base_url:`, the Dagster UI's address as people open it, for the links in alerts."""
        if url is None:
            return None
        parts = urlsplit(str(url))
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise SettingsError(
                f"alerts.dagster_base_url must be the Dagster UI's http(s) address, such as "
                f"https://dagster.example.com, got {url!r}"
            )
        if parts.username or parts.password:
            raise SettingsError("alerts.dagster_base_url must not carry credentials (it is sent in every alert)")
        return str(url).rstrip("/")

    def blob_store(self):  # noqa: ANN201 - LocalBlobStore | S3BlobStore
        """The store of file bodies the `blobs:` block describes (a local path is relative to this file)."""
        from sf_pipeline.blobs.store import blob_store_from_settings

        return blob_store_from_settings(self.blobs, self.path.parent)

    def restore_settings(self, alias: str) -> RestoreOrgSettings:
        """How restores write into `alias` (defaults when its `restore:` block is absent)."""
        return self.restore.get(alias) or RestoreOrgSettings()

    def object(self, name: str) -> ObjectSettings:
        for obj in self.objects:
            if obj.name.lower() == name.lower():
                return obj
        raise SettingsError(
            f"object {name!r} is not configured for backup in {self.path}; configured: "
            f"{', '.join(o.name for o in self.objects)}"
        )


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
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: the settings file must be a mapping (orgs:, backup:, ...)")
    try:
        return Settings.model_validate({**data, "path": path})
    except ValidationError as exc:
        raise SettingsError(f"{path}: {problem(exc)}") from None


def _restore_settings(orgs: dict[str, Any]) -> dict[str, RestoreOrgSettings]:
    """`orgs: <alias>: restore: {run_as: <username>, serial: true}` per alias."""
    out = {}
    for alias, options in orgs.items():
        section = (options or {}).get("restore") if isinstance(options, dict) else None
        if section is None:
            continue
        if not isinstance(section, dict) or set(section) - {"run_as", "serial"}:
            raise SettingsError(
                f"orgs.{alias}.restore takes run_as (a username) and serial (true/false), got {section!r}"
            )
        run_as = section.get("run_as")
        if run_as is not None and (not isinstance(run_as, str) or "@" not in run_as):
            raise SettingsError(
                f"orgs.{alias}.restore.run_as must be a Salesforce username (user@example.com), got {run_as!r}"
            )
        if not isinstance(section.get("serial", False), bool):
            raise SettingsError(f"orgs.{alias}.restore.serial must be true or false")
        out[alias] = RestoreOrgSettings(run_as=run_as, serial=bool(section.get("serial", False)))
    return out


_ORG_KEYS = {"objects", "include", "exclude", "per_object"}


def _object_list(where: str, items: Any) -> tuple[ObjectSettings, ...]:
    if not isinstance(items, list):
        raise SettingsError(f"{where} must be a list of objects or `all`, got {items!r}")
    objects = []
    for item in items:
        if isinstance(item, str):
            objects.append(ObjectSettings(item))
        elif isinstance(item, dict) and "name" in item:
            objects.append(
                ObjectSettings(item["name"], tuple(item.get("exclude") or ()), dict(item.get("anomalies") or {}))
            )
        else:
            raise SettingsError(f"each backup object is a name or {{name, exclude}}; got {item!r}")
    return tuple(objects)


def _patterns(where: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise SettingsError(f'{where} must be a list of glob patterns such as ["*Share", "*Feed"], got {value!r}')
    return tuple(value)


def _backup_org(where: str, alias: str, section: dict[str, Any], primary: bool) -> BackupOrgSettings:
    objects = section.get("objects")
    include = _patterns(f"{where}.include", section.get("include"))
    exclude = _patterns(f"{where}.exclude", section.get("exclude"))
    per_object = _object_list(f"{where}.per_object", section.get("per_object") or [])
    if objects == ALL_OBJECTS:
        return BackupOrgSettings(alias, (), True, include, exclude, per_object, primary)
    if include or exclude or per_object:
        raise SettingsError(
            f"{where}.include, exclude and per_object go with `objects: all`; with an "
            "object list, give each object's settings in the list itself"
        )
    listed = _object_list(f"{where}.objects", objects or [])
    if not listed:
        raise SettingsError(f"{where}.objects lists no object to back up (a list of objects, or `all`)")
    return BackupOrgSettings(alias, listed, False, primary=primary)


def _backup_orgs(backup: dict[str, Any], orgs: dict[str, Any]) -> tuple[BackupOrgSettings, ...]:
    """`backup: org: A` with `objects:` (one org), or `backup: orgs: {A: {objects: ...}, B: {...}}` (several)."""
    if "orgs" in backup:
        if "org" in backup or _ORG_KEYS & set(backup):
            raise SettingsError(
                f"backup.orgs names each org with its own objects; do not also give "
                f"backup.org or backup.{'/'.join(sorted(_ORG_KEYS & set(backup)) or ['org'])}"
            )
        named = backup["orgs"]
        if not isinstance(named, dict) or not named:
            raise SettingsError(
                "backup.orgs must map each backed-up org alias to its objects, "
                "e.g. {production: {objects: all}, emea: {objects: [Account]}}"
            )
        out = []
        for i, (alias, section) in enumerate(named.items()):
            if alias not in orgs:
                raise SettingsError(f"backup.orgs names {alias!r}, which is not one of the orgs {sorted(orgs)}")
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", str(alias)):
                raise SettingsError(f"org alias {alias!r} must be letters, digits and _ (it names assets)")
            if not isinstance(section, dict) or set(section) - _ORG_KEYS:
                raise SettingsError(f"backup.orgs.{alias} takes {sorted(_ORG_KEYS)}, got {section!r}")
            out.append(_backup_org(f"backup.orgs.{alias}", alias, section, primary=i == 0))
        return tuple(out)
    backup_org = backup.get("org", "production")
    if backup_org not in orgs:
        raise SettingsError(f"backup.org {backup_org!r} is not one of the orgs {sorted(orgs)}")
    return (_backup_org("backup", backup_org, backup, primary=True),)


def resolve_objects(settings: Settings, plans: dict[str, list[Any]]) -> Settings:
    """Settings whose backed-up orgs list their objects, each with its plan: `plans` maps an org alias to the
    ObjectPlans of its catalog. An org with `objects: all` takes every planned object (with its per_object
    settings); an object list keeps its order and settings and gains the plans the catalog has."""
    resolved = []
    for org in settings.backups:
        by_name = {p.name.lower(): p for p in plans.get(org.alias, [])}
        if org.all_objects:
            if org.alias not in plans:
                raise SettingsError(
                    f"{settings.path}: org {org.alias!r} backs up `objects: all` but its catalog "
                    "is not known yet (sf-pipeline objects --refresh)"
                )
            objects = tuple(dataclass_replace(org.settings_for(p.name), name=p.name, plan=p) for p in plans[org.alias])
        else:
            objects = tuple(dataclass_replace(o, plan=by_name.get(o.name.lower())) for o in org.objects)
        resolved.append(dataclass_replace(org, objects=objects))
    return settings.model_copy(update={"backups": tuple(resolved), "objects": resolved[0].objects})
