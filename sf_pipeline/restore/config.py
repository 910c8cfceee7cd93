"""The restore job's config (the launchpad YAML, contract) as one pydantic model: `RestoreConfig`.

The launchpad's `RestoreRunConfig` (restore/dagster_job.py) is derived from this model's fields (names,
defaults, descriptions, choices), so the two cannot drift apart. Everything that can be checked without an org
or a database is checked here, so a typo fails before any API call; `plan_restore` then checks what needs
describe and the backup history.

A restore runs twice: first as a dry run (`dry_run: true`, the default), which stores its plan under its
run id; then with the same config, `dry_run: false` and `plan: <the dry run's run id>`, which writes exactly
that plan (`load_plan`). There is no way to write without a reviewed plan.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, ValidationError, ValidationInfo, model_validator

from sf_pipeline.contract import Contract, problem
from sf_pipeline.instants import InstantError, parse_instant
from sf_pipeline.restore.decisions import OnConflict
from sf_pipeline.restore.errors import RestoreConfigError
from sf_pipeline.salesforce.values import format_datetime, id18

ON_CONFLICT = tuple(c.value for c in OnConflict)
_API_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
USER_KEY_PREFIX = "005"


# ----------------------------------------------------------------- field readers (today's messages)
def _instant(name: str, value: Any) -> datetime:
    try:
        return parse_instant(value, name)
    except InstantError as exc:
        raise RestoreConfigError(str(exc)) from None


def _as_instant(value: Any, info: ValidationInfo) -> Any:
    return None if value is None else _instant(info.field_name, value)


def _window(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        raise RestoreConfigError(
            "changed_between must be two instants [start, end], e.g. ['2026-11-24T02:00:00Z', '2026-11-24T02:10:00Z']"
        )
    return (_instant("changed_between[0]", value[0]), _instant("changed_between[1]", value[1]))


def _names(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise RestoreConfigError(f"fields must be a list of field API names, e.g. [AccountId], not {value!r}")
    seen: dict[str, str] = {}
    for name in value:
        if not isinstance(name, str):
            raise RestoreConfigError(f"fields must hold field API names, not {name!r}")
        if not _API_NAME.match(name):
            raise RestoreConfigError(f"field {name!r} is not a Salesforce field API name (e.g. AccountId)")
        seen.setdefault(name.lower(), name)
    return tuple(seen.values())


def _id(name: str, value: Any) -> str:
    try:
        return id18(value)
    except ValueError as exc:
        raise RestoreConfigError(f"{name}: {exc}") from None


def _ids(value: Any, info: ValidationInfo) -> tuple[str, ...]:
    return _id_list(info.field_name, value)


def _id_list(name: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise RestoreConfigError(f"{name} must be a list of record ids, not {value!r}")
    return tuple(dict.fromkeys(_id(f"{name}[{i}]", v) for i, v in enumerate(value)))


def _user(value: Any) -> str | None:
    if not value:
        return None
    user = _id("changed_by", value)
    if not user.startswith(USER_KEY_PREFIX):
        raise RestoreConfigError(f"changed_by {user!r} is not a User id (User ids start with 005)")
    return user


def _flag(value: Any, info: ValidationInfo) -> Any:
    if value is not None and not isinstance(value, bool):
        raise RestoreConfigError(f"{info.field_name} must be true or false, not {value!r}")
    return value


def _on_conflict(value: Any) -> OnConflict:
    if value not in ON_CONFLICT:
        raise RestoreConfigError(f"on_conflict must be one of {', '.join(ON_CONFLICT)}, not {value!r}")
    return OnConflict(value)


def _object(value: Any) -> str:
    if not isinstance(value, str) or not _API_NAME.match(value):
        raise RestoreConfigError(f"object {value!r} is not a Salesforce object API name (e.g. Opportunity)")
    return value


def _run_id(what: str) -> Callable[[Any], str | None]:
    def read(value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise RestoreConfigError(what)
        return value.strip()

    return read


def _incident_id(value: Any) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise RestoreConfigError(
            f"incident must be the id of an incident (as `sf-pipeline incidents` lists it), not {value!r}"
        )
    return value


Instant = Annotated[datetime | None, BeforeValidator(_as_instant)]
Window = Annotated[tuple[datetime, datetime] | None, BeforeValidator(_window)]
FieldNames = Annotated[tuple[str, ...], BeforeValidator(_names)]
RecordIds = Annotated[tuple[str, ...], BeforeValidator(_ids)]
Flag = Annotated[bool, BeforeValidator(_flag)]
User = Annotated[str | None, BeforeValidator(_user)]
ApiName = Annotated[str, BeforeValidator(_object)]


class RestoreConfig(Contract):
    """What to restore, from when, into which org (paste an incident's suggested config here). See README "Restore"
    for each field."""

    incident: Annotated[int | None, BeforeValidator(_incident_id)] = Field(
        default=None,
        description="Restore what this incident damaged (its id in `sf-pipeline incidents`): the "
        "object, records, fields, as_of, window and user come from the stored incident; any other key given here "
        "narrows or overrides it.",
    )
    object: ApiName = Field(
        description="API name of the object to restore, e.g. Opportunity (required unless incident gives it)."
    )
    fields: FieldNames = Field(
        default=(),
        description="API names of the fields to restore; empty: every "
        "updateable field whose value differs (then select records, or set all_fields).",
    )
    as_of: Instant = Field(
        default=None,
        description="Restore values as they were at this instant (ISO 8601, e.g. "
        "2026-11-24T01:59:59Z). Required unless undo_of is given.",
    )
    record_ids: RecordIds = Field(default=(), description="Optional explicit selection of record ids.")
    changed_between: Window = Field(
        default=None,
        description="Optional [start, end]: only records changed in this interval (as recorded in the backup).",
    )
    changed_by: User = Field(
        default=None, description="Optional user id: only records that user changed in changed_between."
    )
    target_org: str = Field(description="Org alias to write to (any configured alias); required, no default.")
    dry_run: Flag = Field(
        default=True,
        description="Plan only, write nothing (the default); the plan is stored "
        "under this run's id. To write it, launch the same config with dry_run: false and plan.",
    )
    plan: Annotated[
        str | None, BeforeValidator(_run_id("plan must be the run id of the dry run whose plan to apply"))
    ] = Field(
        default=None,
        description="With dry_run: false: the run id of the dry run whose stored plan to write, "
        "exactly as reviewed (records changed since are refused).",
    )
    all_fields: Flag = Field(
        default=False,
        description="Say that a restore with no fields and no record "
        "selection (record_ids, changed_between, changed_by) really means every field of "
        "every record changed after as_of.",
    )
    on_conflict: Annotated[OnConflict, BeforeValidator(_on_conflict)] = Field(
        default=OnConflict.skip,
        description="skip (default): leave records changed in the org after the damage as "
        "they are; overwrite: restore them anyway.",
    )
    restore_deleted: Flag = Field(default=False, description="Undelete (or re-create) deleted records.")
    with_children: Annotated[bool | None, BeforeValidator(_flag)] = Field(
        default=None,
        description="With restore_deleted: also bring back the records deleted with the selected "
        "ones (cascade), parents first, and re-point every lookup to them; on by default for deletions (false: "
        "this object only).",
    )  # resolved to true or false when the config is read (restore/hierarchy.py)
    undo_of: Annotated[str | None, BeforeValidator(_run_id("undo_of must be the run id of a previous restore"))] = (
        Field(
            default=None,
            description="Run id of a previous restore whose written values should be put back as they were before it.",
        )
    )
    # not launchpad keys (exclude=True): what reading the config said, and the keys the stored incident gave
    notes: tuple[str, ...] = Field(default=(), exclude=True)
    from_incident: frozenset[str] = Field(default=frozenset(), exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _default_with_children(cls, data: Any) -> Any:
        """with_children is on by default for deletions (restore_deleted: true), off otherwise."""
        if isinstance(data, Mapping) and data.get("with_children") is None:
            data = {**data, "with_children": data.get("restore_deleted") is True and not data.get("undo_of")}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> RestoreConfig:
        if not self.target_org:
            raise RestoreConfigError(
                "target_org is required: the alias of the org to write to (it has no default, "
                "so that nobody writes to production by leaving it out)"
            )
        if self.undo_of is None and self.as_of is None:
            raise RestoreConfigError(
                "as_of is required: the instant whose values to restore, e.g. "
                "'2026-11-24T01:59:59Z' (or give undo_of: <run id> to undo a restore)"
            )
        if self.changed_between is not None:
            start, end = self.changed_between
            if start >= end:
                raise RestoreConfigError(
                    f"changed_between must go forward in time: {format_datetime(start)} is "
                    f"not before {format_datetime(end)}"
                )
        if not self.dry_run and not self.plan:
            raise RestoreConfigError(
                "dry_run: false needs plan: <run id of its dry run>. A restore writes only a plan that was reviewed: "
                "launch this config with dry_run: true first, check the plan it stores (the run's metadata, "
                "sf_pipeline.restore_items), then launch the same config with dry_run: false and plan: <that run's "
                "id>"
            )
        if self.dry_run and self.plan:
            raise RestoreConfigError(
                f"plan: {self.plan} applies a reviewed plan, which only a run with dry_run: false "
                "does; a dry run makes a new plan (remove plan, or set dry_run: false)"
            )
        if self.with_children and not self.restore_deleted:
            raise RestoreConfigError(
                "with_children: true brings back the records deleted with the selected ones: it "
                "needs restore_deleted: true"
            )
        if self.all_fields and self.fields:
            raise RestoreConfigError(
                f"all_fields: true restores every updateable field, but fields lists "
                f"{', '.join(self.fields)}: give one or the other"
            )
        if (
            self.undo_of is None
            and not self.fields
            and not self.all_fields
            and not self.record_ids
            and self.changed_between is None
            and self.changed_by is None
        ):
            raise RestoreConfigError(
                f"this restore names no fields and selects no records: it would put every updateable field of every "
                f"{self.object} changed after as_of back to its as_of value. Name the fields (fields: [AccountId]) or "
                "select the records (record_ids, changed_between, changed_by); or, if that is what you mean, say so "
                "with all_fields: true"
            )
        return self

    @classmethod
    def launchpad_keys(cls) -> tuple[str, ...]:
        """The keys a launchpad config may give (every field but what reading it adds)."""
        return tuple(name for name, info in cls.model_fields.items() if not info.exclude)

    # ----------------------------------------------------------------- building
    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, orgs: Sequence[str] | None = None, incidents: IncidentLookup | None = None
    ) -> RestoreConfig:
        """Parse the launchpad config; `orgs` are the configured aliases (an unknown `target_org` is an error).

        `incident: <id>` takes the object, fields, as_of, records, window and user from the stored incident, which
        `incidents(id)` returns (its restore selection; None: no such incident). Any key given beside it
        overrides the incident's; `record_ids` and `fields` narrow it (they must be among the incident's).
        """
        if not isinstance(data, Mapping):
            raise RestoreConfigError(f"the restore config must be a mapping, not {type(data).__name__}")
        allowed = cls.launchpad_keys()
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise RestoreConfigError(
                f"unknown restore config key(s) {', '.join(unknown)}; the keys are: {', '.join(sorted(allowed))}"
            )
        notes: list[str] = []
        from_incident: frozenset[str] = frozenset()
        if data.get("incident") is not None:
            data, from_incident, notes = _with_incident(data, incidents)
        if "object" not in data or not isinstance(data["object"], str):
            raise RestoreConfigError("object is required: the API name of the object to restore, e.g. Opportunity")
        target = data.get("target_org")
        if target is None:
            raise RestoreConfigError(
                "target_org is required: the alias of the org to write to"
                + (f" (one of {', '.join(orgs)})" if orgs else "")
                + "; it has no default, so that nobody writes to production by leaving it out"
            )
        if not isinstance(target, str) or not target:
            raise RestoreConfigError("target_org must be an org alias, e.g. production")
        if orgs is not None and target not in orgs:
            raise RestoreConfigError(f"unknown org alias {target!r}: the configured orgs are {', '.join(orgs)}")
        undo_of = data.get("undo_of")
        if undo_of and any(data.get(k) for k in ("as_of", "changed_between", "changed_by")):
            notes.append(
                "undo_of is given: as_of, changed_between and changed_by are ignored (the values to put "
                f"back are the before-values that run {str(undo_of).strip()} logged)"
            )
        try:
            return cls.model_validate({**data, "notes": tuple(notes), "from_incident": from_incident})
        except ValidationError as exc:
            raise RestoreConfigError(problem(exc)) from None

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON (stored with the plan). Record ids taken from an incident are not repeated
        (`incident` names them; the plan's items hold each record)."""
        return {
            "object": self.object,
            "fields": list(self.fields),
            "as_of": format_datetime(self.as_of) if self.as_of else None,
            "record_ids": [] if "record_ids" in self.from_incident else list(self.record_ids),
            "changed_between": [format_datetime(m) for m in self.changed_between] if self.changed_between else None,
            "changed_by": self.changed_by,
            "target_org": self.target_org,
            "dry_run": self.dry_run,
            "on_conflict": self.on_conflict.value,
            "restore_deleted": self.restore_deleted,
            "undo_of": self.undo_of,
            "plan": self.plan,
            "all_fields": self.all_fields,
            **({"incident": self.incident} if self.incident is not None else {}),
            "with_children": self.with_children,
        }

    def planned_as(self) -> dict[str, Any]:
        """The config as its dry run planned it: what an apply's config must match, key for key."""
        return {k: v for k, v in self.to_dict().items() if k not in ("dry_run", "plan")}

    def check_instants(self, now: datetime | None = None) -> None:
        """`as_of` must not be in the future: there is no backup of it yet."""
        now = now or datetime.now(UTC)
        if self.undo_of is None and self.as_of is not None and self.as_of > now:
            raise RestoreConfigError(
                f"as_of {format_datetime(self.as_of)} is in the future (now is "
                f"{format_datetime(now)}): choose an instant before the damage"
            )


