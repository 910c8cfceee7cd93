"""Plan a restore: which records, which values, and what the target org holds now. Writes nothing to any org.

Desired values come from the backup history (the version valid at `as_of`), or for `undo_of` from the
audit of an earlier restore (its before-values). Current values are fetched fresh from the target org.
Every selected record is classified (decisions.py) and the plan is stored in `sf_pipeline.restore_plans`
and `sf_pipeline.restore_items`, so a dry run leaves a reviewable record of what a real run would write;
a run with `dry_run: false, plan: <that dry run's id>` writes exactly that stored plan (reviewed.py).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from sf_pipeline.restore import tables
from sf_pipeline.restore.config import RestoreConfig
from sf_pipeline.restore.current import (
    DEFAULT_BULK_THRESHOLD,
    GONE,
    Prefetch,
    describe,
    fetch_current,
    field_types,
    parent_states,
)
from sf_pipeline.restore.decisions import (
    LIVE,
    MISSING,
    STATUSES,
    UPDATE,
    RecordItem,
    classify_record,
    count_records,
    markdown_table,
    preview_rows,
    unavailable_parents,
    unseen_reason,
)
from sf_pipeline.restore.errors import RestoreConfigError
from sf_pipeline.salesforce.client import SalesforceClient
from sf_pipeline.salesforce.extract import soql_datetime
from sf_pipeline.salesforce.values import canonical, converter, format_datetime
from sf_pipeline.warehouse.errors import HistoryNotFoundError
from sf_pipeline.warehouse.history import history_columns
from sf_pipeline.warehouse.id_map import load_id_map
from sf_pipeline.warehouse.names import HISTORY_SCHEMA, column_name, table_name
from sf_pipeline.warehouse.schema import SKIPPED_TYPES, table_columns

PREVIEW_ROWS = 50


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the backup (or an earlier restore's audit) says about one selected record."""

    desired: Mapping[str, Any] | None
    damaged: Mapping[str, Any]
    latest: Mapping[str, Any]
    latest_modstamp: datetime | None = None
    not_restorable: str | None = None
    latest_deleted: bool | None = None  # the latest backed-up version is deleted (None: unknown, e.g. an undo)


@dataclass
class Desired:
    """The fields a plan compares and, per selected record, what the backup or the audit says."""

    fields: list[str]
    create_fields: list[str]
    types: dict[str, str]
    evidence: dict[str, Evidence]
    since: datetime | None = None  # no selected record has a SystemModstamp older than this in the org
    prefetch: Prefetch | None = None  # current values being read while the history was


@dataclass
class RestorePlan:
    """A classified restore, as stored in `sf_pipeline.restore_items`; `apply_plan` carries it out."""

    run_id: str
    config: RestoreConfig
    source_org: str
    fields: list[str]
    create_fields: list[str]
    field_types: dict[str, str]
    records: list[RecordItem]
    since: datetime | None = None
    fetch_mode: str = "none"
    api_calls: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    id_map: dict[str, str] = field(default_factory=dict)  # re-created records, old id -> new id (set by apply)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase: desired, current, parents, ...
    plan_of: str | None = None  # the dry run whose stored plan this is (None: this run's own dry run)
    tree: Any = None  # hierarchy.TreePlan of a whole-hierarchy restore (with_children), else None

    @property
    def object(self) -> str:
        return self.config.object

    @property
    def counts(self) -> dict[str, int]:
        """Records per classification (restore, conflict, not_restorable, noop)."""
        if self.tree is not None:  # --- hook: whole-hierarchy restore (hierarchy.py)
            return self.summary()["counts"]
        return count_records(self.records)

    @property
    def actions(self) -> dict[str, int]:
        """Records per action apply will take (update, undelete, create), counting only records it will write."""
        if self.tree is not None:  # --- hook: whole-hierarchy restore (hierarchy.py)
            return self.summary()["actions"]
        return self._writes()[0]

    def _writes(self) -> tuple[dict[str, int], int, int]:
        actions: dict[str, int] = {}
        records = values = 0
        for r in self.records:
            n = r.write_count(self.config.on_conflict)
            if n:
                actions[r.action] = actions.get(r.action, 0) + 1
                records += 1
                values += n
        return actions, records, values

    def summary(self, preview: int = PREVIEW_ROWS) -> dict[str, Any]:
        """Counts and a small table (first `preview` items, conflicts first) for the run's metadata."""
        if self.tree is not None:  # --- hook: whole-hierarchy restore (hierarchy.py)
            from sf_pipeline.restore.hierarchy import tree_summary

            return tree_summary(self)
        actions, to_write, values = self._writes()
        return {
            "run_id": self.run_id,
            "object": self.object,
            "target_org": self.config.target_org,
            "dry_run": self.config.dry_run,
            "as_of": format_datetime(self.config.as_of) if self.config.as_of else None,
            "undo_of": self.config.undo_of,
            "plan_of": self.plan_of,
            "fields": self.fields,
            "records": len(self.records),
            "counts": self.counts,
            "actions": actions,
            "records_to_write": to_write,
            "values_to_write": values,
            "fetch_mode": self.fetch_mode,
            "api_calls": self.api_calls,
            "seconds": round(self.seconds, 3),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "notes": self.notes,
            "preview": markdown_table(preview_rows(self.records, preview)),
        }


