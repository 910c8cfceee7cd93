"""Plan a restore: which records, which values, and what the target org holds now. Writes nothing to any org.

Desired values come from the backup history (the version valid at `as_of`), or for `undo_of` from the
audit of an earlier restore (its before-values). Current values are fetched fresh from the target org.
Every selected record is classified (decisions.py) and the plan is stored in `sf_pipeline.restore_plans`
and `sf_pipeline.restore_items`, so a dry run leaves a reviewable record of what a real run would write;
a run with `dry_run: false, plan: <that dry run's id>` writes exactly that stored plan (reviewed.py).

A plan is made a chunk of records at a time (tables.CHUNK_RECORDS): the history is read through a server-side
cursor, each chunk's current values are read from the org (one Bulk API 2.0 job over the chunk's id range when
the selection is large), its records classified and stored, then dropped; the counts and the preview are added
up as it goes (PlanTally). What planning holds is one chunk's worth, whatever the incident's size.
"""

from __future__ import annotations

import gc
import heapq
import itertools
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from sf_pipeline.restore import tables
from sf_pipeline.restore.config import RestoreConfig
from sf_pipeline.restore.current import (
    DEFAULT_BULK_THRESHOLD,
    GONE,
    describe,
    fetch_current,
    field_types,
    parent_states,
)
from sf_pipeline.restore.decisions import (
    CONFLICT,
    LIVE,
    MISSING,
    NOOP,
    NOT_RESTORABLE,
    RESTORE,
    STATUSES,
    UPDATE,
    RecordItem,
    classify_record,
    markdown_table,
    preview_rows,
    unavailable_parents,
    unseen_reason,
)
from sf_pipeline.restore.errors import RestoreConfigError
from sf_pipeline.restore.stored import StoredRecords
from sf_pipeline.salesforce.client import SalesforceClient
from sf_pipeline.salesforce.extract import soql_datetime
from sf_pipeline.salesforce.values import canonical, converter, format_datetime
from sf_pipeline.warehouse.ddl import commit
from sf_pipeline.warehouse.errors import HistoryNotFoundError
from sf_pipeline.warehouse.history import history_columns
from sf_pipeline.warehouse.id_map import lookup_id_map
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


Chunk = list[tuple[str, Evidence]]  # selected records (target ids) and their evidence, a chunk at a time


@dataclass
class Desired:
    """The fields a plan compares and, chunk by chunk, what the backup or the audit says of each selected record."""

    fields: list[str]
    create_fields: list[str]
    types: dict[str, str]
    chunks: Iterable[tuple[Chunk, datetime | None]]  # (records, the oldest latest-backed-up stamp among them)
    since: datetime | None = None  # no selected record has a SystemModstamp older than this (known once read)
    window_start: datetime | None = None  # the org stamped every selected record at or after this (Bulk reads)
    many: bool = False  # a large selection: read the org's values of every chunk through Bulk API 2.0
    brought_back: frozenset[str] = frozenset()  # restore_deleted: selected records that existed at as_of


_PREVIEW_ORDER = {CONFLICT: 0, NOT_RESTORABLE: 1, RESTORE: 2, NOOP: 3}


@dataclass
class PlanTally:
    """A plan's counts and preview, added up chunk by chunk (its records stay in sf_pipeline.restore_items)."""

    on_conflict: str
    records: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    actions: dict[str, int] = field(default_factory=dict)  # records apply will write, per action
    to_write: int = 0
    values: int = 0
    shown: list[RecordItem] = field(default_factory=list)  # the first PREVIEW_ROWS records worth a look

    def add(self, records: Sequence[RecordItem]) -> None:
        for r in records:
            self.counts[r.status] += 1
            n = r.write_count(self.on_conflict)
            if n:
                self.actions[r.action] = self.actions.get(r.action, 0) + 1
                self.to_write += 1
                self.values += n
        self.records += len(records)
        # preview_rows shows the smallest records by (rank, id): those of all chunks are among each chunk's own
        self.shown = heapq.nsmallest(
            PREVIEW_ROWS, [*self.shown, *records], key=lambda r: (_PREVIEW_ORDER[r.status], r.record_id)
        )

    def preview(self, limit: int = PREVIEW_ROWS) -> str:
        return markdown_table(preview_rows(self.shown, limit))


