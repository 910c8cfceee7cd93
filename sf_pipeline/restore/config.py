"""The restore job's config (the launchpad YAML, contract) as a validated dataclass.

Everything that can be checked without an org or a database is checked here, so a typo fails before
any API call; `plan_restore` then checks what needs describe and the backup history.

A restore runs twice: first as a dry run (`dry_run: true`, the default), which stores its plan under its
run id; then with the same config, `dry_run: false` and `plan: <the dry run's run id>`, which writes exactly
that plan (`load_plan`). There is no way to write without a reviewed plan.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sf_pipeline.restore.errors import RestoreConfigError
from sf_pipeline.salesforce.values import format_datetime, id18

ON_CONFLICT = ("skip", "overwrite")
_API_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
USER_KEY_PREFIX = "005"


@dataclass(frozen=True)
class RestoreConfig:
    """What to restore, to which state, where, and how carefully. See README "Restore" for each field."""

    object: str
    fields: tuple[str, ...] = ()
    as_of: datetime | None = None
    record_ids: tuple[str, ...] = ()
    changed_between: tuple[datetime, datetime] | None = None
    changed_by: str | None = None
    target_org: str = ""
    dry_run: bool = True
    on_conflict: str = "skip"
    restore_deleted: bool = False
    undo_of: str | None = None
    plan: str | None = None
    all_fields: bool = False
    incident: int | None = None
    with_children: bool = False  # restore_deleted: also the records deleted with them (hierarchy.py); on by default
    notes: tuple[str, ...] = field(default=(), compare=False)
    # keys whose values came from the stored incident (not written in the launchpad config)
    from_incident: frozenset[str] = field(default=frozenset(), compare=False)

    def __post_init__(self) -> None:
        if not self.target_org:
            raise RestoreConfigError("target_org is required: the alias of the org to write to (it has no default, "
                                     "so that nobody writes to production by leaving it out)")
        if not _API_NAME.match(self.object or ""):
            raise RestoreConfigError(f"object {self.object!r} is not a Salesforce object API name (e.g. Opportunity)")
        for name in self.fields:
            if not _API_NAME.match(name):
                raise RestoreConfigError(f"field {name!r} is not a Salesforce field API name (e.g. AccountId)")
        if self.on_conflict not in ON_CONFLICT:
            raise RestoreConfigError(f"on_conflict must be one of {', '.join(ON_CONFLICT)}, not {self.on_conflict!r}")
        if self.undo_of is None and self.as_of is None:
            raise RestoreConfigError("as_of is required: the instant whose values to restore, e.g. "
                                     "'2026-11-24T01:59:59Z' (or give undo_of: <run id> to undo a restore)")
        for name, moment in (("as_of", self.as_of), *(
                (f"changed_between[{i}]", m) for i, m in enumerate(self.changed_between or ()))):
            if moment is not None and moment.tzinfo is None:
                raise RestoreConfigError(f"{name} needs a time zone, e.g. '2026-11-24T01:59:59Z'")
        if self.changed_between is not None:
            start, end = self.changed_between
            if start >= end:
                raise RestoreConfigError(f"changed_between must go forward in time: {format_datetime(start)} is "
                                         f"not before {format_datetime(end)}")
        if self.changed_by is not None and not self.changed_by.startswith(USER_KEY_PREFIX):
            raise RestoreConfigError(f"changed_by {self.changed_by!r} is not a User id (User ids start with 005)")
        if not self.dry_run and not self.plan:
            raise RestoreConfigError(
                "dry_run: false needs plan: <run id of its dry run>. A restore writes only a plan that was reviewed: "
                "launch this config with dry_run: true first, check the plan it stores (the run's metadata, "
                "sf_pipeline.restore_items), then launch the same config with dry_run: false and plan: <that run's "
                "id>")
        if self.dry_run and self.plan:
            raise RestoreConfigError(f"plan: {self.plan} applies a reviewed plan, which only a run with dry_run: false "
                                     "does; a dry run makes a new plan (remove plan, or set dry_run: false)")
        if self.with_children and not self.restore_deleted:
            raise RestoreConfigError("with_children: true brings back the records deleted with the selected ones: it "
                                     "needs restore_deleted: true")
        if self.all_fields and self.fields:
            raise RestoreConfigError(f"all_fields: true restores every updateable field, but fields lists "
                                     f"{', '.join(self.fields)}: give one or the other")
        if self.undo_of is None and not self.fields and not self.all_fields and not self.record_ids \
                and self.changed_between is None and self.changed_by is None:
            raise RestoreConfigError(
                f"this restore names no fields and selects no records: it would put every updateable field of every "
                f"{self.object} changed after as_of back to its as_of value. Name the fields (fields: [AccountId]) or "
                "select the records (record_ids, changed_between, changed_by); or, if that is what you mean, say so "
                "with all_fields: true")

    # ----------------------------------------------------------------- building
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, orgs: Sequence[str] | None = None,
                  incidents: IncidentLookup | None = None) -> RestoreConfig:
        """Parse the launchpad config; `orgs` are the configured aliases (an unknown `target_org` is an error).

        `incident: <id>` takes the object, fields, as_of, records, window and user from the stored incident, which
        `incidents(id)` returns (its restore selection; None: no such incident). Any key given beside it
        overrides the incident's; `record_ids` and `fields` narrow it (they must be among the incident's).
        """
        if not isinstance(data, Mapping):
            raise RestoreConfigError(f"the restore config must be a mapping, not {type(data).__name__}")
        allowed = {f for f in cls.__dataclass_fields__ if f not in ("notes", "from_incident")}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise RestoreConfigError(f"unknown restore config key(s) {', '.join(unknown)}; the keys are: "
                                     f"{', '.join(sorted(allowed))}")
        incident_notes: list[str] = []
        from_incident: frozenset[str] = frozenset()
        if data.get("incident") is not None:
            data, from_incident, incident_notes = _with_incident(data, incidents)
        if "object" not in data or not isinstance(data["object"], str):
            raise RestoreConfigError("object is required: the API name of the object to restore, e.g. Opportunity")
        target = data.get("target_org")
        if target is None:
            raise RestoreConfigError("target_org is required: the alias of the org to write to"
                                     + (f" (one of {', '.join(orgs)})" if orgs else "")
                                     + "; it has no default, so that nobody writes to production by leaving it out")
        if not isinstance(target, str) or not target:
            raise RestoreConfigError("target_org must be an org alias, e.g. production")
        if orgs is not None and target not in orgs:
            raise RestoreConfigError(f"unknown org alias {target!r}: the configured orgs are {', '.join(orgs)}")
        changed_between = data.get("changed_between")
        if changed_between is not None:
            if not isinstance(changed_between, Sequence) or isinstance(changed_between, str) or \
                    len(changed_between) != 2:
                raise RestoreConfigError("changed_between must be two instants [start, end], e.g. "
                                         "['2026-11-24T02:00:00Z', '2026-11-24T02:10:00Z']")
            changed_between = (_instant("changed_between[0]", changed_between[0]),
                               _instant("changed_between[1]", changed_between[1]))
        undo_of = data.get("undo_of")
        if undo_of is not None and (not isinstance(undo_of, str) or not undo_of.strip()):
            raise RestoreConfigError("undo_of must be the run id of a previous restore")
        plan = data.get("plan")
        if plan is not None and (not isinstance(plan, str) or not plan.strip()):
            raise RestoreConfigError("plan must be the run id of the dry run whose plan to apply")
        notes = list(incident_notes)
        if undo_of and any(data.get(k) for k in ("as_of", "changed_between", "changed_by")):
            notes.append("undo_of is given: as_of, changed_between and changed_by are ignored (the values to put "
                         f"back are the before-values that run {undo_of} logged)")
        return cls(
            object=data["object"],
            fields=_names(data.get("fields")),
            as_of=_instant("as_of", data["as_of"]) if data.get("as_of") is not None else None,
            record_ids=_ids("record_ids", data.get("record_ids")),
            changed_between=changed_between,
            changed_by=_id("changed_by", data["changed_by"]) if data.get("changed_by") else None,
            target_org=target,
            dry_run=_flag("dry_run", data.get("dry_run", True)),
            on_conflict=data.get("on_conflict", "skip"),
            restore_deleted=_flag("restore_deleted", data.get("restore_deleted", False)),
            undo_of=undo_of.strip() if undo_of else None,
            plan=plan.strip() if plan else None,
            all_fields=_flag("all_fields", data.get("all_fields", False)),
            incident=data.get("incident"),
            # default on for deletions (restore_deleted: true), off otherwise
            with_children=_flag("with_children", data.get("with_children",
                                                           data.get("restore_deleted") is True and not undo_of)),
            notes=tuple(notes),
            from_incident=from_incident,
        )

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
            "on_conflict": self.on_conflict,
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
            raise RestoreConfigError(f"as_of {format_datetime(self.as_of)} is in the future (now is "
                                     f"{format_datetime(now)}): choose an instant before the damage")


IncidentLookup = Callable[[int], "Mapping[str, Any] | None"]
# What `incident: <id>` may bring into a restore config; the rest (target_org, dry_run, plan, on_conflict, ...)
# is the user's to say.
INCIDENT_KEYS = ("object", "fields", "as_of", "record_ids", "changed_between", "changed_by", "restore_deleted")


def _with_incident(data: Mapping[str, Any], incidents: IncidentLookup | None) -> tuple[
        dict[str, Any], frozenset[str], list[str]]:
    """The launchpad config with the stored incident's selection under the keys it does not give."""
    number = data["incident"]
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise RestoreConfigError(f"incident must be the id of an incident (as `sf-pipeline incidents` lists it), "
                                 f"not {number!r}")
    if data.get("undo_of") is not None:
        raise RestoreConfigError("incident and undo_of cannot go together: undo_of puts back what a restore run "
                                 "wrote, incident restores what an incident damaged; give one of them")
    if incidents is None:
        raise RestoreConfigError(f"incident: {number} needs the backup database to read the incident from")
    selection = incidents(number)
    if selection is None:
        raise RestoreConfigError(f"there is no incident {number} in sf_pipeline.incidents (`sf-pipeline incidents` "
                                 "lists them, each with its id)")
    if not selection:
        raise RestoreConfigError(f"incident {number} has nothing a restore could bring back (e.g. a volume drop)")
    merged: dict[str, Any] = {k: selection[k] for k in INCIDENT_KEYS if k in selection}
    given = {k: v for k, v in data.items() if v is not None and v != []}
    notes = []
    if "object" in given and str(given["object"]).lower() != str(merged.get("object", "")).lower():
        raise RestoreConfigError(f"incident {number} is about {merged.get('object')}, not {given['object']}: "
                                 "leave object out (the incident gives it) or restore by hand without incident")
    theirs = set(merged.get("record_ids") or ())
    if given.get("record_ids") and theirs:
        outside = [r for r in _ids("record_ids", given["record_ids"]) if r not in theirs
                   and not any(t.startswith(r[:15]) for t in theirs)]
        if outside:
            raise RestoreConfigError(f"record_ids narrow incident {number} to some of its records, but "
                                     f"{len(outside)} of them are not among its {len(theirs):,} records (e.g. "
                                     f"{', '.join(outside[:3])}); remove incident to restore a hand-made selection")
    if given.get("fields") and merged.get("fields"):
        theirs_fields = {f.lower() for f in merged["fields"]}
        outside = [f for f in given["fields"] if isinstance(f, str) and f.lower() not in theirs_fields]
        if outside:
            raise RestoreConfigError(f"fields narrow incident {number} to some of its fields ({', '.join(merged['fields'])}), "
                                     f"but it did not damage {', '.join(outside)}")
    taken = frozenset(k for k in merged if k not in given)
    merged.update(given)
    count = len(merged.get("record_ids") or ())
    notes.append(f"incident {number}: {count:,} {merged.get('object')} records"
                 + (f", fields {', '.join(merged['fields'])}" if merged.get("fields") else ", every restorable field")
                 + f", as of {merged.get('as_of')}"
                 + (f"; overridden here: {', '.join(sorted(k for k in given if k in INCIDENT_KEYS))}"
                    if any(k in INCIDENT_KEYS for k in given) else ""))
    return merged, taken, notes


