"""The restore's write-ahead journal: every write is logged before the call that makes it, completed after.

An audit row (`sf_pipeline.restore_audit`) is committed `pending` before each call, with the call's id (and,
for Bulk API 2.0, the job's id as soon as the org gives it); the call's answer completes it: `done` (the org
wrote it; a re-created record's row then carries its new id), `failed` (the org refused it). A run killed
between the two leaves pending rows, and the next apply of any plan of that object and org first
reconciles them against the org (`reconcile`), before it writes anything:

- an update (or a re-pointed lookup): the record is read back; it holds every value the call was writing:
  `done`; else `not_applied` (the plan's own conflict check then decides whether to write it again);
- an undelete: the record is live: `done`; in the recycle bin: `not_applied`;
- a Bulk job: its results are read from the org (a job never closed is aborted first); only when the org
  no longer has the job are the records read back as above. A Bulk insert's result rows carry no id of the
  records they re-create: each is matched to the pending record whose every sent value its cells hold;
- a create: Salesforce takes no idempotency key on REST API writes (only UI API does: "Prevent Record
  Duplication with Idempotent Record Writes", UI API Developer Guide), so the records the call may have made
  are found by what they are: records created by the user the call was made as (`CreatedById`), at or after
  the instant the journal gives (`CreatedDate`, the org's clock: the oldest backed-up SystemModstamp of the
  plan, which precedes the deletion that precedes any re-creation), not already claimed by the id map, whose
  values equal every value the call sent. A match completes the row (`done`, the new id goes to
  `sf_pipeline.id_map`); a record with no match is `not_applied` when no unclaimed record of that user is
  left in the window, and `unchecked` otherwise (automation may have changed the values of a record the call
  created): an unchecked create is never sent again, it is reported for a person to check.

`unchecked` also marks records the restore user cannot read back (deleted since, or hidden from it by sharing
or field-level security): the org cannot say whether the write happened. The whole-hierarchy restore
(hierarchy.py) journals its undeletes, creates (collections and Bulk inserts), deferred references and
re-pointed lookups through the same `Journal.calls`, one object per call.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from sf_pipeline.restore import tables
from sf_pipeline.restore.current import describe, field_types
from sf_pipeline.salesforce import soql
from sf_pipeline.salesforce.client import SalesforceClient
from sf_pipeline.salesforce.extract import soql_datetime
from sf_pipeline.salesforce.values import canonical, format_datetime, parse_datetime
from sf_pipeline.salesforce.writes import (
    WriteResult,
    fetch_records,
    ingest_job_outcome,
    ingest_job_rows,
    query_by_ids,
)
from sf_pipeline.warehouse.id_map import mapped_target_ids, save_id_map

PENDING = "pending"
DONE = "done"
FAILED = "failed"
NOT_APPLIED = "not_applied"
UNCHECKED = "unchecked"

UPDATE_OPS = ("update", "repoint")


class Journal:
    """The journal of one run writing to one org as one Salesforce user."""

    def __init__(self, conn: psycopg.Connection[Any], run_id: str, org_alias: str, user: str | None):
        self.conn = conn
        self.run_id = run_id
        self.org_alias = org_alias
        self.user = user
        self.unknown: list[CallLog] = []  # calls whose answer was lost: reconcile them before going on

    def calls(
        self,
        object_name: str,
        operation: str,
        *,
        record_id: Callable[[Mapping[str, Any]], str] | None = None,
        befores: Mapping[str, Mapping[str, Any]] | None = None,
        created_after: datetime | None = None,
    ) -> CallLog:
        """A `WriteJournal` for the calls of one write function (writes.py) on `object_name`.

        `record_id(record)` names the record a payload writes (default: its `Id`; for a create, the id of
        the record it re-creates); `befores` holds the values the org held before, per record id;
        `created_after` (creates) is the earliest CreatedDate, on the org's clock, a record the call makes
        can have (see the module docstring)."""
        return CallLog(self, object_name, operation, record_id or (lambda rec: rec["Id"]), befores or {}, created_after)


@dataclass
class CallLog:
    """Implements writes.WriteJournal: one pending row per value before a call, completed after it."""

    journal: Journal
    object: str
    operation: str
    record_id: Callable[[Mapping[str, Any]], str]
    befores: Mapping[str, Mapping[str, Any]]
    created_after: datetime | None
    unknown_ids: list[str] = field(default_factory=list)

    def before(self, records: Sequence[Mapping[str, Any]]) -> str:
        j = self.journal
        call_id = uuid.uuid4().hex

        def rows() -> Iterator[tuple[str, str, Any, Any]]:
            for rec in records:
                rid = self.record_id(rec)
                if self.operation == "create":
                    # `before` of the Id row: the id re-created; `detail` of the pending rows: created_after
                    yield (rid, "Id", rid, None)
                    yield from ((rid, f, None, v) for f, v in rec.items() if f != "Id")
                elif self.operation == "undelete":
                    yield (rid, "IsDeleted", True, False)
                else:
                    was = self.befores.get(rid, {})
                    yield from ((rid, f, was.get(f), v) for f, v in rec.items() if f != "Id")

        # streamed into one COPY (a Bulk job's records are a row per field each: never listed whole)
        tables.journal_begin(
            j.conn,
            call_id,
            (
                (j.run_id, j.org_alias, self.object, rid, f, before, after, self.operation, j.user)
                for rid, f, before, after in rows()
            ),
            detail=format_datetime(self.created_after) if self.created_after else None,
        )
        return call_id

    def job(self, token: str, job_id: str) -> None:
        tables.journal_job(self.journal.conn, token, job_id)

    def after(self, token: str, pairs: Sequence[tuple[Mapping[str, Any], WriteResult]]) -> None:
        done: dict[str, str] = {}
        other: list[tuple[str, str, str | None]] = []
        unknown = False
        for rec, res in pairs:
            rid = self.record_id(rec)
            if res.success:
                done[rid] = res.id if self.operation == "create" and res.id else rid
            elif res.outcome_unknown or self.operation == "undelete":
                # Stays pending until reconciled. An undelete refused as such may be the repeat of an attempt
                # the org carried out (SOAP calls are retried after a 5xx): only a read-back can tell.
                unknown = True
                self.unknown_ids.append(rid)
            else:
                other.append((rid, FAILED, res.message[:2000]))
        tables.journal_finish(self.journal.conn, token, done=done, other=other)
        if done and self.operation == "create":
            alias = self.journal.org_alias
            save_id_map(self.journal.conn, alias, alias, self.object, done)
        if unknown and self not in self.journal.unknown:
            self.journal.unknown.append(self)


# ===================================================================== reconciliation
@dataclass
class Reconciled:
    """What reconciling pending journal rows found, per state, and the ids of records found re-created."""

    counts: dict[str, int] = field(default_factory=dict)
    created: dict[str, str] = field(default_factory=dict)  # id re-created -> its new id
    undeleted: set[str] = field(default_factory=set)  # pending undeletes found done
    unchecked: dict[str, str] = field(default_factory=dict)  # record id -> why the org could not tell

    def add(self, state: str, n: int = 1) -> None:
        if n:
            self.counts[state] = self.counts.get(state, 0) + n

    def merge(self, other: Reconciled) -> None:
        for k, v in other.counts.items():
            self.add(k, v)
        self.created.update(other.created)
        self.undeleted.update(other.undeleted)
        self.unchecked.update(other.unchecked)


def reconcile(conn: psycopg.Connection[Any], client: SalesforceClient, org_alias: str, object_name: str) -> Reconciled:
    """Settle every pending journal row of `object_name` in `org_alias` against the org (module docstring).

    Call it holding the apply lock of (org, object), before writing: no other run writes them meanwhile.
    """
    out = Reconciled()
    pending = tables.journal_pending(conn, org_alias, object_name)
    if not pending:
        return out
    types = field_types(describe(client, object_name)["fields"])
    creates = []
    for call in pending:
        if call.job_id and call.operation == "create":
            rows = ingest_job_rows(client, call.job_id)
            if rows is not None:
                _finish_creates_from_job(conn, org_alias, call, rows, types, out)
                continue
        elif call.job_id:
            results = ingest_job_outcome(client, call.job_id)
            if results is not None:
                _finish_from_job(conn, call, results, out)
                continue
        if call.operation in UPDATE_OPS:
            _reconcile_updates(conn, client, call, types, out)
        elif call.operation == "undelete":
            _reconcile_undeletes(conn, client, call, out)
        elif call.operation == "create":
            creates.append(call)  # no job, or one the org no longer has: found by what the records are
    if creates:
        _reconcile_creates(conn, client, org_alias, object_name, creates, types, out)
    return out


def _finish_from_job(
    conn: psycopg.Connection[Any], call: tables.PendingCall, results: Mapping[str, WriteResult], out: Reconciled
) -> None:
    done, other = {}, []
    for rid in call.values:
        res = results.get(rid)
        if res is not None and res.success:
            done[rid] = rid
        elif res is not None:
            other.append((rid, FAILED, res.message[:2000]))
        else:
            other.append((rid, NOT_APPLIED, f"Bulk job {call.job_id} has no result for this record"))
    tables.journal_finish(conn, call.call_id, done=done, other=other)
    out.add(DONE, len(done))
    for _rid, state, _ in other:
        out.add(state)


def _finish_creates_from_job(
    conn: psycopg.Connection[Any],
    org_alias: str,
    call: tables.PendingCall,
    rows: Sequence[tuple[Mapping[str, str], WriteResult]],
    types: Mapping[str, str],
    out: Reconciled,
) -> None:
    """Complete a Bulk insert's pending rows from its result rows: an insert's results carry no id of the
    records they re-create, only the cells as uploaded and the new id, so each row is matched back to the pending
    record whose every sent value it holds (rows with equal cells are interchangeable, as in bulk_create)."""
    waiting = [
        (rid, {f: after for f, (_b, after) in values.items() if f != "Id"}) for rid, values in call.values.items()
    ]
    done: dict[str, str] = {}
    other: list[tuple[str, str, str | None]] = []
    for row, res in rows:
        match = next(
            (
                i
                for i, (_rid, sent) in enumerate(waiting)
                if all(_same(types.get(f, "string"), row.get(f), v) for f, v in sent.items())
            ),
            None,
        )
        if match is None:
            continue
        rid, _sent = waiting.pop(match)
        if res.success and res.id:
            done[rid] = res.id
        else:
            other.append((rid, FAILED, res.message[:2000]))
    other.extend(
        (rid, NOT_APPLIED, f"Bulk job {call.job_id} has no result for this record (never processed)")
        for rid, _sent in waiting
    )
    tables.journal_finish(conn, call.call_id, done=done, other=other)
    if done:
        save_id_map(conn, org_alias, org_alias, call.object, done)
        out.created.update(done)
    out.add(DONE, len(done))
    for _rid, state, _ in other:
        out.add(state)


def _same(kind: str, a: Any, b: Any) -> bool:
    try:
        return canonical(kind, a) == canonical(kind, b)
    except (TypeError, ValueError):
        return a == b


def _reconcile_updates(
    conn: psycopg.Connection[Any],
    client: SalesforceClient,
    call: tables.PendingCall,
    types: Mapping[str, str],
    out: Reconciled,
) -> None:
    fields = sorted({f for values in call.values.values() for f in values})
    held = fetch_records(client, call.object, list(call.values), fields)
    done, other = {}, []
    for rid, values in call.values.items():
        org = held.get(rid)
        if org is None:
            why = (
                "the restore user cannot read this record now (deleted since, or hidden from it by sharing): "
                "whether the write happened cannot be checked"
            )
            other.append((rid, UNCHECKED, why))
            out.unchecked[rid] = why
        elif all(_same(types.get(f, "string"), org.get(f), after) for f, (_b, after) in values.items()):
            done[rid] = rid
        else:
            moved = {
                f: org.get(f)
                for f, (_b, after) in values.items()
                if not _same(types.get(f, "string"), org.get(f), after)
            }
            other.append((rid, NOT_APPLIED, f"the org holds {moved}"[:2000]))
    tables.journal_finish(conn, call.call_id, done=done, other=other)
    out.add(DONE, len(done))
    for _rid, state, _ in other:
        out.add(state)


def _reconcile_undeletes(
    conn: psycopg.Connection[Any], client: SalesforceClient, call: tables.PendingCall, out: Reconciled
) -> None:
    ids = list(call.values)
    live = {rid for rid, rec in fetch_records(client, call.object, ids, []).items() if rec is not None}
    rest = [rid for rid in ids if rid not in live]
    in_bin = query_by_ids(client, call.object, rest, ["IsDeleted"], include_deleted=True) if rest else {}
    other = []
    for rid in rest:
        if rid in in_bin:
            other.append((rid, NOT_APPLIED, "still in the recycle bin"))
        else:
            why = "the restore user cannot read this record (purged since, or hidden from it by sharing)"
            other.append((rid, UNCHECKED, why))
            out.unchecked[rid] = why
    tables.journal_finish(conn, call.call_id, done={rid: rid for rid in live}, other=other)
    out.undeleted.update(live)
    out.add(DONE, len(live))
    for _rid, state, _ in other:
        out.add(state)


def _reconcile_creates(
    conn: psycopg.Connection[Any],
    client: SalesforceClient,
    org_alias: str,
    object_name: str,
    calls: Sequence[tables.PendingCall],
    types: Mapping[str, str],
    out: Reconciled,
) -> None:
    """Find the records pending creates made (module docstring) and complete their rows."""
    fields = sorted({f for c in calls for v in c.values.values() for f in v if f != "Id"})
    claimed: set[str] = set()  # records matched by this reconciliation (also in the id map once saved)
    for user, after in sorted({(c.written_by, c.created_after) for c in calls}, key=lambda k: (k[0] or "", k[1] or "")):
        group = [c for c in calls if c.written_by == user and c.created_after == after]
        candidates = _created_records(client, object_name, fields, user, after)
        # a candidate an earlier restore re-created a record as is taken: asked of the id map for these ids only
        # (the org's whole map holds every record ever re-created in it)
        known = mapped_target_ids(conn, org_alias, org_alias, [rec["Id"] for rec in candidates])
        free = [rec for rec in candidates if rec["Id"] not in claimed and rec["Id"] not in known]
        for call in group:
            done: dict[str, str] = {}
            other: list[tuple[str, str, str | None]] = []
            for rid, values in call.values.items():
                sent = {f: after_v for f, (_b, after_v) in values.items() if f != "Id"}
                match = next(
                    (rec for rec in free if all(_same(types.get(f, "string"), rec.get(f), v) for f, v in sent.items())),
                    None,
                )
                if match is not None:
                    free.remove(match)
                    claimed.add(match["Id"])
                    done[rid] = match["Id"]
                elif not free:
                    other.append((rid, NOT_APPLIED, "no record created by the restore user matches it"))
                else:
                    why = (
                        f"{len(free)} record(s) created by the restore user since {after or 'the plan'} match no "
                        "pending create exactly (automation may have changed them): not re-created, check the "
                        "org for a copy of it"
                    )
                    other.append((rid, UNCHECKED, why))
                    out.unchecked[rid] = why
            tables.journal_finish(conn, call.call_id, done=done, other=other)
            if done:
                save_id_map(conn, org_alias, org_alias, object_name, done)
                out.created.update(done)
            out.add(DONE, len(done))
            for _rid, state, _ in other:
                out.add(state)


def _created_records(
    client: SalesforceClient, object_name: str, fields: Sequence[str], user: str | None, after: str | None
) -> list[dict[str, Any]]:
    """Records of `object_name` created by `user` at or after `after` (recycle bin included), oldest first."""
    where = []
    if user:
        where.append(f"CreatedById = '{soql.record_ids([user])[0]}'")
    if after:
        where.append(f"CreatedDate >= {soql_datetime(parse_datetime(after))}")
    wanted = soql.field_names(["Id", *fields])
    query = f"SELECT {', '.join(wanted)} FROM {soql.api_name(object_name, 'object')}" + (
        f" WHERE {' AND '.join(where)}" if where else ""
    )
    found = list(client.records_by_soql(query, include_deleted=True))
    return sorted(found, key=lambda rec: rec["Id"])  # ids sort by creation


def unchecked_creates(
    conn: psycopg.Connection[Any], org_alias: str, object_name: str, record_ids: Iterable[str]
) -> dict[str, str]:
    """Records an earlier run may have re-created but reconciliation could not tell: never created again."""
    return tables.journal_unchecked_creates(conn, org_alias, object_name, list(record_ids))


__all__ = [
    "DONE",
    "FAILED",
    "NOT_APPLIED",
    "PENDING",
    "UNCHECKED",
    "CallLog",
    "Journal",
    "Reconciled",
    "reconcile",
    "unchecked_creates",
]