@dataclass
class RestorePlan:
    """A classified restore, as stored in `sf_pipeline.restore_items`; `apply_plan` carries it out.

    `records` reads the stored records when looked at (stored.StoredRecords); the counts come from `tally`.
    """

    run_id: str
    config: RestoreConfig
    source_org: str
    fields: list[str]
    create_fields: list[str]
    field_types: dict[str, str]
    records: Sequence[RecordItem]
    since: datetime | None = None
    fetch_mode: str = "none"
    api_calls: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    # re-created records, old id -> new id: set by apply (tables.PlanIdMap, read from the database on demand)
    id_map: Mapping[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase: desired, current, parents, ...
    plan_of: str | None = None  # the dry run whose stored plan this is (None: this run's own dry run)
    tree: Any = None  # hierarchy.TreePlan of a whole-hierarchy restore (with_children), else None
    tally: PlanTally | None = None  # counts and preview (added up from `records` when not given)

    @property
    def object(self) -> str:
        return self.config.object

    def _tally(self) -> PlanTally:
        if self.tally is None:
            tally = PlanTally(self.config.on_conflict)
            tally.add(list(self.records))
            self.tally = tally
        return self.tally

    @property
    def counts(self) -> dict[str, int]:
        """Records per classification (restore, conflict, not_restorable, noop)."""
        if self.tree is not None:  # --- hook: whole-hierarchy restore (hierarchy.py)
            return self.summary()["counts"]
        return dict(self._tally().counts)

    @property
    def actions(self) -> dict[str, int]:
        """Records per action apply will take (update, undelete, create), counting only records it will write."""
        if self.tree is not None:  # --- hook: whole-hierarchy restore (hierarchy.py)
            return self.summary()["actions"]
        return dict(self._tally().actions)

    def summary(self, preview: int = PREVIEW_ROWS) -> dict[str, Any]:
        """Counts and a small table (first `preview` items, conflicts first) for the run's metadata."""
        if self.tree is not None:  # --- hook: whole-hierarchy restore (hierarchy.py)
            from sf_pipeline.restore.hierarchy import tree_summary

            return tree_summary(self)
        tally = self._tally()
        return {
            "run_id": self.run_id,
            "object": self.object,
            "target_org": self.config.target_org,
            "dry_run": self.config.dry_run,
            "as_of": format_datetime(self.config.as_of) if self.config.as_of else None,
            "undo_of": self.config.undo_of,
            "plan_of": self.plan_of,
            "fields": self.fields,
            "records": tally.records,
            "counts": dict(tally.counts),
            "actions": dict(tally.actions),
            "records_to_write": tally.to_write,
            "values_to_write": tally.values,
            "fetch_mode": self.fetch_mode,
            "api_calls": self.api_calls,
            "seconds": round(self.seconds, 3),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "notes": self.notes,
            "preview": tally.preview(preview),
        }


@contextmanager
def _gc_paused() -> Iterator[None]:
    """A plan builds millions of small objects, none in a reference cycle; the cyclic collector would rescan
    them again and again (about 5 s per million records here), so it runs only once per chunk of records (what
    the org reads leave in cycles is freed then, not held until the plan is built)."""
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
        desired = _history_evidence(conn, client, config, bulk_threshold, source_org, notes)
    timings["desired"] = time.perf_counter() - started
    tally = PlanTally(config.on_conflict)
    classify: _Classifier | None = None  # made with the first chunk: an empty selection fails before its reads
    # One transaction: the history's server-side cursor stays open while each chunk is classified and its items
    # are copied in; a plan that fails half-way stores nothing.
    with conn.transaction():
        conn.execute("SET LOCAL jit = off")  # JIT costs seconds on the history's wide aggregate, gains nothing
        tables.clear_plan(conn, run_id)
        read = time.perf_counter()
        chunks, first = 0, None
        for chunk, chunk_since in desired.chunks:
            timings["desired"] += time.perf_counter() - read
            first = None  # a plan of one chunk keeps its records (StoredRecords.as_planned), a larger one none
            classify = classify or _Classifier(client, config, desired, bulk_threshold, timings)
            records = classify(chunk, chunk_since)
            del chunk
            tally.add(records)
            stored = time.perf_counter()
            tables.copy_items(conn, run_id, config.object, _item_rows(records))
            chunks += 1
            first = records if chunks == 1 else None
            records = []  # the next chunk is read and classified without this one
            gc.collect()  # what the chunk's reads left in reference cycles (the collector is paused)
            timings["store"] = timings.get("store", 0.0) + time.perf_counter() - stored
            read = time.perf_counter()
        as_planned = first if chunks == 1 else None
        del first
        assert classify is not None, "an empty selection raised RestoreConfigError"
        notes.extend(classify.notes())
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
            records=StoredRecords(conn, run_id, types, [*fields, *create_fields], as_planned),
            since=since,
            fetch_mode=classify.mode,
            notes=notes,
            timings=timings,
            tally=tally,
        )
        plan.api_calls = client.api_calls - calls_before
        plan.seconds = time.perf_counter() - started
        summary = plan.summary()
        tables.insert_plan(
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
        )
    commit(conn)
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
    conn: psycopg.Connection[Any],
    client: SalesforceClient,
    config: RestoreConfig,
    bulk_threshold: int,
    source_org: str,
    notes: list[str],
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
    desired = Desired(fields, create_fields, types, ())
    if window_start is not None and not config.record_ids:
        # Every selected record has a version from the window on, so the org stamped it at or after the
        # window's start: many records stamped since then make a large selection, read through Bulk API 2.0.
        changed = client.count(f"SystemModstamp >= {soql_datetime(window_start)}", obj, include_deleted=True)
        if changed > bulk_threshold:
            desired.window_start, desired.many = window_start, True
    elif len(config.record_ids) > bulk_threshold:
        desired.many = True
    query = tables.selected_versions_sql(obj, columns, selection)
    params = tables.selection_params(selection, as_of)
    translate = _Translation(conn, source_org, config.target_org, types)
    if config.restore_deleted:
        # A selected record brought back by a later chunk is no missing parent for this one.
        existed = [r[0] for r in conn.execute(sql.SQL("SELECT id FROM ({}) s WHERE existed").format(query), params)]
        desired.brought_back = frozenset(translate.ids(existed))
        commit(conn)
    desired.chunks = _history_chunks(conn, config, selection, query, params, names, desired, translate, notes)
    return desired