def _instant(name: str, value: Any) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise RestoreConfigError(f"{name} {value!r} is not an ISO instant, e.g. '2026-11-24T01:59:59Z'") from None
    else:
        raise RestoreConfigError(f"{name} must be an ISO instant such as '2026-11-24T01:59:59Z', not {value!r}")
    if moment.tzinfo is None:
        raise RestoreConfigError(f"{name} {value!r} needs a time zone, e.g. '2026-11-24T01:59:59Z'")
    return moment.astimezone(UTC)


def _names(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise RestoreConfigError(f"fields must be a list of field API names, e.g. [AccountId], not {value!r}")
    seen: dict[str, str] = {}
    for name in value:
        if not isinstance(name, str):
            raise RestoreConfigError(f"fields must hold field API names, not {name!r}")
        seen.setdefault(name.lower(), name)
    return tuple(seen.values())


def _id(name: str, value: Any) -> str:
    try:
        return id18(value)
    except ValueError as exc:
        raise RestoreConfigError(f"{name}: {exc}") from None


def _ids(name: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise RestoreConfigError(f"{name} must be a list of record ids, not {value!r}")
    return tuple(dict.fromkeys(_id(f"{name}[{i}]", v) for i, v in enumerate(value)))


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise RestoreConfigError(f"{name} must be true or false, not {value!r}")
    return value
