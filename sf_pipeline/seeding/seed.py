"""Seed a sandbox from the backup: records as they were at `as_of`, parents first, every reference remapped.

The values come from the backup history (never from the source org), so a sandbox can reproduce the
state of any backed-up instant, the damage included. Every copied record gets a row in
`sf_pipeline.id_map` (source alias, target alias, object, source id, target id), saved as soon as the
org answers each batch: a re-run, even after an interrupted one, updates the records it created instead
of creating them again, and a restore whose `target_org` is the sandbox translates its ids through it.

Seeding writes only to a verified sandbox: before any write, the target must not be the backed-up org, its
`Organization.IsSandbox` must be true, and it must be the org its alias reached on its first contact
(sf_pipeline.org_identity).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from sf_pipeline.anomalies.incidents import get_incident, incident_record_ids
from sf_pipeline.metadata import Markdown
from sf_pipeline.privacy.masking import MaskingSettings, Pseudonyms, RecordMasker, masks_for
from sf_pipeline.restore import tables as restore_tables
from sf_pipeline.restore.config import IncidentSelection
from sf_pipeline.restore.errors import RestoreConfigError
from sf_pipeline.salesforce.client import SalesforceClient
from sf_pipeline.salesforce.organization import Organization
from sf_pipeline.salesforce.values import canonical, format_datetime
from sf_pipeline.salesforce.writes import WriteResult, create_records, query_by_ids, update_records
from sf_pipeline.seeding import tables
from sf_pipeline.seeding.config import SeedConfig
from sf_pipeline.seeding.errors import SeedConfigError, SeedTargetError
from sf_pipeline.seeding.order import InsertOrder, Reference, insert_order
from sf_pipeline.seeding.users import match_users, org_users
from sf_pipeline.warehouse.errors import HistoryNotFoundError
from sf_pipeline.warehouse.history import history_columns
from sf_pipeline.warehouse.id_map import load_id_map, save_id_map
from sf_pipeline.warehouse.names import column_name
from sf_pipeline.warehouse.org_identity import verify_org
from sf_pipeline.warehouse.schema import SKIPPED_TYPES

log = logging.getLogger(__name__)

USER_PREFIX = "005"
# Set by Salesforce on every record, whatever the API call says: listed apart from other read-only fields.
AUDIT_FIELDS = frozenset(
    {
        "id",
        "isdeleted",
        "createddate",
        "createdbyid",
        "lastmodifieddate",
        "lastmodifiedbyid",
        "systemmodstamp",
        "lastactivitydate",
        "lastvieweddate",
        "lastreferenceddate",
    }
)
MAX_LISTED_FAILURES = 50


@dataclass
class ObjectOutcome:
    """What seeding did to one object."""

    object: str
    selected: int = 0  # records selected by the config
    parents: int = 0  # records added because a selected record references them
    inserted: int = 0
    updated: int = 0  # already seeded by an earlier run: updated in place
    failed: int = 0
    second_pass: int = 0  # records whose deferred references were set by an update after the inserts
    not_settable: list[str] = field(default_factory=list)  # backed-up fields the target does not accept on insert
    not_in_target: list[str] = field(default_factory=list)  # backed-up fields the target org does not have
    unresolved: dict[str, int] = field(default_factory=dict)  # reference field -> values left empty
    failures: list[tuple[str, str]] = field(default_factory=list)  # (source id, error), the first 50

    def to_dict(self) -> dict[str, Any]:
        return {
            "object": self.object,
            "selected": self.selected,
            "parents": self.parents,
            "inserted": self.inserted,
            "updated": self.updated,
            "failed": self.failed,
            "second_pass": self.second_pass,
            "not_settable": self.not_settable,
            "not_in_target": self.not_in_target,
            "unresolved": self.unresolved,
            "failures": [{"id": i, "error": e} for i, e in self.failures],
        }


@dataclass
class SeedResult:
    config: SeedConfig
    order: list[str] = field(default_factory=list)
    deferred: dict[str, list[str]] = field(default_factory=dict)
    objects: dict[str, ObjectOutcome] = field(default_factory=dict)
    users_mapped: int = 0
    users_unmapped: list[str] = field(default_factory=list)
    missing: dict[str, list[str]] = field(default_factory=dict)  # selected ids not in the backup at as_of
    notes: list[str] = field(default_factory=list)
    api_calls: int = 0
    seconds: float = 0.0
    masked: dict[str, dict[str, str]] = field(default_factory=dict)  # object -> field -> rule (privacy/masking.py)

    @property
    def failed(self) -> int:
        return sum(o.failed for o in self.objects.values())

    @property
    def copied(self) -> int:
        return sum(o.inserted + o.updated for o in self.objects.values())

    def summary(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "order": self.order,
            "deferred": self.deferred,
            "objects": {k: v.to_dict() for k, v in self.objects.items()},
            "copied": self.copied,
            "failed": self.failed,
            "users_mapped": self.users_mapped,
            "users_unmapped": self.users_unmapped,
            "missing": {k: v[:MAX_LISTED_FAILURES] for k, v in self.missing.items()},
            "notes": self.notes,
            "api_calls": self.api_calls,
            "seconds": round(self.seconds, 3),
            "masked": self.masked,
        }

    def as_metadata(self, masking: bool) -> dict[str, Any]:
        """What the run shows (plain values, sf_pipeline.metadata): records copied and failed, per object what was
        done (a table), the insert order, references set after the inserts, users mapped, the fields masked
        (`masking`: whether masking was on), API calls and seconds."""
        return {
            "target_org": self.config.target_org,
            "as_of": format_datetime(self.config.as_of),
            "records_copied": self.copied,
            "records_failed": self.failed,
            "objects": Markdown(self.markdown()),
            "insert_order": " -> ".join(self.order),
            "set_after_insert": self.deferred,
            "users_mapped": self.users_mapped,
            "notes": "; ".join(self.notes) or "none",
            "masked_fields": self.masked if masking else {"masking": "off"},
            "api_calls": self.api_calls,
            "seconds": round(self.seconds, 2),
        }

    def failure_message(self) -> str:
        """How many records could not be copied, and the first 20 of each object with the org's error."""
        failures = "\n".join(
            f"- {o.object} {sid}: {err}" for o in self.objects.values() for sid, err in o.failures[:20]
        )
        return f"{self.failed} records could not be copied:\n{failures}"

    def markdown(self) -> str:
        lines = [
            "| object | selected | parents | inserted | updated | failed | set later | not settable on insert |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for o in self.objects.values():
            lines.append(
                f"| {o.object} | {o.selected} | {o.parents} | {o.inserted} | {o.updated} | {o.failed} | "
                f"{o.second_pass} | {', '.join(o.not_settable) or '-'} |"
            )
        return "\n".join(lines)


@dataclass
class _Object:
    """One object being seeded: its target describe, the fields to write, and the source records."""

    name: str
    describe: Mapping[str, Any]
    columns: list[str]  # backed-up columns to read
    insert_fields: list[str]  # API names, createable in the target
    update_fields: list[str]  # API names, createable and updateable
    types: dict[str, str]
    references: dict[str, tuple[str, ...]]  # field -> objects it may point to (reference fields to write)
    nillable: set[str]
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # source id -> values by column
    masker: RecordMasker | None = None  # personal fields' values replaced on the way into the target


def seed_sandbox(
    conn: psycopg.Connection[Any],
    target: SalesforceClient,
    config: SeedConfig,
    *,
    backed_up: Sequence[str],
    source_users: Sequence[Mapping[str, Any]] | None = None,
    progress: Callable[[str], None] | None = None,
    backup_org: str | None = None,
    masking: MaskingSettings | None = None,
    pseudonyms: Pseudonyms | None = None,
) -> SeedResult:
    """Copy the selected records (and their parents) from the backup into the target org; see the module doc.

    `backed_up` are the objects the backup holds (API names); `source_users` the source org's users (Id,
    Username, Email, Name) to match owners by, or None to leave user lookups to the target's defaults;
    `backup_org` the alias of the backed-up org, never a target. Raises SeedTargetError (or OrgIdentityError)
    before any write when the target is not a verified sandbox. `masking` (with the `pseudonyms` its pseudonym
    rules need) replaces personal values as they are written.
    """
    started = time.perf_counter()
    calls = target.api_calls
    say = progress or (lambda _message: None)
    if target.alias != config.target_org:
        raise SeedConfigError(
            f"the client is connected to org {target.alias!r} but target_org is {config.target_org!r}"
        )
    check_seed_target(conn, target, backup_org)
    restore_tables.ensure_restore_tables(conn)
    result = SeedResult(config)
    known = {o.lower(): o for o in backed_up}
    for name in config.objects:
        if name.lower() not in known:
            raise SeedConfigError(f"{name} is not a backed-up object (the backup holds {', '.join(backed_up)})")

    objects = _prepare_objects(conn, target, backed_up)
    if masking is not None and masking.enabled:
        for obj in objects.values():
            obj.masker = RecordMasker(masks_for(masking, obj.name, obj.describe["fields"]), pseudonyms)
    prefixes = {str(o.describe.get("keyPrefix")): o.name for o in objects.values() if o.describe.get("keyPrefix")}

    # ---------------------------------------------------------------- selection
    selected: dict[str, set[str] | None] = {}
    parents_at: datetime | None = None
    for name in config.objects:
        selected[known[name.lower()]] = None
    for rid in config.record_ids:
        owner = prefixes.get(rid[:3])
        if owner is None:
            raise SeedConfigError(
                f"record id {rid} is not a record of a backed-up object (no backed-up object has key prefix {rid[:3]})"
            )
        if selected.get(owner, set()) is not None:
            selected.setdefault(owner, set()).add(rid)
    if config.incident is not None:
        obj, ids, parents_at = _incident_selection(conn, config.incident, config.source_org)
        if obj not in objects:
            raise SeedConfigError(f"incident {config.incident} is about {obj}, which the backup does not hold")
        if selected.get(obj, set()) is not None:
            selected.setdefault(obj, set()).update(ids)
        result.notes.append(
            f"incident {config.incident}: {len(ids)} {obj} records; their parents are taken as "
            f"referenced at {format_datetime(config.as_of)} and before the damage "
            f"({format_datetime(parents_at)})"
        )

    say("reading the selected records from the backup")
    for name, ids in selected.items():
        obj = objects[name]
        found = tables.records_as_of(conn, name, obj.columns, config.as_of, None if ids is None else sorted(ids))
        obj.records.update(found)
        outcome = result.objects.setdefault(name, ObjectOutcome(name))
        outcome.selected = len(found)
        if ids is not None and len(found) < len(ids):
            result.missing[name] = sorted(ids - set(found))
    if result.missing:
        result.notes.append(
            "selected records that did not exist at as_of (not created yet, or deleted) are not "
            f"copied: {', '.join(f'{k}: {len(v)}' for k, v in result.missing.items())}"
        )

    if config.include_parents:
        say("adding the records they reference")
        _add_parents(conn, objects, prefixes, config.as_of, parents_at, selected, result)

    seeded = {name: obj for name, obj in objects.items() if obj.records}
    for name, obj in seeded.items():
        outcome = result.objects.setdefault(name, ObjectOutcome(name))
        in_backup = set(obj.columns)
        by_column = {column_name(f["name"]): f for f in obj.describe["fields"]}
        outcome.not_settable = sorted(
            by_column[c]["name"]
            for c in in_backup
            if c in by_column
            and c not in AUDIT_FIELDS
            and not by_column[c].get("createable")
            and str(by_column[c].get("type")) not in SKIPPED_TYPES
        )
        outcome.not_in_target = sorted(c for c in in_backup if c not in by_column)
        if obj.masker is not None and obj.masker.masks:
            result.masked[name] = obj.masker.summary()

    # ---------------------------------------------------------------- users and ids
    user_map = _user_map(target, source_users, seeded, result)
    id_map = load_id_map(conn, config.source_org, config.target_org)
    existing = _existing(target, seeded, id_map)

    order = insert_order(
        {
            name: [
                Reference(f, tuple(t for t in targets if t in seeded), f in obj.nillable)
                for f, targets in obj.references.items()
                if any(t in seeded for t in targets)
            ]
            for name, obj in seeded.items()
        }
    )
    result.order = order.objects
    result.deferred = {k: sorted(v) for k, v in order.deferred.items()}

    # ---------------------------------------------------------------- writes
    later: dict[str, dict[str, dict[str, str]]] = {}  # object -> source id -> {field: source parent id}
    for name in order.objects:
        obj = seeded[name]
        outcome = result.objects[name]
        say(f"writing {len(obj.records):,} {name} records")
        _write_object(
            conn,
            target,
            config,
            obj,
            order,
            id_map,
            existing.get(name, set()),
            user_map,
            prefixes,
            outcome,
            later.setdefault(name, {}),
        )
    for name, pending in later.items():
        if pending:
            say(f"setting {name} references that close a cycle")
            _second_pass(target, seeded[name], pending, id_map, result.objects[name])
    result.api_calls = target.api_calls - calls
    result.seconds = time.perf_counter() - started
    return result


def check_seed_target(conn: psycopg.Connection[Any], target: SalesforceClient, backup_org: str | None) -> Organization:
    """The target org, if seeding may write to it: not the backed-up org, a sandbox, the org its alias always
    reached. Reads one record (Organization); writes nothing to any org."""
    alias = target.alias
    if backup_org is not None and alias == backup_org:
        raise SeedTargetError(
            f"target_org {alias!r} is the backed-up org: seeding writes only to sandboxes, never to "
            "the org the backup is of. Nothing was written"
        )
    org = verify_org(conn, target)
    if not org.is_sandbox:
        raise SeedTargetError(
            f"target_org {alias!r} reaches org {org.label()}, which is not a sandbox (its "
            "Organization.IsSandbox is false): seeding writes only to sandboxes. Nothing was "
            f"written; point SALESFORCE_{alias.upper()}_* at a sandbox, or seed another alias"
        )
    return org


# ===================================================================== preparation
def _prepare_objects(
    conn: psycopg.Connection[Any], target: SalesforceClient, backed_up: Sequence[str]
) -> dict[str, _Object]:
    objects: dict[str, _Object] = {}
    for name in backed_up:
        try:
            columns = history_columns(conn, name)
        except HistoryNotFoundError:
            continue  # configured, never backed up: nothing to copy from it
        try:
            desc = target.describe(name)
        except Exception as exc:  # noqa: BLE001 - the target lacks the object: its records cannot be copied
            log.warning("org %s has no %s (%s): its records are not copied", target.alias, name, exc)
            continue
        in_backup = set(columns)
        writable = [
            f
            for f in desc["fields"]
            if f.get("createable") and column_name(f["name"]) in in_backup and str(f.get("type")) not in SKIPPED_TYPES
        ]
        objects[name] = _Object(
            name=name,
            describe=desc,
            columns=columns,
            insert_fields=[f["name"] for f in writable],
            update_fields=[f["name"] for f in writable if f.get("updateable")],
            types={f["name"]: str(f.get("type")) for f in desc["fields"]},
            references={f["name"]: tuple(f.get("referenceTo") or ()) for f in writable if f.get("type") == "reference"},
            nillable={f["name"] for f in writable if f.get("nillable")},
        )
    return objects


def _incident_selection(
    conn: psycopg.Connection[Any], incident_id: int, source_org: str
) -> tuple[str, list[str], datetime]:
    stored = get_incident(conn, incident_id)
    if stored is None:
        raise SeedConfigError(f"there is no incident {incident_id} (see `sf-pipeline incidents`)")
    report = stored.report
    if report.org != source_org:
        raise SeedConfigError(f"incident {incident_id} is about org {report.org!r}, not the source org {source_org!r}")
    if not report.restore_config:
        raise SeedConfigError(f"incident {incident_id} ({report.detector}) selects no records to restore")
    try:  # the restore's own reader of an incident's selection
        selection = IncidentSelection.read(report.restore_config, f"incident {incident_id}")
    except RestoreConfigError as exc:
        raise SeedConfigError(str(exc)) from None
    if selection.as_of is None:
        raise SeedConfigError(f"incident {incident_id} ({report.detector}) has no as_of to take parents from")
    ids = incident_record_ids(conn, incident_id) or list(selection.record_ids)
    if not ids and selection.changed_between:
        start, end = selection.changed_between
        ids = tables.ids_changed(conn, selection.object, start, end, selection.changed_by)
    return selection.object, ids, selection.as_of


def _references_of(obj: _Object, values: Mapping[str, Any], prefixes: Mapping[str, str]) -> list[tuple[str, str]]:
    out = []
    for fname in obj.references:
        value = values.get(column_name(fname))
        if value and str(value)[:3] in prefixes:
            out.append((prefixes[str(value)[:3]], str(value)))
    return out


def _add_parents(
    conn: psycopg.Connection[Any],
    objects: Mapping[str, _Object],
    prefixes: Mapping[str, str],
    as_of: datetime,
    parents_at: datetime | None,
    selected: Mapping[str, set[str] | None],
    result: SeedResult,
) -> None:
    """Add every backed-up record the copied ones reference, recursively, as of `as_of` (else `parents_at`)."""
    frontier: list[tuple[_Object, Mapping[str, Any]]] = [(o, v) for o in objects.values() for v in o.records.values()]
    if parents_at is not None:
        # The values a restore will put back reference parents too: the sandbox must have them.
        for name, ids in selected.items():
            earlier = tables.records_as_of(
                conn, name, objects[name].columns, parents_at, None if ids is None else sorted(ids)
            )
            frontier.extend((objects[name], v) for v in earlier.values())
    missing: dict[str, set[str]] = {}
    while frontier:
        wanted: dict[str, set[str]] = {}
        for obj, values in frontier:
            for parent_obj, pid in _references_of(obj, values, prefixes):
                if pid not in objects[parent_obj].records:
                    wanted.setdefault(parent_obj, set()).add(pid)
        frontier = []
        for name, ids in wanted.items():
            obj = objects[name]
            found = tables.records_as_of(conn, name, obj.columns, as_of, sorted(ids))
            gone = ids - set(found)
            if gone and parents_at is not None:
                found.update(tables.records_as_of(conn, name, obj.columns, parents_at, sorted(gone)))
                gone -= set(found)
            if gone:
                missing.setdefault(name, set()).update(gone)
            obj.records.update(found)
            result.objects.setdefault(name, ObjectOutcome(name)).parents += len(found)
            frontier.extend((obj, v) for v in found.values())
    if missing:
        result.notes.append(
            "referenced records not in the backup at as_of (their lookups stay empty): "
            + ", ".join(f"{k}: {len(v)}" for k, v in missing.items())
        )


def _user_map(
    target: SalesforceClient,
    source_users: Sequence[Mapping[str, Any]] | None,
    seeded: Mapping[str, _Object],
    result: SeedResult,
) -> dict[str, str]:
    used = {
        str(v[column_name(f)])
        for obj in seeded.values()
        for v in obj.records.values()
        for f in obj.references
        if str(v.get(column_name(f)) or "").startswith(USER_PREFIX)
    }
    if not used:
        return {}
    if source_users is None:
        result.notes.append(
            f"{len(used)} users referenced (owners and other user lookups) could not be matched: the "
            "source org's users are unknown; the target org sets its defaults (the seeding user)"
        )
        result.users_unmapped = sorted(used)
        return {}
    mapping = match_users(source_users, org_users(target))
    result.users_mapped = len(used & set(mapping))
    result.users_unmapped = sorted(used - set(mapping))
    if result.users_unmapped:
        result.notes.append(
            f"{len(result.users_unmapped)} source users have no match in org "
            f"{target.alias!r} (by username, email or name): their lookups are left to the "
            "target's defaults"
        )
    return mapping


def _existing(
    target: SalesforceClient, seeded: Mapping[str, _Object], id_map: Mapping[str, str]
) -> dict[str, set[str]]:
    """Per object, the target ids of records an earlier run created that are still live in the target."""
    out: dict[str, set[str]] = {}
    for name, obj in seeded.items():
        mapped = [id_map[sid] for sid in obj.records if sid in id_map]
        if mapped:
            found = query_by_ids(target, name, mapped, ["IsDeleted"], include_deleted=True)
            out[name] = {tid for tid, rec in found.items() if not rec.get("IsDeleted")}
    return out


# ===================================================================== writes
def _value(obj: _Object, fname: str, raw: Any) -> Any:
    return canonical(obj.types.get(fname, "string"), raw)


def _write_object(
    conn: psycopg.Connection[Any],
    target: SalesforceClient,
    config: SeedConfig,
    obj: _Object,
    order: InsertOrder,
    id_map: dict[str, str],
    live: set[str],
    user_map: Mapping[str, str],
    prefixes: Mapping[str, str],
    outcome: ObjectOutcome,
    later: dict[str, dict[str, str]],
) -> None:
    creates: list[dict[str, Any]] = []
    create_ids: list[str] = []
    updates: list[dict[str, Any]] = []
    update_ids: list[str] = []
    for sid, values in obj.records.items():
        tid = id_map.get(sid)
        is_update = tid is not None and tid in live
        payload: dict[str, Any] = {}
        for fname in obj.update_fields if is_update else obj.insert_fields:
            raw = values.get(column_name(fname))
            if fname in obj.references and raw:
                raw = str(raw)
                if raw.startswith(USER_PREFIX):
                    mapped = user_map.get(raw)
                elif order.is_deferred(obj.name, fname):
                    later.setdefault(sid, {})[fname] = raw
                    continue
                else:
                    mapped = id_map.get(raw)
                if mapped is None:
                    outcome.unresolved[fname] = outcome.unresolved.get(fname, 0) + 1
                    continue
                payload[fname] = mapped
                continue
            value = _value(obj, fname, raw)
            if obj.masker is not None:
                value = obj.masker.value(fname, value)
            if value is None and not is_update:
                continue  # an insert leaves it empty anyway
            payload[fname] = value
        if is_update:
            updates.append({"Id": tid, **payload})
            update_ids.append(sid)
        else:
            creates.append(payload)
            create_ids.append(sid)

    index = {id(p): sid for p, sid in zip(creates, create_ids, strict=True)}

    def remember(written: list[tuple[Mapping[str, Any], WriteResult]]) -> None:
        pairs = {index[id(rec)]: str(res.id) for rec, res in written if res.id}
        id_map.update(pairs)
        save_id_map(conn, config.source_org, config.target_org, obj.name, pairs)

    if creates:
        for sid, res in zip(create_ids, create_records(target, obj.name, creates, on_written=remember), strict=True):
            _count(outcome, sid, res, "inserted")
    if updates:
        for sid, res in zip(update_ids, update_records(target, obj.name, updates), strict=True):
            _count(outcome, sid, res, "updated")


def _count(outcome: ObjectOutcome, sid: str, res: WriteResult, verb: str) -> None:
    if res.success:
        setattr(outcome, verb, getattr(outcome, verb) + 1)
        return
    outcome.failed += 1
    if len(outcome.failures) < MAX_LISTED_FAILURES:
        outcome.failures.append((sid, res.message))


def _second_pass(
    target: SalesforceClient,
    obj: _Object,
    pending: Mapping[str, Mapping[str, str]],
    id_map: Mapping[str, str],
    outcome: ObjectOutcome,
) -> None:
    updates, sources = [], []
    for sid, refs in pending.items():
        tid = id_map.get(sid)
        if tid is None:
            continue  # the record itself failed to insert (already counted)
        payload = {}
        for fname, parent in refs.items():
            if parent in id_map:
                payload[fname] = id_map[parent]
            else:
                outcome.unresolved[fname] = outcome.unresolved.get(fname, 0) + 1
        if payload:
            updates.append({"Id": tid, **payload})
            sources.append(sid)
    for sid, res in zip(sources, update_records(target, obj.name, updates), strict=True):
        if res.success:
            outcome.second_pass += 1
        else:
            outcome.failed += 1
            if len(outcome.failures) < MAX_LISTED_FAILURES:
                outcome.failures.append((sid, f"setting {', '.join(pending[sid])} after insert: {res.message}"))