def _history_chunks(
    conn: psycopg.Connection[Any],
    config: RestoreConfig,
    selection: tables.Selection,
    query: sql.Composable,
    params: Mapping[str, Any],
    names: Sequence[str],
    desired: Desired,
    translate: _Translation,
    notes: list[str],
) -> Iterator[tuple[Chunk, datetime | None]]:
    """The selected records' evidence, tables.CHUNK_RECORDS records at a time, through a server-side cursor (run
    inside the caller's transaction); `desired.since` is the oldest latest-backed-up stamp once all are read."""
    k = len(names)
    convert = [converter(desired.types.get(n, "string")) for n in names]
    at_as_of = [(n, c, 2 + i) for i, (n, c) in enumerate(zip(names, convert, strict=True))]
    damaged = [(n, c, 2 + k + i) for i, (n, c) in enumerate(zip(names, convert, strict=True))]
    latest = [(n, c, 4 + 2 * k + i) for i, (n, c) in enumerate(zip(names, convert, strict=True))]
    wanted = set(config.record_ids) if config.record_ids and not selection.by_version else set()
    seen = 0
    # ordered by id: each chunk's ids span a narrow range, which is all a Bulk read of its org values asks for
    ordered = sql.SQL('{} ORDER BY id COLLATE "C"').format(query)
    with conn.cursor(name=f"restore_history_{uuid.uuid4().hex}") as cur:
        cur.execute(ordered, params)
        while rows := cur.fetchmany(tables.CHUNK_RECORDS):
            chunk: Chunk = []
            since: datetime | None = None
            for row in rows:
                stamp = row[2 + 2 * k]
                chunk.append(
                    (
                        row[0],
                        Evidence(
                            {n: c(row[i]) for n, c, i in at_as_of} if row[1] else None,
                            {n: c(row[i]) for n, c, i in damaged},
                            {n: c(row[i]) for n, c, i in latest},
                            stamp,
                            latest_deleted=bool(row[3 + 2 * k]),
                        ),
                    )
                )
                wanted.discard(row[0])
                if stamp is not None and (since is None or stamp < since):
                    since = stamp
            del rows
            if since is not None and (desired.since is None or since < desired.since):
                desired.since = since
            seen += len(chunk)
            yield translate(chunk), since
    missing = [rid for rid in config.record_ids if rid in wanted]
    if missing:
        reason = "no backup history for this record (never backed up, or not a record of this object)"
        seen += len(missing)
        yield translate([(rid, Evidence(None, {}, {}, None, reason)) for rid in missing]), None
    if not seen:
        raise RestoreConfigError(
            f"empty selection: no {config.object} record {_describe_selection(config)} in the backup "
            "history; check changed_between/changed_by/record_ids and that those windows were "
            "backed up"
        )
    if translate.note:
        notes.append(translate.note)


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