class IncidentSelection(Contract):
    """What a stored incident selects for a restore (`restore_config_for` in anomalies/incidents.py stores it): what
    `incident: <id>` brings into a restore config, and what seeding copies. Read with the restore config's own
    field readers; the rest of the stored config (target_org, dry_run, plan, on_conflict, ...) is the user's to
    say, so it is ignored here."""

    model_config = Contract.model_config | {"extra": "ignore"}

    object: ApiName
    fields: FieldNames = ()
    as_of: Instant = None
    record_ids: RecordIds = ()
    changed_between: Window = None
    changed_by: User = None
    restore_deleted: Flag = False

    @classmethod
    def read(cls, stored: Mapping[str, Any], what: str) -> IncidentSelection:
        """`stored` (an incident's restore selection) read; `what` names it in an error, e.g. "incident 7"."""
        try:
            return cls.model_validate(stored)
        except ValidationError as exc:
            raise RestoreConfigError(f"{what} stores a restore selection that cannot be read: {problem(exc)}") from None


IncidentLookup = Callable[[int], "Mapping[str, Any] | None"]
# What `incident: <id>` may bring into a restore config.
INCIDENT_KEYS = tuple(IncidentSelection.model_fields)


def _with_incident(
    data: Mapping[str, Any], incidents: IncidentLookup | None
) -> tuple[dict[str, Any], frozenset[str], list[str]]:
    """The launchpad config with the stored incident's selection under the keys it does not give."""
    number = _incident_id(data["incident"])
    if data.get("undo_of") is not None:
        raise RestoreConfigError(
            "incident and undo_of cannot go together: undo_of puts back what a restore run "
            "wrote, incident restores what an incident damaged; give one of them"
        )
    if incidents is None:
        raise RestoreConfigError(f"incident: {number} needs the backup database to read the incident from")
    stored = incidents(number)
    if stored is None:
        raise RestoreConfigError(
            f"there is no incident {number} in sf_pipeline.incidents (`sf-pipeline incidents` "
            "lists them, each with its id)"
        )
    if not stored:
        raise RestoreConfigError(f"incident {number} has nothing a restore could bring back (e.g. a volume drop)")
    selection = IncidentSelection.read(stored, f"incident {number}")
    merged: dict[str, Any] = selection.model_dump(include=set(stored) & set(INCIDENT_KEYS))
    given = {k: v for k, v in data.items() if v is not None and v != []}
    notes = []
    if "object" in given and str(given["object"]).lower() != selection.object.lower():
        raise RestoreConfigError(
            f"incident {number} is about {selection.object}, not {given['object']}: "
            "leave object out (the incident gives it) or restore by hand without incident"
        )
    theirs = set(selection.record_ids)
    if given.get("record_ids") and theirs:
        outside = [
            r
            for r in _id_list("record_ids", given["record_ids"])
            if r not in theirs and not any(t.startswith(r[:15]) for t in theirs)
        ]
        if outside:
            raise RestoreConfigError(
                f"record_ids narrow incident {number} to some of its records, but "
                f"{len(outside)} of them are not among its {len(theirs):,} records (e.g. "
                f"{', '.join(outside[:3])}); remove incident to restore a hand-made selection"
            )
    if given.get("fields") and selection.fields:
        theirs_fields = {f.lower() for f in selection.fields}
        outside = [f for f in given["fields"] if isinstance(f, str) and f.lower() not in theirs_fields]
        if outside:
            raise RestoreConfigError(
                f"fields narrow incident {number} to some of its fields "
                f"({', '.join(selection.fields)}), but it did not damage {', '.join(outside)}"
            )
    taken = frozenset(k for k in merged if k not in given)
    merged.update(given)
    count = len(merged.get("record_ids") or ())
    as_of = merged.get("as_of")
    notes.append(
        f"incident {number}: {count:,} {merged.get('object')} records"
        + (f", fields {', '.join(merged['fields'])}" if merged.get("fields") else ", every restorable field")
        + f", as of {as_of.strftime('%Y-%m-%dT%H:%M:%SZ') if isinstance(as_of, datetime) else as_of}"
        + (
            f"; overridden here: {', '.join(sorted(k for k in given if k in INCIDENT_KEYS))}"
            if any(k in INCIDENT_KEYS for k in given)
            else ""
        )
    )
    return merged, taken, notes
