"""The `seed_sandbox` job's config (launchpad contract) as one pydantic model: `SeedConfig`.

The launchpad's `SeedRunConfig` (seeding/dagster_job.py) is derived from this model's fields, so the two cannot
drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, ValidationError, ValidationInfo, model_validator

from sf_pipeline.contract import Contract, problem
from sf_pipeline.instants import InstantError, parse_instant
from sf_pipeline.salesforce.values import format_datetime, id18
from sf_pipeline.seeding.errors import SeedConfigError


def _instant(value: Any) -> datetime:
    try:
        return parse_instant(value if isinstance(value, datetime) else str(value), "as_of")
    except InstantError as exc:
        raise SeedConfigError(str(exc)) from None


def _objects(value: Any) -> tuple[str, ...]:
    value = value or ()
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise SeedConfigError(f"objects must be a list of object API names, e.g. [Account, Opportunity], not {value!r}")
    return tuple(dict.fromkeys(str(o) for o in value))


def _ids(value: Any) -> tuple[str, ...]:
    value = value or ()
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise SeedConfigError(f"record_ids must be a list of record ids, not {value!r}")
    try:
        return tuple(dict.fromkeys(id18(v) for v in value))
    except ValueError as exc:
        raise SeedConfigError(f"record_ids: {exc}") from None


def _incident(value: Any) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise SeedConfigError(
            f"incident must be the id of an incident (as `sf-pipeline incidents` lists it), not {value!r}"
        )
    return value


def _flag(value: Any, info: ValidationInfo) -> bool:
    if not isinstance(value, bool):
        raise SeedConfigError(f"{info.field_name} must be true or false, not {value!r}")
    return value


def _alias(value: Any, info: ValidationInfo) -> str:
    if not isinstance(value, str) or not value:
        raise SeedConfigError(f"{info.field_name} must be an org alias, e.g. sandbox")
    orgs = (info.context or {}).get("orgs")
    if orgs is not None and value not in orgs:
        raise SeedConfigError(
            f"unknown org alias {value!r} for {info.field_name}: the configured orgs are {', '.join(orgs)}"
        )
    return value


Alias = Annotated[str, BeforeValidator(_alias)]


class SeedConfig(Contract):
    """What to copy from the backup of `source_org`, as it was at `as_of`, into `target_org`.

    Select records by `objects` (every record of each object), `record_ids` (any objects, told apart by
    key prefix) and/or an `incident` (the records it found damaged); `include_parents` adds, recursively,
    every record they reference in a backed-up object, so lookups resolve in the sandbox.
    """

    as_of: Annotated[datetime, BeforeValidator(_instant)] = Field(
        description="Copy the records as they were at this instant (ISO 8601, e.g. 2026-11-24T02:30:00Z); after "
        "the damage to reproduce it, before it to copy healthy data."
    )
    objects: Annotated[tuple[str, ...], BeforeValidator(_objects)] = Field(
        default=(), description="Copy every record of these objects (API names)."
    )
    record_ids: Annotated[tuple[str, ...], BeforeValidator(_ids)] = Field(
        default=(), description="Copy these records (any backed-up objects)."
    )
    incident: Annotated[int | None, BeforeValidator(_incident)] = Field(
        default=None,
        description="Copy the records an incident found damaged (its id in `sf-pipeline "
        "incidents`), with the parents they referenced before the damage.",
    )
    include_parents: Annotated[bool, BeforeValidator(_flag)] = Field(
        default=True,
        description="Also copy, recursively, the backed-up records the copied ones reference "
        "(accounts of opportunities, ...), so lookups resolve.",
    )
    source_org: Alias = Field(
        default="production", validate_default=True, description="Alias of the backed-up org whose history to copy."
    )
    target_org: Alias = Field(
        default="sandbox",
        validate_default=True,
        description="Alias of the org to write "
        "to: a sandbox (its Organization.IsSandbox is checked), never the source nor the "
        "backed-up org.",
    )

    @model_validator(mode="before")
    @classmethod
    def _required(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            source, target = data.get("source_org", "production"), data.get("target_org", "sandbox")
            if isinstance(source, str) and source and source == target:
                raise SeedConfigError(
                    f"target_org is the source org {source!r}: seeding copies records into "
                    "another org (a sandbox); it never writes to the org it copies from"
                )
            if data.get("as_of") is None:
                raise SeedConfigError(
                    "as_of is required: the instant whose state to copy, e.g. "
                    "'2026-11-24T02:30:00Z' (after the damage, to reproduce it in the sandbox)"
                )
        return data

    @model_validator(mode="after")
    def _selects(self) -> SeedConfig:
        if not self.objects and not self.record_ids and self.incident is None:
            raise SeedConfigError(
                "nothing selected: give objects (copy all their records), record_ids, or an "
                "incident (copy the records it found damaged)"
            )
        return self

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, orgs: Sequence[str] | None = None) -> SeedConfig:
        """Parse the launchpad config; `orgs` are the configured aliases (an unknown alias is an error)."""
        if not isinstance(data, Mapping):
            raise SeedConfigError(f"the seed config must be a mapping, not {type(data).__name__}")
        unknown = sorted(set(data) - set(cls.model_fields))
        if unknown:
            raise SeedConfigError(
                f"unknown seed config key(s) {', '.join(unknown)}; the keys are: {', '.join(sorted(cls.model_fields))}"
            )
        try:
            return cls.model_validate(data, context={"orgs": orgs})
        except ValidationError as exc:
            raise SeedConfigError(problem(exc)) from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "as_of": format_datetime(self.as_of),
            "objects": list(self.objects),
            "record_ids": list(self.record_ids),
            "incident": self.incident,
            "include_parents": self.include_parents,
            "source_org": self.source_org,
            "target_org": self.target_org,
        }