class _Translation:
    """History ids are the source org's: map them to the target's through `sf_pipeline.id_map`.

    Between two orgs (seeding recorded the pairs) every record needs a pair. Within one org only records a
    restore re-created have one, and they must be found under their new id (else a re-run would create them
    again). The pairs are read a chunk at a time, those of the chunk's ids and reference values only: the map
    between two orgs grows with every seeding and re-creation, not with the incident.
    """

    def __init__(self, conn: psycopg.Connection[Any], source_org: str, target_org: str, types: Mapping[str, str]):
        self.conn = conn
        commit(conn)  # the reads so far end here: the plan's transaction starts afresh
        self.source_org, self.target_org = source_org, target_org
        self.across = source_org != target_org
        self.refs = frozenset(f for f, t in types.items() if t == "reference")
        self.mapped_count = self.unmapped = 0

    def _lookup(self, ids: Iterable[str]) -> dict[str, str]:
        # not committed here: chunks are translated inside the plan's transaction, whose history cursor is open
        # (psycopg forbids commit() there), and _history_evidence commits after `ids`
        return lookup_id_map(self.conn, self.source_org, self.target_org, ids, in_transaction=True)

    def ids(self, ids: Iterable[str]) -> Iterator[str]:
        """The target ids of `ids` (those without one dropped), looked up a chunk of ids at a time."""
        it = iter(ids)
        while batch := list(itertools.islice(it, tables.CHUNK_RECORDS)):
            id_map = self._lookup(batch)
            for rid in batch:
                target = id_map.get(rid, None if self.across else rid)
                if target is not None:
                    yield target

    def _references(self, chunk: Chunk) -> Iterator[str]:
        """The chunk's record ids and the ids its reference fields hold: what its translation reads of the map."""
        refs = self.refs
        for rid, ev in chunk:
            yield rid
            if refs:
                for values in (ev.desired, ev.damaged, ev.latest):
                    if values:
                        for f in refs:
                            v = values.get(f)
                            if isinstance(v, str):
                                yield v

    def _mapped(self, values: Mapping[str, Any] | None, id_map: Mapping[str, str]) -> dict[str, Any] | None:
        if values is None:
            return None
        refs = self.refs
        return {f: id_map.get(v, v) if f in refs and isinstance(v, str) else v for f, v in values.items()}

    def __call__(self, chunk: Chunk) -> Chunk:
        id_map = self._lookup(self._references(chunk))
        if not id_map and not self.across:
            return chunk
        out: Chunk = []
        for rid, ev in chunk:
            target = id_map.get(rid, None if self.across else rid)
            if target is None:
                self.unmapped += 1
                out.append(
                    (
                        rid,
                        Evidence(
                            None,
                            {},
                            {},
                            None,
                            f"no id in org {self.target_org!r} for this record "
                            f"(sf_pipeline.id_map has no {self.source_org} -> {self.target_org} pair)",
                        ),
                    )
                )
                continue
            self.mapped_count += 1
            out.append(
                (
                    target,
                    Evidence(
                        self._mapped(ev.desired, id_map),
                        self._mapped(ev.damaged, id_map) or {},
                        self._mapped(ev.latest, id_map) or {},
                        ev.latest_modstamp if not self.across else None,
                        ev.not_restorable,
                        ev.latest_deleted if not self.across else None,
                    ),
                )
            )
        return out

    @property
    def note(self) -> str | None:
        if not self.across:
            return None
        return (
            f"history of org {self.source_org!r} applied to org {self.target_org!r} through sf_pipeline.id_map "
            f"({self.mapped_count} records mapped, {self.unmapped} without a mapping)"
        )


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
    if not tables.audit_exists(conn, run, obj):
        raise RestoreConfigError(
            f"undo_of: run {run!r} wrote nothing (a dry run, or nothing needed restoring), so there is nothing to undo"
        )
    desc = describe(client, obj)
    types = field_types(desc["fields"])
    audited = tables.audit_updated_fields(conn, run, obj)
    updateable = {f["name"] for f in desc["fields"] if f.get("updateable")}
    fields = (
        _restorable_fields(client, config, desc["fields"], {column_name(f) for f in audited})
        if config.fields
        else [f for f in audited if f in updateable]
    )
    if not config.fields and len(fields) < len(audited):
        notes.append(f"fields no longer updateable are left as they are: {sorted(set(audited) - set(fields))}")
    wanted = set(config.record_ids)

    def evidence_chunks() -> Iterator[Chunk]:
        """The audit read a chunk of records at a time (tables.audit_chunks), as evidence."""
        for entries in tables.audit_chunks(conn, run, obj):
            chunk = _undo_chunk(entries, run, fields, types, wanted)
            if chunk:
                yield chunk

    chunks = evidence_chunks()
    first = next(chunks, None)
    if first is None:
        raise RestoreConfigError(f"empty selection: run {run!r} wrote none of the selected records/fields")
    brought_back: frozenset[str] = frozenset()
    if config.restore_deleted:  # ids only, read in a pass of their own
        brought_back = frozenset(
            rid
            for chunk in evidence_chunks()
            for rid, ev in chunk
            if ev.desired is not None and ev.not_restorable is None
        )
    return Desired(
        fields, [], types, ((chunk, None) for chunk in itertools.chain([first], chunks)), brought_back=brought_back
    )


