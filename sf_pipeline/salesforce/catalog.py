"""Which objects of an org can be backed up, and how: decided from the describe, never from the name.

`plan_object` is a plain decision over one describe-global entry and (when needed) the object's describe;
`discover` asks the org (one describe global, then one describe per candidate object) and returns a
`Catalog`, the state the Dagster definitions are built from (`sf_pipeline.backup.component`). A catalog is
plain JSON, so it can be stored, diffed and read back without calling Salesforce.

Strategies (README "Every object"):
- `incremental`: the object has `SystemModstamp`; each window reads the records stamped in it (queryAll).
- `append_only`: no `SystemModstamp`, but `CreatedDate` and no way to change a row (`updateable` false,
  no `LastModifiedDate`): history objects. Each window reads the rows created in it; a row never changes.
- `full_read`: no timestamp at all: each window reads every record and compares it with the mirror; a
  changed row becomes a new version, a row the org no longer has a closing one.
Bulk API 2.0 is used for large windows unless the describe shows it cannot be (base64 fields: "Bulk API
2.0 ... doesn't support ... base64 fields", Bulk API 2.0 Developer Guide, "Bulk API 2.0 Query Limitations");
an object Bulk refuses at run time (INVALIDENTITY, not told by the describe) is read through REST instead.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from .errors import CatalogError

CATALOG_VERSION = 1


class Strategy(StrEnum):
    INCREMENTAL = "incremental"
    APPEND_ONLY = "append_only"
    FULL_READ = "full_read"


class ReadApi(StrEnum):
    BULK_OR_REST = "bulk_or_rest"  # REST for small windows, Bulk API 2.0 above the threshold
    REST = "rest"


# The stamp a strategy reads windows on (None: every window reads everything).
STAMP_FIELD = {Strategy.INCREMENTAL: "SystemModstamp", Strategy.APPEND_ONLY: "CreatedDate", Strategy.FULL_READ: None}

# Describe field attributes the backup uses (types, lengths for DDL; calculated for the detectors).
FIELD_KEYS = (
    "name",
    "type",
    "length",
    "precision",
    "scale",
    "digits",
    "calculated",
    "nillable",
    "soapType",
    "referenceTo",
    "relationshipName",
    "createable",
    "updateable",
    "externalId",
    "unique",
    "autoNumber",
    "defaultedOnCreate",
    "idLookup",
    "compoundFieldName",
    "label",
)


@dataclass(frozen=True)
class ObjectPlan:
    """One object the backup takes: its strategy, how it is read, and the describe fields it has."""

    name: str
    strategy: Strategy
    read_api: ReadApi
    fields: tuple[dict[str, Any], ...]
    reason: str  # why this strategy, in the user's words
    custom: bool = False
    records: int | None = None  # the org's COUNT() when the catalog was fetched (None: not known)

    @property
    def stamp_field(self) -> str | None:
        return STAMP_FIELD[self.strategy]

    @property
    def field_count(self) -> int:
        return len(self.fields)


@dataclass(frozen=True)
class SkippedObject:
    name: str
    reason: str


@dataclass
class Catalog:
    """An org's objects as the backup sees them: the plan of each object backed up, and each skipped one."""

    org: str
    fetched_at: str
    objects: list[ObjectPlan] = field(default_factory=list)
    skipped: list[SkippedObject] = field(default_factory=list)
    api_calls: int = 0

    def plan(self, name: str) -> ObjectPlan | None:
        for obj in self.objects:
            if obj.name.lower() == name.lower():
                return obj
        return None

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": CATALOG_VERSION,
                "org": self.org,
                "fetched_at": self.fetched_at,
                "api_calls": self.api_calls,
                "objects": [{**asdict(o), "fields": list(o.fields)} for o in self.objects],
                "skipped": [asdict(s) for s in self.skipped],
            },
            indent=1,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str, source: str = "catalog") -> Catalog:
        try:
            data = json.loads(text)
            if data.get("version") != CATALOG_VERSION:
                raise CatalogError(
                    f"{source}: catalog version {data.get('version')!r}, expected {CATALOG_VERSION}; "
                    "refresh it (sf-pipeline objects --refresh, or dg utils refresh-defs-state)"
                )
            return cls(
                org=data["org"],
                fetched_at=data["fetched_at"],
                api_calls=int(data.get("api_calls", 0)),
                objects=[
                    ObjectPlan(
                        o["name"],
                        Strategy(o["strategy"]),
                        ReadApi(o["read_api"]),
                        tuple(o["fields"]),
                        o["reason"],
                        bool(o.get("custom")),
                        o.get("records"),
                    )
                    for o in data["objects"]
                ],
                skipped=[SkippedObject(s["name"], s["reason"]) for s in data["skipped"]],
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, CatalogError):
                raise
            raise CatalogError(
                f"{source} is not a readable sf-pipeline catalog ({exc}); refresh it "
                "(sf-pipeline objects --refresh, or dg utils refresh-defs-state)"
            ) from None


def matches(name: str, patterns: Iterable[str]) -> str | None:
    """The first glob pattern (case-sensitive, as API names are spelt) `name` matches, else None."""
    for pattern in patterns:
        if fnmatch.fnmatchcase(name, pattern):
            return pattern
    return None


def is_candidate(entry: Mapping[str, Any]) -> str | None:
    """Why an object of the describe global cannot be backed up at all (None: describe it and decide).

    Queryable and replicateable, or queryable and a history object (`associateEntityType: History`, rows
    written by field history tracking, read on CreatedDate)."""
    if not entry.get("queryable"):
        return "not queryable (describe global: queryable false)"
    if not entry.get("retrieveable", True):
        return "records cannot be retrieved (describe global: retrieveable false)"
    if not entry.get("replicateable") and entry.get("associateEntityType") != "History":
        return "not replicateable (describe global: replicateable false)"
    return None


