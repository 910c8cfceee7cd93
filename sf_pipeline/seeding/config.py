"""The `seed_sandbox` job's config (launchpad contract) as a validated dataclass."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sf_pipeline.salesforce.values import format_datetime, id18
from sf_pipeline.seeding.errors import SeedConfigError


@dataclass(frozen=True)
class SeedConfig:
    """What to copy from the backup of `source_org`, as it was at `as_of`, into `target_org`.

    Select records by `objects` (every record of each object), `record_ids` (any objects, told apart by
    key prefix) and/or an `incident` (the records it found damaged); `include_parents` adds, recursively,
    every record they reference in a backed-up object, so lookups resolve in the sandbox.
    """

    as_of: datetime
    objects: tuple[str, ...] = ()
    record_ids: tuple[str, ...] = ()
    incident: int | None = None
    include_parents: bool = True
    source_org: str = "production"
    target_org: str = "sandbox"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, orgs: Sequence[str] | None = None) -> SeedConfig:
        if not isinstance(data, Mapping):
            raise SeedConfigError(f"the seed config must be a mapping, not {type(data).__name__}")
        allowed = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise SeedConfigError(f"unknown seed config key(s) {', '.join(unknown)}; the keys are: "
                                  f"{', '.join(sorted(allowed))}")
        source = data.get("source_org", "production")
        target = data.get("target_org", "sandbox")
        for name, alias in (("source_org", source), ("target_org", target)):
            if not isinstance(alias, str) or not alias:
                raise SeedConfigError(f"{name} must be an org alias, e.g. sandbox")
            if orgs is not None and alias not in orgs:
                raise SeedConfigError(f"unknown org alias {alias!r} for {name}: the configured orgs are "
                                      f"{', '.join(orgs)}")
        if source == target:
            raise SeedConfigError(f"target_org is the source org {source!r}: seeding copies records into another "
                                  "org (a sandbox); it never writes to the org it copies from")
        if data.get("as_of") is None:
            raise SeedConfigError("as_of is required: the instant whose state to copy, e.g. '2026-11-24T02:30:00Z' "
                                  "(after the damage, to reproduce it in the sandbox)")
        objects = data.get("objects") or ()
        if isinstance(objects, str) or not isinstance(objects, Sequence):
            raise SeedConfigError(f"objects must be a list of object API names, e.g. [Account, Opportunity], "
                                  f"not {objects!r}")
        ids = data.get("record_ids") or ()
        if isinstance(ids, str) or not isinstance(ids, Sequence):
            raise SeedConfigError(f"record_ids must be a list of record ids, not {ids!r}")
        try:
            record_ids = tuple(dict.fromkeys(id18(v) for v in ids))
        except ValueError as exc:
            raise SeedConfigError(f"record_ids: {exc}") from None
        incident = data.get("incident")
        if incident is not None and (isinstance(incident, bool) or not isinstance(incident, int) or incident < 1):
            raise SeedConfigError(f"incident must be the id of an incident (as `sf-pipeline incidents` lists it), "
                                  f"not {incident!r}")
        if not objects and not record_ids and incident is None:
            raise SeedConfigError("nothing selected: give objects (copy all their records), record_ids, or an "
                                  "incident (copy the records it found damaged)")
        include = data.get("include_parents", True)
        if not isinstance(include, bool):
            raise SeedConfigError(f"include_parents must be true or false, not {include!r}")
        return cls(as_of=_instant(data["as_of"]), objects=tuple(dict.fromkeys(str(o) for o in objects)),
                   record_ids=record_ids, incident=incident, include_parents=include, source_org=source,
                   target_org=target)

    def to_dict(self) -> dict[str, Any]:
        return {"as_of": format_datetime(self.as_of), "objects": list(self.objects),
                "record_ids": list(self.record_ids), "incident": self.incident,
                "include_parents": self.include_parents, "source_org": self.source_org,
                "target_org": self.target_org}


def _instant(value: Any) -> datetime:
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            raise SeedConfigError(f"as_of {value!r} is not an ISO instant, e.g. '2026-11-24T02:30:00Z'") from None
    if moment.tzinfo is None:
        raise SeedConfigError(f"as_of {value!r} needs a time zone, e.g. '2026-11-24T02:30:00Z'")
    return moment.astimezone(UTC)