def _undo_chunk(
    entries: Sequence[tables.AuditEntry], run: str, fields: Sequence[str], types: Mapping[str, str], wanted: set[str]
) -> Chunk:
    """One chunk of records' evidence from what run `run` wrote to them: the values before its writes are the ones
    to put back; a record it undeleted or re-created is not restorable (undo does not delete records)."""
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
    chunk: Chunk = []
    for rid in dict.fromkeys([*before, *recreated]):
        if rid in recreated:
            verb = "undeleted" if recreated[rid] == "undelete" else "re-created"
            chunk.append(
                (rid, Evidence(None, {}, {}, None, f"run {run} {verb} this record; undo does not delete records"))
            )
        else:
            chunk.append((rid, Evidence(before[rid], after[rid], after[rid])))
    return chunk


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


class _Classifier:
    """Classifies the selection chunk by chunk: the org's current values of each chunk's records and the state of
    the parents they would point to are read fresh, then every record is classified (decisions.py)."""

    def __init__(
        self,
        client: SalesforceClient,
        config: RestoreConfig,
        desired: Desired,
        bulk_threshold: int,
        timings: dict[str, float],
    ):
        self.client, self.config, self.desired = client, config, desired
        self.bulk_threshold, self.timings = bulk_threshold, timings
        for phase in ("current", "parents", "classify"):
            timings.setdefault(phase, 0.0)
        desc_fields = describe(client, config.object)["fields"]
        self.all_fields = list(dict.fromkeys([*desired.fields, *desired.create_fields]))
        self.ref_targets = _reference_objects(desc_fields, self.all_fields)
        self.references = frozenset(self.ref_targets)
        self.createable = frozenset(f["name"] for f in desc_fields if f.get("createable"))
        self.prefixes = _prefixes(client, {o for targets in self.ref_targets.values() for o in targets})
        self.modes: list[str] = []
        self.unseen: list[str] = []
        self.unseen_count = 0

    @property
    def mode(self) -> str:
        """How the org's values were read: bulk when any chunk was, else collections (none: nothing to read)."""
        for mode in ("bulk", "collections"):
            if mode in self.modes:
                return mode
        return "none"

    def __call__(self, chunk: Chunk, chunk_since: datetime | None) -> list[RecordItem]:
        config, desired, client = self.config, self.desired, self.client
        obj, fields = config.object, desired.fields
        evidence = dict(chunk)
        ids = [rid for rid, ev in chunk if ev.not_restorable is None]
        started = time.perf_counter()
        current, mode = fetch_current(
            client,
            obj,
            ids,
            fields,
            desired.types,
            since=desired.window_start or chunk_since,
            bulk_threshold=self.bulk_threshold,
            bulk=desired.many,
        )
        self.modes.append(mode)
        fetched = time.perf_counter()
        self.timings["current"] += fetched - started

        restore_deleted = config.restore_deleted
        brought_back = {
            rid
            for rid in ids
            if restore_deleted and evidence[rid].desired is not None and current.get(rid, GONE).state != LIVE
        }
        parents: set[str] = set()
        for rid in ids:
            ev, org = evidence[rid], current.get(rid, GONE)
            if ev.desired is None:
                continue
            for f in self.references:
                want = ev.desired.get(f)
                if want is not None and (org.state != LIVE or want != org.values.get(f)):
                    parents.add(want)
        unavailable: dict[str, str] = {}
        if parents:
            prefixes = self.prefixes
            parents = {p for p in parents if p[:3] in prefixes}
            live, deleted = (
                parent_states(client, parents, prefixes, bulk_threshold=self.bulk_threshold)
                if parents
                else (set(), set())
            )
            # a parent a later chunk brings back (restore_deleted) is not missing: only not live yet
            brought_back |= {p for p in parents if p in desired.brought_back and p not in live}
            unavailable = unavailable_parents(parents, live, deleted, brought_back)
        classified = time.perf_counter()
        self.timings["parents"] += classified - fetched

        records = []
        for rid, ev in chunk:
            org = current.pop(rid, GONE)
            org_newer = (
                org.modstamp is not None and ev.latest_modstamp is not None and org.modstamp > ev.latest_modstamp
            )
            names = self.all_fields if org.state == MISSING and restore_deleted else fields
            why = ev.not_restorable
            if why is None and ev.desired is not None:
                why = unseen_reason(org.state, ev.latest_deleted)
                if why is not None:
                    self.unseen_count += 1
                    if len(self.unseen) < 20:
                        self.unseen.append(rid)
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
                    references=self.references,
                    createable=self.createable,
                    unavailable_parents=unavailable,
                    not_restorable_reason=why,
                )
            )
        self.timings["classify"] += time.perf_counter() - classified
        return records

    def notes(self) -> list[str]:
        if not self.unseen_count:
            return []
        more = self.unseen_count - len(self.unseen)
        shown = ", ".join(self.unseen) + (f" (+{more} more)" if more else "")
        return [
            f"{self.unseen_count} record(s) could not be checked (the org did not return them to the restore "
            f"user, the backup last saw them live; never re-created): {shown}"
        ]


def _item_rows(records: Sequence[RecordItem]) -> Iterator[tuple]:
    for r in records:
        if not r.fields:
            yield (r.record_id, None, r.action, None, None, None, r.status, r.reason)
            continue
        for f in r.fields:
            reason = f.reason or (r.reason if r.action != UPDATE else None)
            yield (r.record_id, f.field, r.action, f.current, f.desired, f.damaged, f.status, reason)


__all__ = ["STATUSES", "Evidence", "RestorePlan", "plan_restore"]