@contextmanager
def _gc_paused() -> Iterator[None]:
    """A plan builds millions of small objects, none in a reference cycle; the cyclic collector would rescan
    them again and again (about 5 s per million records here), so it waits until the plan is built."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def plan_restore(
    conn: psycopg.Connection[Any],
    client: SalesforceClient,
    config: RestoreConfig,
    run_id: str,
    *,
    source_org: str | None = None,
    now: datetime | None = None,
    bulk_threshold: int = DEFAULT_BULK_THRESHOLD,
) -> RestorePlan:
    """Classify every selected record and store the plan; raise RestoreConfigError before any write.

    `source_org` is the alias whose backup holds the history (default: the target org). When it differs
    from the target, ids are translated through `sf_pipeline.id_map` (filled by seeding or re-creation).
    """
    with _gc_paused():
        return _plan(conn, client, config, run_id, source_org, now, bulk_threshold)


def _plan(
    conn: psycopg.Connection[Any],
    client: SalesforceClient,
    config: RestoreConfig,
    run_id: str,
    source_org: str | None,
    now: datetime | None,
    bulk_threshold: int,
) -> RestorePlan:
    started = time.perf_counter()
    calls_before = client.api_calls
    source_org = source_org or config.target_org
    if not config.dry_run:
        raise RestoreConfigError(
            f"plan_restore makes dry runs; the plan of dry run {config.plan!r} is applied as it "
            "was stored (load_plan), never planned again"
        )
    if client.alias != config.target_org:
        raise RestoreConfigError(
            f"the client is connected to org {client.alias!r} but target_org is {config.target_org!r}"
        )
    config.check_instants(now)
    tables.ensure_restore_tables(conn)
    notes = list(config.notes)
    timings: dict[str, float] = {}
    # --- hook: whole-hierarchy restore (with_children, or the undo of one): hierarchy.py plans and stores it
    from sf_pipeline.restore import hierarchy

    if hierarchy.applies(config) or hierarchy.undoes_tree(conn, config):
        return hierarchy.plan_tree(
            conn, client, config, run_id, source_org=source_org, notes=notes, started=started, calls_before=calls_before
        )
    # --- end hook
    if config.undo_of:
        desired = _undo_evidence(conn, client, config, notes)
    else:
        desired = _history_evidence(conn, client, config, bulk_threshold)
        desired.evidence = _translate(conn, source_org, config.target_org, desired.evidence, desired.types, notes)
    timings["desired"] = time.perf_counter() - started
    records, mode = _classify(client, config, desired, bulk_threshold, timings, notes)
    if describe(client, config.object).get("triggerable"):
        # DESIGN.md: restoring into an org with live automation re-triggers it; say so up front.
        notes.append(
            f"{config.object} is triggerable: its triggers, flows and validation rules run on every "
            "record the restore writes; verify reports records they change again"
        )
    fields, create_fields, types, since = desired.fields, desired.create_fields, desired.types, desired.since
    plan = RestorePlan(
        run_id=run_id,
        config=config,
        source_org=source_org,
        fields=fields,
        create_fields=create_fields,
        field_types=types,
        records=records,
        since=since,
        fetch_mode=mode,
        notes=notes,
        timings=timings,
    )
    plan.api_calls = client.api_calls - calls_before
    plan.seconds = time.perf_counter() - started
    summary = plan.summary()
    stored = time.perf_counter()
    tables.save_plan(
        conn,
        run_id=run_id,
        object_name=config.object,
        target_org=config.target_org,
        source_org=source_org,
        config=config.to_dict(),
        counts=plan.counts,
        details={
            **{k: v for k, v in summary.items() if k not in ("counts", "preview")},
            # what applying this stored plan needs besides its items
            "field_types": {f: types[f] for f in dict.fromkeys([*fields, *create_fields]) if f in types},
            "create_fields": create_fields,
            "since": format_datetime(since) if since else None,
        },
        items=_item_rows(records),
    )
    timings["store"] = time.perf_counter() - stored
    plan.seconds = time.perf_counter() - started
    return plan


# ===================================================================== desired values from history
def _restorable_fields(
    client: SalesforceClient, config: RestoreConfig, describe_fields: Sequence[Mapping[str, Any]], in_backup: set[str]
) -> list[str]:
    """The fields to compare: those asked for (each must exist, be updateable and be backed up), else every
    updateable backed-up field."""
    obj = config.object
    by_lower = {str(f["name"]).lower(): f for f in describe_fields}
    if not config.fields:
        return [
            f["name"]
            for f in describe_fields
            if f.get("updateable") and str(f["type"]) not in SKIPPED_TYPES and column_name(f["name"]) in in_backup
        ]
    out = []
    for name in config.fields:
        f = by_lower.get(name.lower())
        if f is None:
            raise RestoreConfigError(f"field `{name}` does not exist on {obj} in org {client.alias!r}")
        if not f.get("updateable"):
            kind = "calculated" if f.get("calculated") else "not updateable"
            raise RestoreConfigError(f"field `{f['name']}` on {obj} is {kind} and cannot be restored")
        if column_name(f["name"]) not in in_backup:
            raise RestoreConfigError(
                f"field `{f['name']}` on {obj} is not in the backup (excluded from it, or added "
                "to the org after the history was taken), so there is no value to restore"
            )
        out.append(f["name"])
    return out


def _history_evidence(
    conn: psycopg.Connection[Any], client: SalesforceClient, config: RestoreConfig, bulk_threshold: int
) -> Desired:
    obj = config.object
    as_of = config.as_of
    assert as_of is not None
    try:
        in_backup = set(history_columns(conn, obj))
    except HistoryNotFoundError:
        raise RestoreConfigError(
            f"no backup history for {obj}: is it configured for backup, and has at least one "
            "window been backed up (history/<Object> materialized)?"
        ) from None
    first, _last = tables.history_bounds(conn, obj)
    if first is None:
        raise RestoreConfigError(f"the backup history of {obj} is empty: back up a window first")
    if as_of < first:
        raise RestoreConfigError(
            f"as_of {format_datetime(as_of)} is before the first backup of {obj} (its history "
            f"starts at {format_datetime(first)}): there is nothing to restore from"
        )
    if config.changed_by and "lastmodifiedbyid" not in in_backup:
        raise RestoreConfigError(f"changed_by needs LastModifiedById, which the backup of {obj} does not hold")
    desc = describe(client, obj)
    types = field_types(desc["fields"])
    fields = _restorable_fields(client, config, desc["fields"], in_backup)
    create_fields = []
    if config.restore_deleted:
        create_fields = [
            f["name"]
            for f in desc["fields"]
            if f.get("createable") and str(f["type"]) not in SKIPPED_TYPES and column_name(f["name"]) in in_backup
        ]
    names = list(dict.fromkeys([*fields, *create_fields]))
    pg_types = dict(table_columns(conn, HISTORY_SCHEMA, table_name(obj)))
    columns = {column_name(n): pg_types[column_name(n)] for n in names}

    if config.changed_between:
        selection = tables.Selection(
            start=config.changed_between[0],
            end=config.changed_between[1],
            changed_by=config.changed_by,
            record_ids=config.record_ids,
        )
        window_start: datetime | None = config.changed_between[0]
    elif config.changed_by or not config.record_ids:
        selection = tables.Selection(after=as_of, changed_by=config.changed_by, record_ids=config.record_ids)
        window_start = as_of
    else:
        selection = tables.Selection(record_ids=config.record_ids)
        window_start = None
    prefetch = None
    if window_start is not None and not config.record_ids:
        # Every selected record has a version from the window on, so the org stamped it at or after the
        # window's start: read those from the org while PostgreSQL reads the history.
        changed = client.count(f"SystemModstamp >= {soql_datetime(window_start)}", obj, include_deleted=True)
        if changed > bulk_threshold:
            prefetch = Prefetch(client, obj, fields, types, window_start)
    k = len(names)
    convert = [converter(types.get(n, "string")) for n in names]
    at_as_of = [(n, c, 2 + i) for i, (n, c) in enumerate(zip(names, convert, strict=True))]
    damaged = [(n, c, 2 + k + i) for i, (n, c) in enumerate(zip(names, convert, strict=True))]
    latest = [(n, c, 4 + 2 * k + i) for i, (n, c) in enumerate(zip(names, convert, strict=True))]
    evidence: dict[str, Evidence] = {}
    since: datetime | None = None
    with conn.transaction(), conn.cursor() as cur:
        # JIT compilation costs seconds on this wide aggregate and gains nothing on one scan.
        cur.execute("SET LOCAL jit = off")
        cur.execute(tables.selected_versions_sql(obj, columns, selection), tables.selection_params(selection, as_of))
        for row in cur:
            stamp = row[2 + 2 * k]
            evidence[row[0]] = Evidence(
                {n: c(row[i]) for n, c, i in at_as_of} if row[1] else None,
                {n: c(row[i]) for n, c, i in damaged},
                {n: c(row[i]) for n, c, i in latest},
                stamp,
                latest_deleted=bool(row[3 + 2 * k]),
            )
            if stamp is not None and (since is None or stamp < since):
                since = stamp
    for rid in config.record_ids:
        if rid not in evidence and not selection.by_version:
            evidence[rid] = Evidence(
                None,
                {},
                {},
                None,
                "no backup history for this record (never backed up, or not a record of this object)",
            )
    if not evidence:
        if prefetch is not None:
            prefetch.result()  # never leave a thread using the client behind
        raise RestoreConfigError(
            f"empty selection: no {obj} record {_describe_selection(config)} in the backup "
            "history; check changed_between/changed_by/record_ids and that those windows were "
            "backed up"
        )
    return Desired(fields, create_fields, types, evidence, since, prefetch)


def _describe_selection(config: RestoreConfig) -> str:
    parts = []
    if config.changed_between:
        start, end = config.changed_between
        parts.append(f"changed between {format_datetime(start)} and {format_datetime(end)}")
    elif config.changed_by or not config.record_ids:
        parts.append(f"changed after as_of {format_datetime(config.as_of)}" if config.as_of else "")
    if config.changed_by:
        parts.append(f"by user {config.changed_by}")
    if config.record_ids:
        parts.append(f"among the {len(config.record_ids)} record_ids")
    return " ".join(p for p in parts if p)


def _translate(
    conn: psycopg.Connection[Any],
    source_org: str,
    target_org: str,
    evidence: dict[str, Evidence],
    types: Mapping[str, str],
    notes: list[str],
) -> dict[str, Evidence]:
    """History ids are the source org's: map them to the target's through `sf_pipeline.id_map`.

    Between two orgs (seeding recorded the pairs) every record needs a pair. Within one org only records a
    restore re-created have one, and they must be found under their new id (else a re-run would create them
    again).
    """
    id_map = load_id_map(conn, source_org, target_org)
    across = source_org != target_org
    if not id_map and not across:
        return evidence
    refs = {f for f, t in types.items() if t == "reference"}

    def mapped(values: Mapping[str, Any] | None) -> dict[str, Any] | None:
        if values is None:
            return None
        return {f: id_map.get(v, v) if f in refs and isinstance(v, str) else v for f, v in values.items()}

    out: dict[str, Evidence] = {}
    unmapped = 0
    for rid, ev in evidence.items():
        target = id_map.get(rid, None if across else rid)
        if target is None:
            unmapped += 1
            out[rid] = Evidence(
                None,
                {},
                {},
                None,
                f"no id in org {target_org!r} for this record "
                f"(sf_pipeline.id_map has no {source_org} -> {target_org} pair)",
            )
            continue
        out[target] = Evidence(
            mapped(ev.desired),
            mapped(ev.damaged) or {},
            mapped(ev.latest) or {},
            ev.latest_modstamp if not across else None,
            ev.not_restorable,
            ev.latest_deleted if not across else None,
        )
    if across:
        notes.append(
            f"history of org {source_org!r} applied to org {target_org!r} through sf_pipeline.id_map "
            f"({len(evidence) - unmapped} records mapped, {unmapped} without a mapping)"
        )
    return out


# ===================================================================== desired values from an audit (undo)
def _undo_evidence(
    conn: psycopg.Connection[Any], client: SalesforceClient, config: RestoreConfig, notes: list[str]
) -> Desired:
    run = config.undo_of
    undone = tables.plan_row(conn, run)
    if undone is None:
        raise RestoreConfigError(f"undo_of: there is no restore run {run!r} in sf_pipeline.restore_plans")
    obj = undone["object"]
    if obj.lower() != config.object.lower():
        raise RestoreConfigError(f"undo_of: run {run!r} restored {obj}, not {config.object}; set object: {obj}")
    if undone["target_org"] != config.target_org:
        raise RestoreConfigError(
            f"undo_of: run {run!r} wrote to org {undone['target_org']!r}; set target_org: {undone['target_org']}"
        )
    _alias, entries = tables.audit_of_run(conn, run, obj)
    if not entries:
        raise RestoreConfigError(
            f"undo_of: run {run!r} wrote nothing (a dry run, or nothing needed restoring), so there is nothing to undo"
        )
    desc = describe(client, obj)
    types = field_types(desc["fields"])
    audited = list(dict.fromkeys(e.field for e in entries if e.operation == "update"))
    updateable = {f["name"] for f in desc["fields"] if f.get("updateable")}
    fields = (
        _restorable_fields(client, config, desc["fields"], {column_name(f) for f in audited})
        if config.fields
        else [f for f in audited if f in updateable]
    )
    if not config.fields and len(fields) < len(audited):
        notes.append(f"fields no longer updateable are left as they are: {sorted(set(audited) - set(fields))}")
    wanted = set(config.record_ids)
    before: dict[str, dict[str, Any]] = {}
    after: dict[str, dict[str, Any]] = {}
    recreated: dict[str, str] = {}
    for e in entries:
        if wanted and e.record_id not in wanted:
            continue
        if e.operation != "update":
            recreated[e.record_id] = e.operation
            continue
        if e.field in fields:
            before.setdefault(e.record_id, {})[e.field] = canonical(types.get(e.field, "string"), e.before)
            after.setdefault(e.record_id, {})[e.field] = canonical(types.get(e.field, "string"), e.after)
    evidence: dict[str, Evidence] = {}
    for rid in dict.fromkeys([*before, *recreated]):
        if rid in recreated:
            verb = "undeleted" if recreated[rid] == "undelete" else "re-created"
            evidence[rid] = Evidence(None, {}, {}, None, f"run {run} {verb} this record; undo does not delete records")
        else:
            evidence[rid] = Evidence(before[rid], after[rid], after[rid])
    if not evidence:
        raise RestoreConfigError(f"empty selection: run {run!r} wrote none of the selected records/fields")
    return Desired(fields, [], types, evidence)


# ===================================================================== classification
def _reference_objects(describe_fields: Sequence[Mapping[str, Any]], names: Sequence[str]) -> dict[str, list[str]]:
    wanted = set(names)
    return {
        f["name"]: list(f.get("referenceTo") or [])
        for f in describe_fields
        if f["name"] in wanted and f.get("type") == "reference"
    }


def _prefixes(client: SalesforceClient, objects: set[str]) -> dict[str, str]:
    out = {}
    for name in sorted(objects):
        try:
            prefix = describe(client, name).get("keyPrefix")
        except RestoreConfigError:  # a polymorphic target this org does not have
            continue
        if prefix:
            out[prefix] = name
    return out


def _classify(
    client: SalesforceClient,
    config: RestoreConfig,
    desired: Desired,
    bulk_threshold: int,
    timings: dict[str, float],
    notes: list[str],
) -> tuple[list[RecordItem], str]:
    obj, evidence, fields = config.object, desired.evidence, desired.fields
    ids = [rid for rid, ev in evidence.items() if ev.not_restorable is None]
    started = time.perf_counter()
    prefetched = desired.prefetch.result() if desired.prefetch is not None else None
    current, mode = fetch_current(
        client,
        obj,
        ids,
        fields,
        desired.types,
        since=desired.since,
        bulk_threshold=bulk_threshold,
        prefetched=prefetched,
    )
    del prefetched
    timings["current"] = time.perf_counter() - started
    desc_fields = describe(client, obj)["fields"]
    all_fields = list(dict.fromkeys([*fields, *desired.create_fields]))
    ref_targets = _reference_objects(desc_fields, all_fields)
    references = frozenset(ref_targets)
    createable = frozenset(f["name"] for f in desc_fields if f.get("createable"))

    brought_back = {
        rid
        for rid in ids
        if config.restore_deleted and evidence[rid].desired is not None and current.get(rid, GONE).state != LIVE
    }
    parents: set[str] = set()
    for rid in ids:
        ev, org = evidence[rid], current.get(rid, GONE)
        if ev.desired is None:
            continue
        for f in references:
            want = ev.desired.get(f)
            if want is not None and (org.state != LIVE or want != org.values.get(f)):
                parents.add(want)
    prefixes = _prefixes(client, {o for targets in ref_targets.values() for o in targets})
    parents = {p for p in parents if p[:3] in prefixes}
    live, deleted = (
        parent_states(client, parents, prefixes, bulk_threshold=bulk_threshold) if parents else (set(), set())
    )
    unavailable = unavailable_parents(parents, live, deleted, brought_back)
    timings["parents"] = time.perf_counter() - started - timings["current"]

    records = []
    restore_deleted = config.restore_deleted
    unseen: list[str] = []
    for rid in list(evidence):
        # each record's evidence and org values are dropped once classified: the peak holds one copy, not two
        ev, org = evidence.pop(rid), current.pop(rid, GONE)
        org_newer = org.modstamp is not None and ev.latest_modstamp is not None and org.modstamp > ev.latest_modstamp
        names = all_fields if org.state == MISSING and restore_deleted else fields
        why = ev.not_restorable
        if why is None and ev.desired is not None:
            why = unseen_reason(org.state, ev.latest_deleted)
            if why is not None:
                unseen.append(rid)
        records.append(
            classify_record(
                rid,
                names,
                desired=ev.desired,
                damaged=ev.damaged,
                latest=ev.latest,
                current=org.values if org.state != MISSING else None,
                org_state=org.state,
                org_newer=org_newer,
                restore_deleted=restore_deleted,
                references=references,
                createable=createable,
                unavailable_parents=unavailable,
                not_restorable_reason=why,
            )
        )
    if unseen:
        shown = ", ".join(unseen[:20]) + (f" (+{len(unseen) - 20} more)" if len(unseen) > 20 else "")
        notes.append(
            f"{len(unseen)} record(s) could not be checked (the org did not return them to the restore "
            f"user, the backup last saw them live; never re-created): {shown}"
        )
    timings["classify"] = time.perf_counter() - started - timings["current"] - timings["parents"]
    return records, mode


def _item_rows(records: Sequence[RecordItem]) -> Iterator[tuple]:
    for r in records:
        if not r.fields:
            yield (r.record_id, None, r.action, None, None, None, r.status, r.reason)
            continue
        for f in r.fields:
            reason = f.reason or (r.reason if r.action != UPDATE else None)
            yield (r.record_id, f.field, r.action, f.current, f.desired, f.damaged, f.status, reason)


__all__ = ["STATUSES", "Evidence", "RestorePlan", "plan_restore"]
