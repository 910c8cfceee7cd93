"""How a restore decides, as plain functions over plain values (no database, no network).

Vocabulary:
- desired: a field's value at `as_of` (from history), or the before-value a restore logged (undo);
- damaged: the value the damage left, i.e. the record's latest backed-up version inside `changed_between`
  (without a window: its latest backed-up version), or the after-value a restore logged (undo);
- latest: the record's latest backed-up version;
- current: what the target org holds now (fetched fresh, never taken from the backup).

A field is `noop` when current == desired; `conflict` when someone changed it after the damage (current
differs from both desired and damaged, or the org's SystemModstamp is newer than the latest backup and
current differs from it); else `restore`. A record is as bad as its worst field; conflicting records are
skipped whole unless `on_conflict: overwrite` (a hand fix is never silently overwritten).
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sf_pipeline.salesforce.values import display


class OnConflict(StrEnum):
    """What a restore does with a record changed in the org after the damage (members named as their values: the
    launchpad shows and takes the names)."""

    skip = "skip"  # leave it as it is now
    overwrite = "overwrite"  # restore it anyway


class Status(StrEnum):
    """How a field (and a record, as its worst field) compares: the `status` stored in sf_pipeline.restore_items."""

    NOOP = "noop"
    RESTORE = "restore"
    CONFLICT = "conflict"
    NOT_RESTORABLE = "not_restorable"


class Action(StrEnum):
    """What apply does to a record (RecordItem.action)."""

    UPDATE = "update"
    UNDELETE = "undelete"
    CREATE = "create"
    NONE = "none"


class Place(StrEnum):
    """Where the record is in the target org."""

    LIVE = "live"
    RECYCLE_BIN = "recycle_bin"
    MISSING = "missing"


class Outcome(StrEnum):
    """What apply did to a record (RecordItem.outcome)."""

    WRITTEN = "written"
    ALREADY_CORRECT = "already_correct"
    SKIPPED_CONFLICT = "skipped_conflict"
    CHANGED_SINCE_PLAN = "changed_since_plan"
    DELETED_SINCE_PLAN = "deleted_since_plan"
    FAILED = "failed"
    NOT_ATTEMPTED = "not_attempted"
    UNDELETED = "undeleted"
    CREATED = "created"
    NOTHING_TO_DO = "nothing_to_do"


# The members under their short names, as the rest of the restore package uses them (a StrEnum member equals,
# hashes and stores as its value: plans stored before read the same).
NOOP, RESTORE, CONFLICT, NOT_RESTORABLE = Status.NOOP, Status.RESTORE, Status.CONFLICT, Status.NOT_RESTORABLE
STATUSES = (RESTORE, CONFLICT, NOT_RESTORABLE, NOOP)
_RANK = {NOOP: 0, NOT_RESTORABLE: 1, RESTORE: 2, CONFLICT: 3}
UPDATE, UNDELETE, CREATE, NONE = Action.UPDATE, Action.UNDELETE, Action.CREATE, Action.NONE
LIVE, RECYCLE_BIN, MISSING = Place.LIVE, Place.RECYCLE_BIN, Place.MISSING
WRITTEN, ALREADY_CORRECT, SKIPPED_CONFLICT = Outcome.WRITTEN, Outcome.ALREADY_CORRECT, Outcome.SKIPPED_CONFLICT
CHANGED_SINCE_PLAN, DELETED_SINCE_PLAN = Outcome.CHANGED_SINCE_PLAN, Outcome.DELETED_SINCE_PLAN
FAILED, NOT_ATTEMPTED, UNDELETED = Outcome.FAILED, Outcome.NOT_ATTEMPTED, Outcome.UNDELETED
CREATED, NOTHING_TO_DO = Outcome.CREATED, Outcome.NOTHING_TO_DO
VERIFIABLE_OUTCOMES = frozenset({WRITTEN, ALREADY_CORRECT, UNDELETED, CREATED})


@dataclass(slots=True)
class FieldItem:
    """One field of one record in a plan."""

    field: str
    current: Any
    desired: Any
    damaged: Any
    status: str
    reason: str | None = None


@dataclass(slots=True)
class RecordItem:
    """One record in a plan: its classification, what apply will do, and (after apply) what it did."""

    record_id: str
    status: str
    action: str
    reason: str | None
    fields: list[FieldItem]
    outcome: str | None = None
    error: str | None = None
    new_id: str | None = None

    def field_item(self, name: str) -> FieldItem | None:
        return next((f for f in self.fields if f.field == name), None)

    def write_count(self, on_conflict: str) -> int:
        """len(writes(on_conflict)), without building it."""
        if self.action == UPDATE and (
            self.status in (NOOP, NOT_RESTORABLE) or (self.status == CONFLICT and on_conflict != OnConflict.overwrite)
        ):
            return 0
        return len(self.writes(on_conflict))

    def writes(self, on_conflict: str) -> dict[str, Any]:
        """The values apply should write: restorable fields, and conflicting ones only with overwrite.

        An undeleted record gets every restorable field (what undelete brought back is checked afresh);
        a re-created one is created with them.
        """
        if self.action in (UNDELETE, CREATE):
            return {f.field: f.desired for f in self.fields if f.status != NOT_RESTORABLE}
        if self.action != UPDATE or self.status in (NOOP, NOT_RESTORABLE):
            return {}
        if self.status == CONFLICT and on_conflict != OnConflict.overwrite:
            return {}
        overwrite = on_conflict == OnConflict.overwrite
        return {f.field: f.desired for f in self.fields if f.status == RESTORE or (overwrite and f.status == CONFLICT)}


def classify_field(desired: Any, damaged: Any, latest: Any, current: Any, *, org_newer: bool) -> tuple[str, str | None]:
    """(status, reason) of one field of a live record; values in canonical form (see values.canonical)."""
    if current == desired:
        return NOOP, None
    if current != damaged:
        return CONFLICT, (
            f"changed in the org after the damage: it holds {display(current)}, the damage left "
            f"{display(damaged)}, the restore wants {display(desired)}"
        )
    if org_newer and current != latest:
        return CONFLICT, (
            f"changed in the org after the last backup: it holds {display(current)}, the backup {display(latest)}"
        )
    return RESTORE, None


def record_status(fields: Sequence[FieldItem]) -> tuple[str, str | None]:
    """A record is as bad as its worst field: conflict > restore > not_restorable > noop."""
    worst, rank = None, -1
    for f in fields:
        if _RANK[f.status] > rank:
            worst, rank = f, _RANK[f.status]
    if worst is None:
        return NOOP, None
    return worst.status, worst.reason


def unseen_reason(org_state: str, backup_saw_deleted: bool | None) -> str | None:
    """Why a record the org did not return must not be re-created, or None when the backup saw it deleted.

    Salesforce answers a query or a retrieve only with the records the acting user may see: a record hidden
    from it by sharing is not returned at all, exactly like a deleted one ("Record-Level Access", Salesforce
    Help; SOQL results honour the running user's sharing in the REST API). So "not returned" is "gone" only
    when the backup itself saw the record deleted (its latest version IsDeleted, or the closing version of a
    vanished record); otherwise it may still exist and re-creating it would duplicate it.
    """
    if org_state != MISSING or backup_saw_deleted is not False:
        return None
    return (
        "could not be checked: the org did not return it to the restore user, but the backup last saw it "
        "live; it may still exist, hidden from that user by sharing or field-level security (or deleted "
        "after the last backup): not re-created. Run the restore as a user who can see every record (View "
        "All Data), or back up the window of its deletion first"
    )


def classify_record(
    record_id: str,
    fields: Sequence[str],
    *,
    desired: Mapping[str, Any] | None,
    damaged: Mapping[str, Any],
    latest: Mapping[str, Any],
    current: Mapping[str, Any] | None,
    org_state: str,
    org_newer: bool = False,
    restore_deleted: bool = False,
    references: Collection[str] = (),
    createable: Collection[str] = (),
    unavailable_parents: Mapping[str, str] | None = None,
    not_restorable_reason: str | None = None,
) -> RecordItem:
    """Classify one record of the selection (see the module docstring for the rules).

    `references` are the reference fields among `fields`; `unavailable_parents` maps parent ids that are
    not live in the org (and that this plan does not bring back) to why; `createable` are the fields a
    re-created record may carry.
    """
    if not_restorable_reason is not None:
        return RecordItem(record_id, NOT_RESTORABLE, NONE, not_restorable_reason, [])
    if desired is None:
        return RecordItem(
            record_id,
            NOT_RESTORABLE,
            NONE,
            "did not exist at as_of (created later, or already deleted); restore never deletes records",
            [],
        )
    parents = unavailable_parents or {}

    def parent_problem(name: str, value: Any) -> str | None:
        return _parent_problem(name, value, references, parents)

    if org_state != LIVE:
        where = (
            "is in the org's recycle bin"
            if org_state == RECYCLE_BIN
            else "is deleted in the org and no longer in its recycle bin"
        )
        if not restore_deleted:
            verb = "undelete" if org_state == RECYCLE_BIN else "re-create"
            return RecordItem(record_id, NOT_RESTORABLE, NONE, f"{where}; set restore_deleted: true to {verb} it", [])
        items = []
        if org_state == RECYCLE_BIN:
            # Undelete brings the record back as it was deleted (as queryAll shows it in the recycle bin, else
            # as last backed up); apply then writes the fields that still differ.
            for f in fields:
                want = desired.get(f)
                was = current.get(f) if current is not None else latest.get(f)
                problem = parent_problem(f, want) if want != was else None
                status = NOT_RESTORABLE if problem else (NOOP if want == was else RESTORE)
                items.append(FieldItem(f, was, want, damaged.get(f), status, problem))
            return RecordItem(record_id, RESTORE, UNDELETE, f"{where}: undelete", items)
        for f in fields:
            want = desired.get(f)
            if want is None:
                continue
            if f not in createable:
                items.append(
                    FieldItem(
                        f,
                        None,
                        want,
                        damaged.get(f),
                        NOT_RESTORABLE,
                        f"{f} is not createable: a re-created record cannot carry it",
                    )
                )
                continue
            problem = parent_problem(f, want)
            items.append(FieldItem(f, None, want, damaged.get(f), NOT_RESTORABLE if problem else RESTORE, problem))
        return RecordItem(record_id, RESTORE, CREATE, f"{where}: re-create with its as_of values", items)

    assert current is not None, "a live record has current values"
    items = []
    for f in fields:
        want, cur, was = desired.get(f), current.get(f), damaged.get(f)
        status, reason = classify_field(want, was, latest.get(f), cur, org_newer=org_newer)
        if status != NOOP and parents:
            problem = _parent_problem(f, want, references, parents)
            if problem:
                status, reason = NOT_RESTORABLE, problem
        items.append(FieldItem(f, cur, want, was, status, reason))
    status, reason = record_status(items)
    return RecordItem(record_id, status, UPDATE, reason, items)


def _parent_problem(name: str, value: Any, references: Collection[str], parents: Mapping[str, str]) -> str | None:
    if value is not None and name in references and value in parents:
        return f"{name} would point to {value}, which {parents[value]}"
    return None


def unavailable_parents(
    wanted: Collection[str], live: Collection[str], deleted: Collection[str], restored_by_plan: Collection[str] = ()
) -> dict[str, str]:
    """Parent ids a restore would point to that are not live in the org and not brought back by the plan."""
    out = {}
    for parent in wanted:
        if parent in live or parent in restored_by_plan:
            continue
        out[parent] = "is deleted in the org" if parent in deleted else "does not exist in the org"
    return out


def changes_to_write(
    record: RecordItem, fresh: Mapping[str, Any] | None, on_conflict: str, remap: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], str]:
    """What to write to one record given its values fetched right before writing, and the outcome otherwise.

    A value that moved since the plan (someone edited the record after the dry run) makes the record a
    conflict, refused whatever on_conflict says: `overwrite` applies to the conflicts the reviewed plan
    showed, never to a value nobody reviewed. `remap` translates ids of re-created records.
    """
    wanted = record.writes(on_conflict)
    if remap:
        wanted = {f: remap.get(v, v) if isinstance(v, str) else v for f, v in wanted.items()}
    if not wanted:
        return {}, SKIPPED_CONFLICT if record.status == CONFLICT else NOTHING_TO_DO
    if fresh is None:
        return {}, DELETED_SINCE_PLAN
    if changed_since_plan(record, fresh, wanted) is not None:
        return {}, CHANGED_SINCE_PLAN
    changes = {name: value for name, value in wanted.items() if fresh.get(name) != value}
    return changes, (WRITTEN if changes else ALREADY_CORRECT)


def changed_since_plan(record: RecordItem, fresh: Mapping[str, Any], wanted: Mapping[str, Any]) -> str | None:
    """Why a record is refused at apply: the first field to write whose org value is neither the one the plan
    saw nor the one to write; None when every such value is as planned."""
    if record.action != UPDATE:
        return None
    for name, value in wanted.items():
        now = fresh.get(name)
        planned = record.field_item(name)
        if now != value and planned is not None and now != planned.current:
            return (
                f"{name} changed in the org since the dry run: the plan saw {display(planned.current)}, the org "
                f"now holds {display(now)}; not written (make a new dry run to restore it)"
            )
    return None


def mismatches(expected: Mapping[str, Any], actual: Mapping[str, Any] | None) -> list[tuple[str, Any, Any]]:
    """(field, expected, actual) for every expected value the org does not hold."""
    if actual is None:
        return [("(record)", "live", "deleted or missing")]
    return [(f, v, actual.get(f)) for f, v in expected.items() if actual.get(f) != v]


def preview_rows(records: Sequence[RecordItem], limit: int = 50) -> list[dict[str, str]]:
    """The first `limit` items worth a look: conflicts, then not restorable, then restores, then noops."""
    order = {CONFLICT: 0, NOT_RESTORABLE: 1, RESTORE: 2, NOOP: 3}
    rows: list[dict[str, str]] = []
    # Each record gives at least one row: the first `limit` records by rank are all that can be shown.
    for rec in heapq.nsmallest(limit, records, key=lambda r: (order[r.status], r.record_id)):
        shown = [f for f in rec.fields if f.status != NOOP] or rec.fields[:1]
        if not shown:
            rows.append(
                {
                    "record_id": rec.record_id,
                    "field": "",
                    "current": "",
                    "desired": "",
                    "classification": rec.status,
                    "action": rec.action,
                    "reason": rec.reason or "",
                }
            )
        for f in shown:
            rows.append(
                {
                    "record_id": rec.record_id,
                    "field": f.field,
                    "current": display(f.current),
                    "desired": display(f.desired),
                    "classification": f.status,
                    "action": rec.action,
                    "reason": f.reason or (rec.reason if rec.action != UPDATE else "") or "",
                }
            )
        if len(rows) >= limit:
            break
    return rows[:limit]


def markdown_table(rows: Sequence[Mapping[str, str]]) -> str:
    if not rows:
        return "(no records)"
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        lines.append("| " + " | ".join(str(row[h]).replace("|", "\\|").replace("\n", " ") for h in head) + " |")
    return "\n".join(lines)
