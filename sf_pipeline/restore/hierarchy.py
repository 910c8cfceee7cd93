"""Whole hierarchies in one run: the selected deleted records, the records deleted with them, every lookup back.

A mass delete of Accounts takes their Contacts, Opportunities and contact roles with it (cascade delete), and
clears the lookups of records that only pointed at them (Cases, Invoices...). With `restore_deleted: true`
(and `with_children`, on by default), one restore brings the whole tree back:

- the tree: the selected records that existed at `as_of` and are deleted in the latest backup, then,
  recursively, every backed-up record that pointed at a record of the tree at `as_of` through a cascade-delete
  relationship (describe's `childRelationships[].cascadeDelete`) and is deleted too;
- per record, from the org's current state: undelete when the recycle bin still holds it (only the records
  deleted on their own: undeleting a parent brings back what was deleted with it), else re-create it with
  its `as_of` values under a new id, kept in `sf_pipeline.id_map` like seeding's. Objects are created parents
  first, in the order describe's references give, cycles broken as seeding does (seeding/order.py): a
  reference that closes a cycle is set by an update once every record exists. Junction objects
  (OpportunityContactRole) come after both their ends;
- re-point: every lookup, on any backed-up object, that pointed at a record of the tree at as_of and that the
  org now holds empty (the delete cleared it) or still pointing at the old id, is set to the record's id now
  (its new id when re-created), records that were never deleted included;
- what cannot be brought back is listed per object with its reason (object not createable or undeletable,
  a parent that cannot come back, ...).

Plan (dry run), apply, verify and undo follow the restore contract: the dry run stores the tree plan (items
per object, see tree_tables.py), `dry_run: false` with `plan:` applies exactly it, verify reads back every
object the run touched, and `undo_of` a tree run puts re-pointed lookups back and deletes (to the recycle
bin) the records the run brought back.

Safe to interrupt, never twice: every undelete, create (sObject Collections or a Bulk insert), deferred reference
and re-pointed lookup is written ahead in the restore's journal (journal.py: audit rows `pending` before the call,
a Bulk job's id as soon as the org gives it, completed after). Applying the plan again first settles what a
killed run left pending against the org, per object of the tree (an undelete read back, a Bulk insert's result
rows matched to the records it re-created, a lost create found by its creator, time and values), then skips
what is done: records live already, records in the id map, references and lookups already holding their target.

API calls grow with the tree, not the org: states and verification read 2,000 records a call (sObject
Collections retrieve, ids in the body), objects with many records to re-point go through one Bulk API 2.0 job per
chunk, and records to re-create one insert job per INSERT_CHUNK records.

Memory stays flat in the tree's size: no phase holds the tree. The dry run finds it in PostgreSQL (tree_tables'
working tables, a level of cascade children at a time by INSERT ... SELECT from the history), asks the org where its
records are a chunk of ids at a time (tables.CHUNK_RECORDS), classifies them and their lookups by SQL and stores the
plan's items straight from there. Apply and verify hold no plan. The plan they apply is the dry run's items in
`sf_pipeline.restore_items` (copied under the run's id), read an object and action at a time in keyset pages of
tables.CHUNK_RECORDS records (INSERT_CHUNK for creates), each page's outcomes stored before the next is read; what
a page needs of the id map (the new ids of its records and of the records they point to) and of the plan (which
references point to records re-created, how each cascade parent fared) is read for it; references to set after the
inserts are noted in a temporary table of the connection; what a re-created record was written with is read back
by verify from the run's journal (its `done` rows). The undo of a tree restore is planned in PostgreSQL alone, from
the undone run's journal.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from sf_pipeline.restore import tables, tree_tables
from sf_pipeline.restore.config import RestoreConfig
from sf_pipeline.restore.current import describe, field_types
from sf_pipeline.restore.decisions import (
    CREATE,
    FAILED,
    LIVE,
    MISSING,
    NONE,
    NOOP,
    NOT_ATTEMPTED,
    NOT_RESTORABLE,
    RECYCLE_BIN,
    RESTORE,
    UNDELETE,
    markdown_table,
)
from sf_pipeline.restore.errors import INTERRUPTIONS, RestoreApplyError, RestoreConfigError, RestoreVerifyError
from sf_pipeline.restore.journal import Journal, Reconciled, reconcile, unchecked_creates
from sf_pipeline.restore.plan import RestorePlan
from sf_pipeline.restore.results import ApplyResult, VerifyResult
from sf_pipeline.salesforce import soql
from sf_pipeline.salesforce.client import SalesforceClient
from sf_pipeline.salesforce.values import converter, csv_text, display, format_datetime
from sf_pipeline.salesforce.writes import (
    WriteResult,
    bulk_create,
    bulk_update,
    create_records,
    current_user_id,
    delete_records,
    fetch_records,
    undelete,
    update_records,
)
from sf_pipeline.warehouse.errors import HistoryNotFoundError
from sf_pipeline.warehouse.history import history_columns
from sf_pipeline.warehouse.id_map import lookup_id_map
from sf_pipeline.warehouse.names import column_name
from sf_pipeline.warehouse.org_identity import verify_org
from sf_pipeline.warehouse.schema import SKIPPED_TYPES

REPOINT = "repoint"
DELETE = "delete"
# Outcomes of the tree's own actions (besides decisions.UNDELETED/CREATED/FAILED/NOT_ATTEMPTED).
REPOINTED = "repointed"
ALREADY_CORRECT = "already_correct"
CHANGED_SINCE_PLAN = "changed_since_plan"
DELETED = "deleted"
BULK_AT = 2_000  # records of one object and action: one Bulk API 2.0 job instead of a call per 200
# Records of one object re-created at once (a chunk of the stored plan read, its as_of values, payloads and journal
# rows held): above BULK_AT one Bulk API 2.0 insert job each. Larger than tables.CHUNK_RECORDS: an insert job costs
# ~10 calls however small (create, upload, close, status polls, results, delete), and memory per record here is a
# few KB (BENCHMARKS.md, restore-plan).
INSERT_CHUNK = 25_000
_WRITES = ("undelete", "create", "delete", REPOINT)  # the actions that write (decisions' UNDELETE, CREATE; DELETE)
USER_PREFIX = "005"


def applies(config: RestoreConfig) -> bool:
    """Whether a restore config is a whole-hierarchy restore (deleted records with their children)."""
    return config.restore_deleted and config.with_children and config.undo_of is None


def undoes_tree(conn: psycopg.Connection[Any], config: RestoreConfig) -> bool:
    """Whether `config` undoes a whole-hierarchy restore."""
    if not config.undo_of:
        return False
    row = tables.plan_row(conn, config.undo_of)
    return row is not None and "tree" in (row["details"] or {})


# ===================================================================== the plan
@dataclass(slots=True)
class TreeRecord:
    """One record of the tree: what apply does to it, and (after apply) what it did."""

    object: str
    record_id: str
    action: str  # undelete | create | noop | none (not restorable) | delete (undo)
    state: str | None = None  # live | recycle_bin | missing, at the dry run
    parent: str | None = None  # the tree record it was deleted with (its cascade parent)
    reason: str | None = None
    outcome: str | None = None
    error: str | None = None
    new_id: str | None = None


@dataclass(slots=True)
class Repoint:
    """One lookup to set again: on `record_id`, `field` gets the id now of `parent` (restore), or `desired`
    back when it still holds `written` (undo)."""

    object: str
    record_id: str
    field: str
    parent: str | None
    written: str | None = None  # undo: the value the undone run wrote
    outcome: str | None = None
    error: str | None = None


@dataclass
class TreePlan:
    """A whole-hierarchy restore (or its undo): records per object, lookups to re-point, insert order."""

    as_of: datetime | None
    order: list[str]
    deferred: dict[str, list[str]]
    records: list[TreeRecord]
    repoints: list[Repoint]
    undo_of: str | None = None
    cannot: dict[str, dict[str, int]] = field(default_factory=dict)  # object -> reason -> records
    # the connection the plan was made or loaded with: verify reads what apply wrote from the run's journal
    conn: psycopg.Connection[Any] | None = field(default=None, repr=False, compare=False)
    # A loaded plan (the one apply writes) holds no records: they stay in sf_pipeline.restore_items under this run
    # id, read a chunk at a time by apply and verify, outcomes stored as they happen. `listed`: its objects.
    run_id: str | None = None
    listed: list[str] = field(default_factory=list)
    # The dry run's (object, action, items), in the order its records and lookups were found, and its records to
    # write: what its summary lists, also once its connection is closed (a plan loaded later reads them from the
    # database instead).
    counted: list[tuple[str, str, int]] | None = field(default=None, repr=False)
    to_write: int | None = field(default=None, repr=False)

    @property
    def stored(self) -> bool:
        return self.run_id is not None

    def objects(self) -> list[str]:
        if self.stored:
            return list(dict.fromkeys([*self.order, *self.listed]))
        return list(dict.fromkeys([*self.order, *(r.object for r in self.records), *(p.object for p in self.repoints)]))

    def action_counts(self) -> list[tuple[str, str, int]]:
        """(object, action, items): records per action, lookups to re-point (from the database when stored)."""
        if self.counted is not None:
            return list(self.counted)
        if self.stored:
            assert self.conn is not None and self.run_id is not None
            return tree_tables.action_counts(self.conn, self.run_id)
        counts: dict[tuple[str, str], int] = {}
        for r in self.records:
            counts[(r.object, r.action)] = counts.get((r.object, r.action), 0) + 1
        for p in self.repoints:
            counts[(p.object, REPOINT)] = counts.get((p.object, REPOINT), 0) + 1
        return [(o, a, n) for (o, a), n in counts.items()]

    def per_object(self) -> dict[str, dict[str, int]]:
        """Per object: how many records undeleted, re-created, already live, not restorable, re-pointed, deleted."""
        out: dict[str, dict[str, int]] = {}
        names = {
            UNDELETE: "undelete",
            CREATE: "re-create",
            NOOP: "already_live",
            NONE: "cannot",
            DELETE: "delete",
            REPOINT: "re-point",
        }
        for obj in self.objects():
            out[obj] = dict.fromkeys(["undelete", "re-create", "re-point", "already_live", "cannot", "delete"], 0)
        for obj, action, n in self.action_counts():
            out.setdefault(obj, dict.fromkeys(names.values(), 0))[names[action]] += n
        return {
            o: {k: v for k, v in c.items() if v or k in ("undelete", "re-create", "re-point")} for o, c in out.items()
        }

    def markdown(self) -> str:
        rows = [{"object": o, **{k: str(v) for k, v in c.items()}} for o, c in self.per_object().items()]
        head = ["object", "undelete", "re-create", "re-point", "already_live", "cannot", "delete"]
        table = markdown_table([{h: r.get(h, "0") for h in head} for r in rows])
        reasons = [
            f"- {o}: {n} record(s) cannot be brought back: {why}"
            for o, by in self.cannot.items()
            for why, n in by.items()
        ]
        return table + ("\n\n" + "\n".join(reasons) if reasons else "")


def plan_tree(
    conn: psycopg.Connection[Any],
    client: SalesforceClient,
    config: RestoreConfig,
    run_id: str,
    *,
    source_org: str,
    notes: list[str],
    started: float,
    calls_before: int,
) -> RestorePlan:
    """The dry run of a whole-hierarchy restore (or of its undo): classify, store, return the plan."""
    if config.undo_of:
        tree = _plan_undo(conn, config, notes, run_id)  # stored as it is made: its items are in the database
    else:
        if source_org != config.target_org:
            raise RestoreConfigError(
                f"with_children restores a hierarchy into the org it was backed up from; the "
                f"backup is of {source_org!r}, target_org is {config.target_org!r}: seed the "
                "sandbox instead, or set with_children: false"
            )
        tree = _plan_restore(conn, client, config, notes, run_id)  # stored as it is made, too
    tree.conn = conn
    plan = RestorePlan(
        run_id=run_id,
        config=config,
        source_org=source_org,
        fields=[],
        create_fields=[],
        field_types={},
        records=[],
        notes=notes,
        tree=tree,
    )
    plan.api_calls = client.api_calls - calls_before
    plan.seconds = time.perf_counter() - started
    summary = plan.summary()
    stored = {
        "run_id": run_id,
        "object_name": config.object,
        "target_org": config.target_org,
        "source_org": source_org,
        "config": config.to_dict(),
        "counts": summary["counts"],
        "details": {
            **{k: v for k, v in summary.items() if k not in ("counts", "preview")},
            "tree": {
                "order": tree.order,
                "deferred": tree.deferred,
                "cannot": tree.cannot,
                "undo_of": tree.undo_of,
                "objects": tree.objects(),
            },
        },
    }
    with conn.transaction():  # its items are stored already: the plan's own row
        conn.execute("DELETE FROM sf_pipeline.restore_plans WHERE run_id = %s", (run_id,))
        tables.insert_plan(conn, **stored)
    tables._commit(conn)
    plan.seconds = time.perf_counter() - started
    return plan


def tree_summary(plan: RestorePlan) -> dict[str, Any]:
    """RestorePlan.summary() of a tree plan: the same keys (the job's metadata reads them), per object counts."""
    tree = plan.tree
    assert tree is not None
    counts = dict.fromkeys((RESTORE, "conflict", NOT_RESTORABLE, NOOP), 0)
    actions: dict[str, int] = {}
    records = 0
    for _obj, action, n in tree.action_counts():
        counts[NOT_RESTORABLE if action == NONE else NOOP if action == NOOP else RESTORE] += n
        if action in (UNDELETE, CREATE, DELETE, REPOINT):
            actions[action] = actions.get(action, 0) + n
        if action != REPOINT:
            records += n
    if REPOINT in actions:  # listed last, as the plan applies them
        actions[REPOINT] = actions.pop(REPOINT)
    if tree.to_write is not None:
        to_write = tree.to_write
    elif tree.stored:
        assert tree.conn is not None and tree.run_id is not None
        to_write = tree_tables.records_to_write(tree.conn, tree.run_id, _WRITES)
    else:  # record ids are unique across objects
        to_write = len(
            {r.record_id for r in tree.records if r.action in (UNDELETE, CREATE, DELETE)}
            | {p.record_id for p in tree.repoints}
        )
    return {
        "run_id": plan.run_id,
        "object": plan.object,
        "target_org": plan.config.target_org,
        "dry_run": plan.config.dry_run,
        "as_of": format_datetime(tree.as_of) if tree.as_of else None,
        "undo_of": plan.config.undo_of,
        "plan_of": plan.plan_of,
        "fields": [],
        "records": records,
        # records: each record written once however many of its lookups are re-pointed (what verify reads back)
        "counts": counts,
        "actions": actions,
        "records_to_write": to_write,
        "values_to_write": sum(actions.values()),
        "fetch_mode": "collections",
        "api_calls": plan.api_calls,
        "seconds": round(plan.seconds, 3),
        "timings": {},
        "notes": plan.notes,
        "tree": tree.per_object(),
        "order": tree.order,
        "deferred": tree.deferred,
        "cannot": tree.cannot,
        "preview": tree.markdown(),
    }


class _Backup:
    """What the backup and the org's describe say about objects, asked once per object."""

    def __init__(self, conn: psycopg.Connection[Any], client: SalesforceClient):
        self.conn, self.client = conn, client
        self._columns: dict[str, list[str] | None] = {}

    def columns(self, obj: str) -> list[str] | None:
        if obj not in self._columns:
            try:
                self._columns[obj] = history_columns(self.conn, obj)
            except HistoryNotFoundError:
                self._columns[obj] = None
        return self._columns[obj]

    def describe(self, obj: str) -> dict[str, Any]:
        return describe(self.client, obj)

    def lookups_to(self, obj: str) -> list[tuple[str, str, bool]]:
        """(child object, field, cascade delete) of every backed-up lookup that points at `obj`."""
        out = []
        for rel in self.describe(obj).get("childRelationships") or []:
            child, fname = rel.get("childSObject"), rel.get("field")
            if not child or not fname:
                continue
            cols = self.columns(child)
            if cols is None or column_name(fname) not in cols:
                continue
            out.append((child, fname, bool(rel.get("cascadeDelete"))))
        return out

    def field(self, obj: str, name: str) -> Mapping[str, Any] | None:
        return next((f for f in self.describe(obj)["fields"] if f["name"] == name), None)


def _selection(config: RestoreConfig) -> tables.Selection:
    if config.changed_between:
        return tables.Selection(
            start=config.changed_between[0],
            end=config.changed_between[1],
            changed_by=config.changed_by,
            record_ids=config.record_ids,
        )
    if config.changed_by or not config.record_ids:
        return tables.Selection(after=config.as_of, changed_by=config.changed_by, record_ids=config.record_ids)
    return tables.Selection(record_ids=config.record_ids)


def _plan_restore(
    conn: psycopg.Connection[Any], client: SalesforceClient, config: RestoreConfig, notes: list[str], run_id: str
) -> TreePlan:
    """The tree of a whole-hierarchy restore, found, classified and stored as plan `run_id`'s items in PostgreSQL
    (tree_tables' working tables): this process holds a chunk of ids at a time, whatever the tree's size."""
    as_of = config.as_of
    assert as_of is not None
    if config.fields:
        notes.append(
            f"fields ({', '.join(config.fields)}) do not apply: a with_children restore brings whole records "
            "back as they were at as_of, and re-points every lookup to them"
        )
    backup = _Backup(conn, client)
    root = backup.describe(config.object)["name"]
    if backup.columns(root) is None:
        raise RestoreConfigError(
            f"no backup history for {root}: is it configured for backup, and has at least one "
            "window been backed up (history/<Object> materialized)?"
        )
    tree_tables.tree_start(conn)
    try:
        return _build_tree(conn, client, config, notes, run_id, backup, root, as_of)
    finally:
        tree_tables.tree_end(conn)


def _build_tree(
    conn: psycopg.Connection[Any],
    client: SalesforceClient,
    config: RestoreConfig,
    notes: list[str],
    run_id: str,
    backup: _Backup,
    root: str,
    as_of: datetime,
) -> TreePlan:
    roots, live_selected = tree_tables.stage_roots(conn, root, _selection(config), as_of)
    if live_selected:
        notes.append(
            f"{live_selected} selected {root} records are not deleted: a with_children restore brings back "
            "deleted records only; restore their fields with with_children: false"
        )
    if not roots:
        raise RestoreConfigError(
            f"empty selection: no {root} record selected by this config existed at as_of "
            f"{format_datetime(as_of)} and is deleted in the backup"
        )

    # ---------------------------------------------------------------- the tree, from the backup, a level at a time
    # Level d + 1: the records that pointed at as_of to a record of level d through a cascade-delete relationship and
    # are deleted too (each with the first such record found as its cascade parent); every other lookup to a record
    # of level d is noted, to be re-pointed.
    depth, found = 0, 0
    while level := tree_tables.level_objects(conn, depth):
        for obj in level:
            for child, fname, cascade in backup.lookups_to(obj):
                found += 1
                tree_tables.stage_children(
                    conn,
                    depth=depth,
                    parent_object=obj,
                    child_object=child,
                    field=fname,
                    cascade=cascade,
                    found=found,
                    as_of=as_of,
                )
        tree_tables.tree_analyzed(conn)  # the next level joins this one's records
        depth += 1
    tree_tables.tree_analyzed(conn, pointers=True)

    # ---------------------------------------------------------------- where each record is in the org
    objects = tree_tables.member_objects(conn)
    rules: dict[str, list[tuple[str | None, str, str]]] = {}
    for obj in objects:
        desc = backup.describe(obj)
        _place_tree_records(conn, client, obj, has_bin=any(f["name"] == "IsDeleted" for f in desc["fields"]))
        rules[obj] = [(LIVE, NOOP, "live in the org already")]
        if desc.get("undeletable"):
            rules[obj].append((RECYCLE_BIN, UNDELETE, "in the recycle bin: undelete"))
        if desc.get("createable"):
            rules[obj].append(
                (
                    None,
                    CREATE,
                    "deleted and no longer in the recycle bin: re-create with its as_of values under a new id",
                )
            )
        else:
            rules[obj].append(
                (None, NONE, f"{obj} is not createable: a record gone from the recycle bin cannot be re-created")
            )
    tree_tables.classify_members(conn, missing=MISSING, rules=rules)
    # Parents first, a level at a time: a record whose cascade parent cannot come back cannot either; one in the
    # recycle bin whose parent is undeleted comes back with it, even when its object cannot be undeleted on its own
    # (describe's `undeletable` is false for OpportunityContactRole); one whose parent is re-created comes back
    # re-created too (it cannot be undeleted under a parent that is gone). Reasons: format() texts of the parent's
    # object and id.
    for level_depth in range(1, depth):
        tree_tables.inherit_parents(
            conn,
            level_depth,
            {
                NONE: "deleted with %s %s, which cannot be brought back",
                UNDELETE: "in the recycle bin, deleted with %s %s: comes back with its undelete",
                CREATE: "deleted with %s %s, which is re-created: re-create it under its new parent",
            },
        )
    per_action: dict[tuple[str, str], int] = {}  # in the order each was first found, as the summary lists them
    cannot: dict[str, dict[str, int]] = {}
    for obj, action, why, n in tree_tables.member_counts(conn, NONE):
        per_action[(obj, action)] = per_action.get((obj, action), 0) + n
        if action == NONE:
            by = cannot.setdefault(obj, {})
            by[why or ""] = by.get(why or "", 0) + n

    # ---------------------------------------------------------------- lookups to point again
    # Those whose record comes back, on a record that is not re-created (it gets its lookups when it is created) nor
    # left: skipped (and noted) where the field is not updateable, or was pointed elsewhere after as_of by someone
    # (not cleared by the delete: left as it is).
    skipped: dict[str, int] = {}
    updateable: list[tuple[str, str]] = []
    for obj, fname, changed, n in tree_tables.pointer_groups(conn):
        spec = backup.field(obj, fname)
        if spec is None or not spec.get("updateable"):
            key = f"{obj}.{fname} is not updateable"
        elif changed:
            key = f"{obj}.{fname} was changed to another record after as_of"
        else:
            updateable.append((obj, fname))
            continue
        skipped[key] = skipped.get(key, 0) + n
    if skipped:
        notes.extend(f"{n} lookup(s) not re-pointed: {why}" for why, n in skipped.items())

    # ---------------------------------------------------------------- insert order (seeding's)
    order, deferred = _insert_order(backup, tree_tables.member_objects(conn, action=CREATE))

    # ---------------------------------------------------------------- the plan's items
    status = {UNDELETE: RESTORE, CREATE: RESTORE, DELETE: RESTORE, NOOP: NOOP, NONE: NOT_RESTORABLE}
    repointed = tree_tables.save_tree_items(
        conn,
        run_id,
        statuses={str(a): str(s) for a, s in status.items()},
        repoint=REPOINT,
        restore=str(RESTORE),
        fields=updateable,
    )
    counted = [(obj, action, n) for (obj, action), n in per_action.items()]
    counted.extend((obj, REPOINT, n) for obj, n in repointed)
    listed = list(dict.fromkeys([*objects, *(obj for obj, _n in repointed)]))
    return TreePlan(
        as_of,
        order,
        deferred,
        [],
        [],
        cannot=cannot,
        conn=conn,
        run_id=run_id,
        listed=listed,
        counted=counted,
        to_write=tree_tables.records_to_write(conn, run_id, _WRITES),
    )


def _place_tree_records(conn: psycopg.Connection[Any], client: SalesforceClient, obj: str, *, has_bin: bool) -> None:
    """Where each of the tree's `obj` records is in the org (live / recycle_bin; the others stay unplaced: missing),
    noted in the dry run's working table: org_states' calls, over ids read from the database a chunk at a time."""
    for ids in tree_tables.member_pages(conn, obj):
        fetched = fetch_records(client, obj, ids, [])
        tree_tables.place_members(conn, obj, [rid for rid, rec in fetched.items() if rec is not None], LIVE)
        del fetched
    bounds = tree_tables.unplaced_range(conn, obj) if has_bin else None
    if bounds:
        for ids in _recycle_bin(client, obj, *bounds):
            tree_tables.place_members(conn, obj, ids, RECYCLE_BIN)


def _insert_order(backup: _Backup, objects: Sequence[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Objects to create parents first and the references set afterwards, as seeding orders them."""
    from sf_pipeline.seeding.errors import SeedingError
    from sf_pipeline.seeding.order import Reference, insert_order

    wanted = set(objects)
    refs = {}
    for obj in objects:
        cols = set(backup.columns(obj) or ())
        refs[obj] = [
            Reference(f["name"], tuple(t for t in f.get("referenceTo") or () if t in wanted), bool(f.get("nillable")))
            for f in backup.describe(obj)["fields"]
            if f.get("type") == "reference"
            and f.get("createable")
            and column_name(f["name"]) in cols
            and any(t in wanted for t in f.get("referenceTo") or ())
        ]
    try:
        order = insert_order(refs)
    except SeedingError as exc:
        raise RestoreConfigError(f"the deleted records cannot be re-created in one run: {exc}") from None
    return order.objects, {o: sorted(f) for o, f in order.deferred.items()}


def org_states(client: SalesforceClient, obj: str, ids: Sequence[str], *, has_bin: bool = True) -> dict[str, str]:
    """live / recycle_bin / missing of each id: a retrieve of 2,000 ids a call (a chunk of tables.CHUNK_RECORDS
    ids at a time: only the ids found live are kept), then the recycle bin's ids (queryAll `IsDeleted = true`)
    for those not live, within their id range: apply asks a chunk of ids at a time, in id order, so the chunks'
    ranges do not overlap and the bin is read once over all of them, not once per chunk (the same `Id >= ...
    AND Id <= ...` bounds as the one-object restore's Bulk reads, current.py)."""
    states: dict[str, str] = {}
    size = tables.CHUNK_RECORDS
    for i in range(0, len(ids), size):
        fetched = fetch_records(client, obj, ids[i : i + size], [])
        states.update((rid, LIVE) for rid, rec in fetched.items() if rec is not None)
        del fetched
    gone = [rid for rid in ids if rid not in states]
    if gone and has_bin:
        wanted = set(gone)
        for page in _recycle_bin(client, obj, min(gone), max(gone)):
            states.update((rid, RECYCLE_BIN) for rid in page if rid in wanted)
    for rid in gone:
        states.setdefault(rid, MISSING)
    return states


def _recycle_bin(client: SalesforceClient, obj: str, low: str, high: str) -> Iterator[list[str]]:
    """The ids of `obj`'s records in the recycle bin from `low` to `high` (queryAll `IsDeleted = true`), a page at
    a time."""
    low, high = soql.record_ids([low, high])
    where = f"IsDeleted = true AND Id >= '{low}' AND Id <= '{high}'"
    for page in client.query_pages(f"SELECT Id FROM {obj} WHERE {where}", include_deleted=True):
        yield [rec["Id"] for rec in page]


# ===================================================================== loading a stored tree plan
def load_tree_plan(
    conn: psycopg.Connection[Any], config: RestoreConfig, run_id: str, row: Mapping[str, Any], notes: list[str]
) -> RestorePlan:
    """The tree plan dry run `config.plan` stored, as run `run_id`'s plan (load_plan checked the config)."""
    details = dict(row["details"] or {})
    stored = details["tree"]
    as_of = config.as_of
    tables.copy_plan(
        conn,
        plan_of=config.plan,
        run_id=run_id,
        config=config.to_dict(),
        details={"plan_of": config.plan, "tree": stored, "notes": notes},
    )
    # No records are read here: apply and verify read them from the copy just stored, a chunk at a time.
    tree = TreePlan(
        as_of,
        list(stored.get("order") or []),
        dict(stored.get("deferred") or {}),
        [],
        [],
        undo_of=stored.get("undo_of"),
        cannot=dict(stored.get("cannot") or {}),
        conn=conn,
        run_id=run_id,
        listed=list(stored.get("objects") or tree_tables.plan_objects(conn, run_id)),
    )
    return RestorePlan(
        run_id=run_id,
        config=config,
        source_org=row["source_org"],
        fields=[],
        create_fields=[],
        field_types={},
        records=[],
        fetch_mode="stored",
        notes=notes,
        plan_of=config.plan,
        tree=tree,
    )


# ===================================================================== apply
def apply_tree(conn: psycopg.Connection[Any], client: SalesforceClient, plan: RestorePlan) -> ApplyResult:
    """Write a tree plan: undelete, re-create parents first, set deferred references, re-point (or, for an
    undo, re-point back and delete); raise RestoreApplyError on any shortfall."""
    tree = plan.tree
    assert tree is not None
    started = time.perf_counter()
    calls_before = client.api_calls
    result = ApplyResult(plan.run_id, dry_run=False)
    alias = plan.config.target_org
    if client.alias != alias:
        raise RestoreConfigError(f"the client is connected to org {client.alias!r} but the plan targets {alias!r}")
    if not tree.stored:
        raise RestoreConfigError("a whole-hierarchy plan is applied as its dry run stored it: load it with load_plan")
    tables.ensure_restore_tables(conn)
    with ExitStack() as locks:
        objects = tree.objects()
        for obj in sorted(objects):  # sorted: two trees lock shared objects in one order
            locks.enter_context(tables.apply_lock(conn, alias, obj, plan.run_id))
        verify_org(conn, client)
        tables.set_plan_status(conn, plan.run_id, "applying")
        tables.reset_outcomes(conn, plan.run_id)  # every outcome is taken afresh, from the org
        run = _TreeRun(conn, client, plan, result)
        try:
            for obj in objects:  # what an earlier run left pending, settled before writing anything
                run.reconcile(obj)
            if tree.undo_of:
                run.repoint_back()
                run.delete()
            else:
                run.undelete()
                run.create()
                run.repoint()
        except INTERRUPTIONS as exc:
            result.interrupted = f"{type(exc).__name__}: {str(exc)[:500]}"
            try:  # settle what the failed call left pending while the org answers; else the next run does
                for obj in objects:
                    run.reconcile(obj)
            except INTERRUPTIONS:
                pass
        finally:
            # Items no phase took an outcome for (every chunk's outcomes are stored as it is done with)
            tree_tables.finish_outcomes(
                conn, plan.run_id, writes=_WRITES, noop=NOOP, not_attempted=NOT_ATTEMPTED, other=NOT_RESTORABLE
            )
            per_object = tree_tables.outcomes_per_object(conn, plan.run_id)
            for _obj, _is_record, outcome, n in per_object:
                result.outcomes[outcome] = result.outcomes.get(outcome, 0) + n
            result.api_calls = client.api_calls - calls_before
            result.seconds = time.perf_counter() - started
            result.id_map = tables.PlanIdMap(conn, plan.run_id, alias)
            tables.set_plan_status(
                conn,
                plan.run_id,
                "applied" if result.success else "apply_failed",
                {"apply": {**result.summary(), "tree": _outcomes_per_object(per_object)}},
            )
    if not result.success:
        failed = "; ".join(f"{rid}: {msg}" for rid, msg in list(result.failed.items())[:20])
        raise RestoreApplyError(
            f"restore {plan.run_id} of the {plan.object} hierarchy in org {alias!r} did not complete "
            f"({result.outcomes}): {failed or ''} {result.interrupted or ''}. Every write is in "
            f"sf_pipeline.restore_audit (written ahead of its call) and re-created ids in sf_pipeline.id_map; apply "
            f"the same plan again (plan: {plan.plan_of or plan.run_id}) to finish: what this run left pending is "
            "settled against the org first, and records already back are not written twice",
            result,
        )
    return result


def _outcomes_per_object(rows: Sequence[tuple[str, bool, str, int]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for obj, is_record, outcome, n in rows:
        per = out.setdefault(obj, {})
        key = f"{outcome}" if is_record else f"re-point {outcome}"
        per[key] = per.get(key, 0) + n
    return out


def _item(row: tuple) -> TreeRecord | Repoint:
    """A stored tree item (tree_tables.item_pages' row) as apply and verify handle it."""
    obj, rid, fname, action, current, desired, damaged, outcome, error = row
    if action == REPOINT:
        return Repoint(obj, rid, fname, desired, current, outcome, error)
    return TreeRecord(obj, rid, action, current, damaged, None, outcome, error)


# The `where`s of tree_tables.item_pages (over restore_items `i`): one object's records of one action; its lookups.
_RECORDS_OF = "i.object = %(obj)s AND i.field IS NULL AND i.action = %(action)s"
_REPOINTS_OF = "i.object = %(obj)s AND i.action = 'repoint'"


@dataclass(frozen=True, slots=True)
class _Payloads:
    """How one object's records become create payloads: its createable backed-up fields (API names and history
    columns), which are references, which references are set after the inserts, each field's converter."""

    names: list[str]
    columns: list[str]
    refs: set[str]
    deferred: set[str]
    convert: dict[str, Any]


class _TreeRun:
    """One apply of a tree plan. Every write goes through the restore's write-ahead journal (journal.py): its
    audit rows are committed `pending` before the call (a Bulk job's id as soon as the org gives it) and
    completed after, so a run killed at any point leaves an exact account, settled against the org (`reconcile`)
    before the next apply writes anything: nothing is undeleted, re-created or re-pointed twice."""

    def __init__(self, conn: psycopg.Connection[Any], client: SalesforceClient, plan: RestorePlan, result: ApplyResult):
        self.conn, self.client, self.plan, self.result = conn, client, plan, result
        self.tree: TreePlan = plan.tree
        self.alias = plan.config.target_org
        self._user: str | None = None
        self._journal: Journal | None = None
        self.backup = _Backup(conn, client)

    @property
    def user(self) -> str | None:
        if self._user is None:
            self._user = current_user_id(self.client) or ""
        return self._user or None

    @property
    def journal(self) -> Journal:
        if self._journal is None:
            self._journal = Journal(self.conn, self.plan.run_id, self.alias, self.user)
        return self._journal

    def reconcile(self, obj: str) -> Reconciled:
        """Settle the journal rows of `obj` left pending (by an earlier run, or a call of this one whose answer
        was lost) against the org, before writing to it."""
        found = reconcile(self.conn, self.client, self.alias, obj)
        for state, n in found.counts.items():
            self.result.reconciled[state] = self.result.reconciled.get(state, 0) + n
        self.result.unchecked.update(found.unchecked)
        if found.counts:
            self.plan.notes.append(
                f"settled {sum(found.counts.values())} write(s) to {obj} an earlier call left pending: {found.counts}"
            )
        return found

    def audit(self, obj: str, rows: Sequence[tuple[str, str, Any, Any, str]]) -> None:
        """Done audit rows of what no call of ours wrote directly (records a parent's undelete brought back, records
        found deleted by an undo), or of deletes (an undo's; deleting twice changes nothing)."""
        if rows:
            user = self.user
            tables.write_audit(
                self.conn,
                [
                    (self.plan.run_id, self.alias, obj, rid, f, before, after, op, user)
                    for rid, f, before, after, op in rows
                ],
            )

    def fail(self, item: TreeRecord | Repoint, message: str) -> None:
        item.outcome, item.error = FAILED, message
        self.result.failed[item.record_id] = message

    def pages(self, where: str, *, chunk: int | None = None, **params: Any) -> Iterator[list[TreeRecord | Repoint]]:
        """The plan's items matching `where` (SQL over restore_items `i`), a chunk of records at a time (each record's
        items together); each chunk's outcomes are stored once the caller is done with it, also when it stops
        half-way (use it under `closing`): the next phase, the run's counts and verify read them there."""
        items: list[TreeRecord | Repoint] = []
        try:
            for rows in tree_tables.item_pages(self.conn, self.plan.run_id, sql.SQL(where), params, chunk=chunk):
                items = [_item(row) for row in rows]
                del rows
                yield items
                self.save(items)
                items = []
        finally:
            if items:
                self.save(items)

    def save(self, items: Iterable[TreeRecord | Repoint]) -> None:
        tables.set_outcomes(
            self.conn,
            self.plan.run_id,
            (
                (i.record_id, i.field if isinstance(i, Repoint) else None, i.outcome, i.error)
                for i in items
                if i.outcome is not None
            ),
            per_field=True,
        )

    def records(self, obj: str, action: str, also: str = "", **params: Any) -> Iterator[list[TreeRecord]]:
        """One object's records of one `action` (and `also`, more SQL), a chunk at a time (see `pages`)."""
        where = _RECORDS_OF + (f" AND {also}" if also else "")
        yield from self.pages(where, obj=obj, action=action, **params)  # type: ignore[misc]

    # ----------------------------------------------------------------- undelete
    def undelete(self) -> None:
        """Undelete the records deleted on their own; those deleted with them come back with them. Records live
        already (an earlier run of this plan undeleted them) are not undeleted twice."""
        objects = self.tree.objects()
        for obj in objects:  # the records deleted on their own (their parent, if any, is not undeleted)
            with closing(
                self.records(obj, UNDELETE, f"NOT {tree_tables.PARENT_HAS_ACTION}", parent_action=UNDELETE)
            ) as pages:
                for tops in pages:
                    live = {
                        rid
                        for rid, rec in fetch_records(self.client, obj, [r.record_id for r in tops], []).items()
                        if rec is not None
                    }
                    for r in tops:
                        if r.record_id in live:
                            r.outcome = "undeleted"
                    self._undelete(obj, [r for r in tops if r.outcome is None])
        for obj in objects:  # the records deleted with a parent that was undeleted
            with closing(self.records(obj, UNDELETE, tree_tables.PARENT_HAS_ACTION, parent_action=UNDELETE)) as pages:
                for recs in pages:
                    states = org_states(self.client, obj, [r.record_id for r in recs])
                    back = [r for r in recs if states.get(r.record_id) == LIVE]
                    for r in back:
                        r.outcome = "undeleted"
                    # brought back by their parent's undelete (a call of this run or of a killed one): logged once
                    logged = tree_tables.audited(self.conn, self.alias, obj, "undelete", [r.record_id for r in back])
                    self.audit(
                        obj,
                        [
                            (r.record_id, "IsDeleted", True, False, "undelete")
                            for r in back
                            if r.record_id not in logged
                        ],
                    )
                    self._undelete(obj, [r for r in recs if states.get(r.record_id) == RECYCLE_BIN])
                    for r in recs:
                        if r.outcome is None and states.get(r.record_id) == MISSING:
                            self.fail(r, "left the recycle bin since the dry run: make a new dry run to re-create it")

    def _undelete(self, obj: str, records: Sequence[TreeRecord]) -> None:
        if not records:
            return
        log = self.journal.calls(obj, "undelete")
        results = undelete(self.client, [r.record_id for r in records], journal=log)
        # A refused undelete may repeat an attempt the org carried out (a retried SOAP call): read it back.
        back = self.reconcile(obj).undeleted if log.unknown_ids else set()
        for rec, res in zip(records, results, strict=True):
            if res.success or rec.record_id in back:
                rec.outcome = "undeleted"
            else:
                self.fail(rec, res.message)

    # ----------------------------------------------------------------- re-create
    def create(self) -> None:
        """Re-create the records gone from the recycle bin, objects parents first, INSERT_CHUNK records of an object
        at a time; then set the references noted along the way (to records created later, or closing a cycle)."""
        tree_tables.deferred_start(self.conn)
        try:
            for obj in self.tree.order:
                spec: _Payloads | None = None
                with closing(self.records(obj, CREATE, chunk=INSERT_CHUNK)) as pages:
                    for recs in pages:
                        spec = spec or self._payloads(obj)
                        self._create_chunk(obj, recs, spec)  # type: ignore[arg-type]
            for obj in self.tree.order:
                for waiting in tree_tables.deferred_pages(self.conn, obj):
                    self._set_deferred(obj, waiting)
        finally:
            tree_tables.deferred_end(self.conn)

    def _payloads(self, obj: str) -> _Payloads:
        desc = self.backup.describe(obj)
        types = field_types(desc["fields"])
        cols = set(self.backup.columns(obj) or ())
        writable = [
            f
            for f in desc["fields"]
            if f.get("createable") and str(f["type"]) not in SKIPPED_TYPES and column_name(f["name"]) in cols
        ]
        names = [f["name"] for f in writable]
        return _Payloads(
            names=names,
            columns=[column_name(n) for n in names],
            refs={f["name"] for f in writable if f.get("type") == "reference"},
            deferred=set(self.tree.deferred.get(obj, ())),
            convert={n: converter(types.get(n, "string")) for n in names},
        )

    def _create_chunk(self, obj: str, recs: Sequence[TreeRecord], spec: _Payloads) -> None:
        """Create one chunk of one object's records (parents' new ids already known): one Bulk API 2.0 job (or
        sObject Collections calls below BULK_AT); their references to records of the tree not created yet are noted
        to be set once every record exists (tree_tables.deferred_add). What the chunk needs of the id map and of the
        plan (which references point to records re-created) is read for it."""
        alias = self.alias
        # A record an earlier run re-created (its pair is in the id map, written by the journal) and still live is
        # not created twice; one whose creation an earlier run could not settle is never created again blindly.
        earlier = lookup_id_map(self.conn, alias, alias, [r.record_id for r in recs])
        if earlier:
            live = org_states(self.client, obj, list(earlier.values()))
            for r in recs:
                if r.record_id in earlier and live.get(earlier[r.record_id]) == LIVE:
                    r.outcome, r.new_id = ALREADY_CORRECT, earlier[r.record_id]
        del earlier
        unsettled = unchecked_creates(self.conn, alias, obj, [r.record_id for r in recs if r.outcome is None])
        for r in recs:
            if r.outcome is None and r.record_id in unsettled:
                self.fail(r, unsettled[r.record_id])
                self.result.unchecked[r.record_id] = unsettled[r.record_id]
        again = [r for r in recs if r.outcome == ALREADY_CORRECT]
        todo = [r for r in recs if r.outcome is None]
        if not todo and not again:
            return
        values = tree_tables.values_as_of(
            self.conn, obj, spec.columns, [r.record_id for r in [*todo, *again]], self.tree.as_of
        )
        found: list[tuple[TreeRecord, dict[str, Any]]] = []
        pointed: set[str] = set()  # the ids the chunk's references hold
        for r in [*todo, *again]:
            row = values.pop(r.record_id, None)
            if row is None:
                if r.outcome is None:
                    self.fail(r, f"no version of this record at as_of {format_datetime(self.tree.as_of)} in the backup")
                continue
            converted = {}
            for n, col in zip(spec.names, spec.columns, strict=True):
                v = spec.convert[n](row[col])
                if v is None:
                    continue
                converted[n] = v
                if n in spec.refs and not v.startswith(USER_PREFIX):
                    pointed.add(v)
            found.append((r, converted))
        del values
        creating = tables.plan_record_ids(self.conn, self.plan.run_id, action=CREATE, among=list(pointed))
        id_map = lookup_id_map(self.conn, alias, alias, pointed)  # records this run (or an earlier one) re-created
        del pointed
        payloads: list[dict[str, Any]] = []
        sending: list[tuple[TreeRecord, dict[str, str]]] = []  # the record of each payload
        waiting: list[tuple[TreeRecord, dict[str, str]]] = []  # every record, with the references it sets later
        for r, converted in found:
            payload: dict[str, Any] = {}
            later: dict[str, str] = {}
            for n, v in converted.items():
                if n in spec.refs and not v.startswith(USER_PREFIX):
                    if v in creating and (n in spec.deferred or v not in id_map or r.outcome == ALREADY_CORRECT):
                        # set once the record it points to exists (for a record an earlier run created: checked
                        # again, it may have been killed before setting it)
                        later[n] = v
                        continue
                    v = id_map.get(v, v)
                payload[n] = v
            if r.outcome == ALREADY_CORRECT:
                if later:
                    waiting.append((r, later))
            else:
                payloads.append(payload)
                sending.append((r, later))
                waiting.append((r, later))
        del found, creating, id_map
        by_payload = {id(p): w for p, w in zip(payloads, sending, strict=True)}
        del sending

        # What was written is in the journal (its rows completed `done` under the new id): verify reads it there;
        # the new ids are in sf_pipeline.id_map (the journal writes them as each create is confirmed).
        def created(pairs: Sequence[tuple[Mapping[str, Any], WriteResult]]) -> None:
            for payload, res in pairs:
                rec, _later = by_payload[id(payload)]
                rec.outcome, rec.new_id = "created", res.id

        for _attempt in range(3):  # a lost answer: reconcile, then send only what the org did not create
            if not payloads:
                break
            log = self.journal.calls(
                obj, "create", record_id=lambda p: by_payload[id(p)][0].record_id, created_after=self.tree.as_of
            )
            if len(payloads) >= BULK_AT:
                results = bulk_create(self.client, obj, payloads, csv_text, journal=log)
                created([(p, r) for p, r in zip(payloads, results, strict=True) if r.success])
            else:
                results = create_records(self.client, obj, payloads, on_written=created, journal=log)
            lost = []
            for payload, res in zip(payloads, results, strict=True):
                if res.outcome_unknown:
                    lost.append(payload)
                elif not res.success:
                    self.fail(by_payload[id(payload)][0], res.message)
            if not lost:
                break
            # The org may have created them: find what it did before sending anything again.
            found_now = self.reconcile(obj)
            payloads = []
            for payload in lost:
                rec, _later = by_payload[id(payload)]
                if rec.record_id in found_now.created:
                    created([(payload, WriteResult(found_now.created[rec.record_id], True))])
                elif rec.record_id in found_now.unchecked:
                    self.fail(rec, found_now.unchecked[rec.record_id])
                else:
                    payloads.append(payload)
        for rec, _later in by_payload.values():
            if rec.outcome is None:  # lost again on every attempt, and not found in the org
                self.fail(rec, "the org's answer to its creation was lost three times")
        tree_tables.deferred_add(
            self.conn,
            obj,
            (
                (r.record_id, f, v)
                for r, later in waiting
                if later and r.outcome in ("created", ALREADY_CORRECT)
                for f, v in later.items()
            ),
        )

    def _set_deferred(self, obj: str, waiting: list[tuple[str, dict[str, str]]]) -> None:
        """References that closed a cycle (or pointed to a record created later), of one chunk of re-created
        records (old id, {field: old id of the record it points to}): set once every record exists. The org's values
        are read first: a reference already set (by an earlier run of the plan) is not written again, one someone
        set to another record since is left (and noted)."""
        ids = [rid for rid, _later in waiting]
        id_map = lookup_id_map(
            self.conn, self.alias, self.alias, [*ids, *(v for _r, later in waiting for v in later.values())]
        )
        wanted = [
            (TreeRecord(obj, rid, CREATE, new_id=id_map[rid]), {f: id_map[v] for f, v in later.items() if v in id_map})
            for rid, later in waiting
            if rid in id_map
        ]
        wanted = [(rec, changes) for rec, changes in wanted if changes]
        del id_map
        if not wanted:
            return
        fields = sorted({f for _rec, changes in wanted for f in changes})
        fresh = fetch_records(self.client, obj, [rec.new_id for rec, _c in wanted], fields)
        payloads, owners = [], []
        befores: dict[str, dict[str, Any]] = {}
        for rec, changes in wanted:
            now = fresh.get(rec.new_id) or {}
            todo = {f: v for f, v in changes.items() if now.get(f) is None}
            for f, v in changes.items():
                if now.get(f) not in (None, v):
                    self.plan.notes.append(f"{obj} {rec.new_id}: {f} not set to {v}, it now holds {now.get(f)}")
            if todo:
                payloads.append({"Id": rec.new_id, **todo})
                owners.append(rec)
                befores[rec.new_id] = {f: now.get(f) for f in todo}
        del fresh
        self._update(obj, payloads, owners, "update", befores)
        self.save(r for r in owners if r.outcome == FAILED)  # the record's outcome: its references failed

    def _update(
        self,
        obj: str,
        payloads: list[dict[str, Any]],
        owners: list[TreeRecord | Repoint],
        operation: str,
        befores: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> list[WriteResult]:
        if not payloads:
            return []

        def written(pairs: list[tuple[Mapping[str, Any], WriteResult]]) -> None:
            if operation == REPOINT:
                self.result.repointed += sum(len(p) - 1 for p, _ in pairs)

        log = self.journal.calls(obj, operation, befores=befores)
        if len(payloads) >= BULK_AT:
            results = bulk_update(self.client, obj, payloads, csv_text, on_written=written, journal=log)
        else:
            results = update_records(self.client, obj, payloads, on_written=written, journal=log)
        for owner, res in zip(owners, results, strict=True):
            if not res.success:
                self.fail(owner, f"{operation}: {res.message}")
        return results

    # ----------------------------------------------------------------- re-point
    def repoint(self) -> None:
        """Set every planned lookup to the id now of the tree record it pointed to at as_of, where the org holds
        it empty or still on the old id; a lookup someone set to another record since is left, and reported.
        Per object, a chunk of records at a time (each record's lookups together, in one payload)."""
        for obj in self.tree.objects():
            with closing(self.pages(_REPOINTS_OF, obj=obj)) as pages:
                for items in pages:
                    parents = tree_tables.record_states(
                        self.conn, self.plan.run_id, {p.parent for p in items if p.parent}
                    )
                    todo: list[Repoint] = []
                    for p in items:
                        action, outcome = parents.get(p.parent or "", (None, None))
                        if (
                            action is not None
                            and outcome not in ("undeleted", "created", ALREADY_CORRECT)
                            and action != NOOP
                        ):
                            p.outcome, p.error = NOT_ATTEMPTED, f"{p.parent} did not come back"
                        else:
                            todo.append(p)  # type: ignore[arg-type]
                    if todo:
                        self._repoint_chunk(obj, todo)

    def _repoint_chunk(self, obj: str, items: Sequence[Repoint]) -> None:
        id_map = lookup_id_map(self.conn, self.alias, self.alias, [p.parent for p in items if p.parent])
        fields = sorted({p.field for p in items})
        fresh = fetch_records(self.client, obj, list(dict.fromkeys(p.record_id for p in items)), fields)
        merged: dict[str, dict[str, Any]] = {}
        owners: dict[str, list[Repoint]] = {}
        for p in items:
            now = fresh.get(p.record_id)
            target = id_map.get(p.parent or "", p.parent)
            if now is None:
                p.outcome, p.error = FAILED, "the record is deleted or not visible in the org"
                self.result.failed[p.record_id] = f"re-pointing {obj}.{p.field}: {p.error}"
                continue
            held = now.get(p.field)
            if held == target:
                p.outcome = ALREADY_CORRECT
            elif held in (None, p.parent):
                merged.setdefault(p.record_id, {"Id": p.record_id})[p.field] = target
                owners.setdefault(p.record_id, []).append(p)
            else:
                p.outcome, p.error = (
                    CHANGED_SINCE_PLAN,
                    (f"{p.field} now holds {held}, set by someone since; not re-pointed to {target}"),
                )
                self.result.changed[p.record_id] = p.error
        self._send_repoints(obj, merged, owners, REPOINT, fresh, report_failures=True)

    # ----------------------------------------------------------------- undo
    def repoint_back(self) -> None:
        for obj in self.tree.objects():
            with closing(self.pages(_REPOINTS_OF, obj=obj)) as pages:
                for items in pages:
                    self._repoint_back_chunk(obj, items)  # type: ignore[arg-type]

    def _repoint_back_chunk(self, obj: str, items: Sequence[Repoint]) -> None:
        fresh = fetch_records(
            self.client, obj, list(dict.fromkeys(p.record_id for p in items)), sorted({p.field for p in items})
        )
        merged: dict[str, dict[str, Any]] = {}
        owners: dict[str, list[Repoint]] = {}
        for p in items:
            now = fresh.get(p.record_id)
            if now is None:
                p.outcome = ALREADY_CORRECT if p.parent is None else FAILED
                continue
            held = now.get(p.field)
            if held == p.parent:
                p.outcome = ALREADY_CORRECT
            elif held == p.written:
                merged.setdefault(p.record_id, {"Id": p.record_id})[p.field] = p.parent
                owners.setdefault(p.record_id, []).append(p)
            else:
                p.outcome, p.error = (
                    CHANGED_SINCE_PLAN,
                    f"{p.field} now holds {held}, not what the undone run wrote ({p.written}): left as it is",
                )
                self.result.changed[p.record_id] = p.error
        self._send_repoints(obj, merged, owners, "update", fresh, report_failures=False)

    def _send_repoints(
        self,
        obj: str,
        merged: dict[str, dict[str, Any]],
        owners: dict[str, list[Repoint]],
        op: str,
        fresh: Mapping[str, Any],
        report_failures: bool,
    ) -> None:
        """Write the merged lookups of one chunk (one payload per record, its re-points as `owners`), journaled as
        `op`; mark what was written, and with `report_failures` fail what was not."""
        payloads = list(merged.values())
        results = self._update(
            obj,
            payloads,
            [owners[p["Id"]][0] for p in payloads],
            op,
            {rid: (fresh.get(rid) or {}) for rid in merged},
        )
        for payload, res in zip(payloads, results, strict=True):
            for p in owners[payload["Id"]]:
                if res.success:
                    p.outcome = REPOINTED
                elif report_failures and p.outcome is None:
                    self.fail(p, f"re-pointing {obj}.{p.field}: {res.message}")

    def delete(self) -> None:
        """Delete (to the recycle bin) what the undone run brought back; parents first, so that the records
        deleted with them go with them, then whatever is still live."""
        objects = self.tree.objects()
        for obj in objects:  # the records not deleted with another record the undo deletes
            with closing(
                self.records(obj, DELETE, f"NOT {tree_tables.PARENT_HAS_ACTION}", parent_action=DELETE)
            ) as pages:
                for tops in pages:
                    self._delete(tops)  # type: ignore[arg-type]
        for obj in objects:  # the others: gone with their parent, else deleted now
            with closing(self.records(obj, DELETE, "i.outcome IS NULL")) as pages:
                for recs in pages:
                    live = {
                        rid
                        for rid, rec in fetch_records(self.client, obj, [r.record_id for r in recs], []).items()
                        if rec is not None
                    }
                    still = []
                    for r in recs:
                        if r.record_id in live:
                            still.append(r)
                        else:
                            r.outcome = DELETED
                    self.audit(
                        obj, [(r.record_id, "IsDeleted", False, True, "delete") for r in recs if r.outcome == DELETED]
                    )
                    self._delete(still)  # type: ignore[arg-type]

    def _delete(self, records: Sequence[TreeRecord]) -> None:
        if not records:
            return
        rows: dict[str, list[tuple]] = {}
        for rec, res in zip(records, delete_records(self.client, [r.record_id for r in records]), strict=True):
            if res.success or "ENTITY_IS_DELETED" in res.codes:
                rec.outcome = DELETED
                rows.setdefault(rec.object, []).append((rec.record_id, "IsDeleted", False, True, "delete"))
            else:
                self.fail(rec, res.message)
        for obj, audit in rows.items():
            self.audit(obj, audit)


# ===================================================================== undo plan
def _plan_undo(conn: psycopg.Connection[Any], config: RestoreConfig, notes: list[str], run_id: str) -> TreePlan:
    """The undo of a tree restore, stored as plan `run_id`'s items straight from the undone run's journal
    (tree_tables.save_undo_items): nothing of it is held here, however large the restore it undoes."""
    run = config.undo_of
    undone = tables.plan_row(conn, run)
    assert undone is not None
    if undone["target_org"] != config.target_org:
        raise RestoreConfigError(
            f"undo_of: run {run!r} wrote to org {undone['target_org']!r}; set target_org: {undone['target_org']}"
        )
    if not tree_tables.audited_any(conn, run):
        raise RestoreConfigError(
            f"undo_of: run {run!r} wrote nothing (a dry run, or nothing needed restoring), so there is nothing to undo"
        )
    tables.clear_plan(conn, run_id)
    brought, repoints, objects = tree_tables.save_undo_items(conn, run_id, run, config.record_ids)
    notes.append(
        f"undoes run {run}: {repoints} lookup(s) it re-pointed are put back where they still hold what "
        f"it wrote, and the {brought} record(s) it brought back are deleted again (to the recycle bin, "
        "from which a later restore can undelete them)"
    )
    return TreePlan(None, objects, {}, [], [], undo_of=run, conn=conn, run_id=run_id, listed=objects)


# ===================================================================== verify
def verify_tree(
    client: SalesforceClient, plan: RestorePlan, *, conn: psycopg.Connection[Any] | None = None
) -> VerifyResult:
    """Read back every object the run touched: records brought back live (re-created ones with the values
    written, as the run's journal holds them), lookups holding the id written, records an undo deleted gone from
    the live records. Object by object, a chunk of records at a time (tables.CHUNK_RECORDS): the values a chunk
    is compared with are read from PostgreSQL for that chunk, never held for the whole tree."""
    tree = plan.tree
    assert tree is not None
    db = conn if conn is not None else tree.conn
    if not tree.stored or db is None:
        raise RestoreConfigError("verifying a whole-hierarchy restore reads its stored plan from PostgreSQL: pass conn")
    calls_before = client.api_calls
    result = VerifyResult(plan.run_id, dry_run=False)
    backup = _Backup(db, client)
    alias = plan.config.target_org
    # Per object, a chunk of records at a time: a record's row (what apply did to it) and its lookups re-pointed.
    where = sql.SQL(
        "i.object = %(obj)s AND ((i.field IS NULL AND i.outcome = ANY(%(records)s)) "
        "OR (i.action = 'repoint' AND i.outcome = ANY(%(repoints)s)))"
    )
    params = {"records": ["undeleted", ALREADY_CORRECT, "created", DELETED], "repoints": [REPOINTED, ALREADY_CORRECT]}
    for obj in tree.objects():
        types: Mapping[str, str] | None = None
        for rows in tree_tables.item_pages(db, plan.run_id, where, {**params, "obj": obj}):
            items = [_item(row) for row in rows]
            del rows
            # the new ids of the records re-created, and of the records lookups were re-pointed to
            id_map = lookup_id_map(
                db,
                alias,
                alias,
                [
                    *(i.record_id for i in items if isinstance(i, TreeRecord) and i.action == CREATE),
                    *(i.parent for i in items if isinstance(i, Repoint) and i.parent and not tree.undo_of),
                ],
            )
            # id -> what to compare: _LIVE, _WRITTEN (the values the journal holds), None (must be gone), or
            # _Expected (the lookups re-pointed on it)
            expected: dict[str, Any] = {}
            for r in items:
                if not isinstance(r, TreeRecord):
                    continue
                new_id = id_map.get(r.record_id) if r.action == CREATE else None
                if r.outcome in ("undeleted", ALREADY_CORRECT) and r.action != DELETE:
                    expected.setdefault(new_id or r.record_id, _LIVE)
                elif r.outcome == "created" and new_id:
                    expected[new_id] = _WRITTEN
                elif r.outcome == DELETED:
                    expected[r.record_id] = None
            for p in items:
                if not isinstance(p, Repoint):
                    continue
                want = p.parent if tree.undo_of else id_map.get(p.parent or "", p.parent)
                values = expected.get(p.record_id, _LIVE)
                if values is None:
                    continue
                if values is _LIVE or values is _WRITTEN:
                    values = expected[p.record_id] = _Expected(written=values is _WRITTEN)
                values.fields[p.field] = want
            del items, id_map
            if not expected:
                continue
            if types is None:
                types = field_types(backup.describe(obj)["fields"])
            _verify_chunk(client, db, plan.run_id, obj, expected, types, result)
            del expected
    result.api_calls = client.api_calls - calls_before
    if conn is not None:
        tables.set_plan_status(
            conn, plan.run_id, "verified" if result.success else "verify_failed", {"verify": result.summary()}
        )
    if not result.success:
        shown = "; ".join(
            f"{rid}: " + ", ".join(f"{f} expected {display(e)} found {display(a)}" for f, e, a in d)
            for rid, d in list(result.mismatched.items())[:20]
        )
        raise RestoreVerifyError(
            f"{len(result.mismatched)} of {result.checked} records of the restored "
            f"{plan.object} hierarchy do not hold what was written: {shown}",
            result,
        )
    return result


_LIVE = object()  # verify: the record is live (undeleted, or found live already)
_WRITTEN = object()  # verify: the record was re-created by this run: live, holding what its journal says was written


@dataclass
class _Expected:
    """verify: lookups re-pointed on a record (and whether this run also re-created it)."""

    written: bool
    fields: dict[str, Any] = field(default_factory=dict)


def _verify_chunk(
    client: SalesforceClient,
    db: psycopg.Connection[Any] | None,
    run_id: str,
    obj: str,
    chunk: dict[str, Any],
    types: Mapping[str, str],
    result: VerifyResult,
) -> None:
    """Compare one chunk of one object's records with the org (module docstring of verify_tree)."""
    created = [rid for rid, e in chunk.items() if e is _WRITTEN or (isinstance(e, _Expected) and e.written)]
    if created and db is None:
        raise RestoreConfigError("verifying a whole-hierarchy restore reads what it wrote from PostgreSQL: pass conn")
    journal = tree_tables.written_values(db, run_id, obj, created) if created else {}
    values: dict[str, dict[str, Any] | None] = {}
    for rid, e in chunk.items():
        if e is None:
            values[rid] = None
        elif e is _LIVE:
            values[rid] = {}
        elif e is _WRITTEN:
            values[rid] = journal.get(rid, {})
        else:
            values[rid] = {**(journal.get(rid, {}) if e.written else {}), **e.fields}
    del journal
    fields = sorted({f for v in values.values() if v for f in v})
    convert = {f: converter(types.get(f, "string")) for f in fields}
    fresh = fetch_records(client, obj, list(values), fields)
    for rid, want in values.items():
        now = fresh.get(rid)
        if want is None:
            if now is not None:
                result.mismatched[rid] = [("(record)", "deleted", "live")]
            continue
        if now is None:
            result.mismatched[rid] = [("(record)", "live", "deleted or missing")]
            continue
        diffs = [
            (f, convert[f](v), convert[f](now.get(f)))
            for f, v in want.items()
            if convert[f](now.get(f)) != convert[f](v)
        ]
        if diffs:
            result.mismatched[rid] = diffs
    result.checked += len(values)


__all__ = [
    "TreePlan",
    "applies",
    "apply_tree",
    "load_tree_plan",
    "org_states",
    "plan_tree",
    "tree_summary",
    "undoes_tree",
    "verify_tree",
]