def plan_object(entry: Mapping[str, Any], describe: Mapping[str, Any]) -> ObjectPlan | SkippedObject:
    """The strategy an object's capabilities allow. `entry` is its describe-global entry, `describe` its describe."""
    name = entry["name"]
    why_not = is_candidate(entry)
    if why_not:
        return SkippedObject(name, why_not)
    fields = [{k: f[k] for k in FIELD_KEYS if k in f} for f in describe.get("fields", [])]
    names = {f["name"] for f in fields}
    if "Id" not in names:
        return SkippedObject(name, "no Id field: records cannot be told apart")
    blobs = [f["name"] for f in fields if f.get("type") == "base64"]
    read_api = ReadApi.REST if blobs else ReadApi.BULK_OR_REST
    via = f"; REST only (Bulk API 2.0 cannot read base64 field {blobs[0]})" if blobs else ""
    custom = bool(entry.get("custom"))
    if "SystemModstamp" in names:
        return ObjectPlan(
            name,
            Strategy.INCREMENTAL,
            read_api,
            tuple(fields),
            "SystemModstamp: each window reads the records changed in it" + via,
            custom,
        )
    updateable = bool(entry.get("updateable")) or any(f.get("updateable") for f in fields)
    if "CreatedDate" in names and "LastModifiedDate" not in names and not updateable:
        return ObjectPlan(
            name,
            Strategy.APPEND_ONLY,
            read_api,
            tuple(fields),
            "append-only (CreatedDate, no SystemModstamp, nothing updateable): each window reads the "
            "rows created in it" + via,
            custom,
        )
    if not entry.get("replicateable"):
        return SkippedObject(name, "a history object (describe global) whose rows can change: no way to read them")
    if "CreatedDate" in names or "LastModifiedDate" in names:
        detail = "no SystemModstamp"
    else:
        detail = "no timestamp field"
    return ObjectPlan(
        name,
        Strategy.FULL_READ,
        read_api,
        tuple(fields),
        f"{detail}: each window reads every record and compares it with the mirror" + via,
        custom,
    )


def select(
    entries: Sequence[Mapping[str, Any]],
    *,
    explicit: Sequence[str] | None,
    include: Sequence[str],
    exclude: Sequence[str],
) -> tuple[list[Mapping[str, Any]], list[SkippedObject]]:
    """The describe-global entries worth a describe, and those skipped already (patterns, capabilities).

    `explicit` (an object list from the settings file) takes exactly those objects; otherwise `include`
    (default every object) minus `exclude`.
    """
    by_name = {e["name"].lower(): e for e in entries}
    if explicit is not None:
        unknown = [n for n in explicit if n.lower() not in by_name]
        if unknown:
            raise CatalogError(
                f"objects {unknown} are configured for backup but the org's describe global does not "
                "list them (misspelt, or not visible to the integration user)"
            )
        return [by_name[n.lower()] for n in explicit], []
    chosen, skipped = [], []
    for entry in sorted(entries, key=lambda e: e["name"]):
        name = entry["name"]
        if include and not matches(name, include):
            skipped.append(SkippedObject(name, f"not matched by backup.include {list(include)}"))
            continue
        pattern = matches(name, exclude)
        if pattern:
            skipped.append(SkippedObject(name, f"excluded by backup.exclude pattern {pattern!r}"))
            continue
        why_not = is_candidate(entry)
        if why_not:
            skipped.append(SkippedObject(name, why_not))
            continue
        chosen.append(entry)
    return chosen, skipped


def discover(
    client: Any,
    org: str,
    *,
    explicit: Sequence[str] | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> Catalog:
    """Ask the org for its describe global and the describe of each candidate object; return the catalog."""
    calls_before = client.api_calls
    entries = client.describe_global()["sobjects"]
    chosen, skipped = select(entries, explicit=explicit, include=include, exclude=exclude)
    catalog = Catalog(org, datetime.now(UTC).isoformat(timespec="seconds"), skipped=skipped)
    for entry in chosen:
        plan = plan_object(entry, client.describe(entry["name"]))
        if isinstance(plan, SkippedObject):
            if explicit is not None:
                raise CatalogError(f"{plan.name} is configured for backup but cannot be backed up: {plan.reason}")
            catalog.skipped.append(plan)
        else:
            catalog.objects.append(plan)
    catalog.skipped.sort(key=lambda s: s.name)
    catalog.objects = record_counts(client, catalog.objects)
    catalog.api_calls = client.api_calls - calls_before
    return catalog


def record_counts(client: Any, plans: Sequence[ObjectPlan]) -> list[ObjectPlan]:
    """The plans with each object's `SELECT COUNT()` (Composite Batch, 25 per HTTP request): how large an object
    is decides whether its windows share one step with the other small objects (backup/definitions.py). An
    object the org refuses to count (some objects require a filter) keeps `records` None: its own step."""
    from dataclasses import replace

    from sf_pipeline.salesforce import soql as soql_names

    subrequests = [
        {
            "method": "GET",
            "url": client.batch_url("query", {"q": f"SELECT COUNT() FROM {soql_names.api_name(p.name, 'object')}"}),
        }
        for p in plans
    ]
    results = client.composite_batch(subrequests) if subrequests else []
    out = []
    for plan, result in zip(plans, results, strict=True):
        ok = result.get("statusCode", 500) < 400 and isinstance(result.get("result"), dict)
        out.append(replace(plan, records=int(result["result"]["totalSize"]) if ok else None))
    return out
