"""Carry out a plan: undelete, re-create, re-point children, update. Nothing happens for a dry run.

The plan is the one a dry run stored (reviewed.load_plan). Before the first write, apply takes the lock of
(target org, object), so two restores of one object and org never write at once (a second one fails fast,
RestoreBusyError), and checks that the target alias still reaches the org it always reached (org_identity).
Order matters: records come back first (undelete, or re-create with their as_of values), so updates can
point at them. Right before updating, the records are fetched again and compared with the plan: a value
that moved since the dry run is a conflict, refused and reported per record (`changed_since_plan`), even
with on_conflict: overwrite; a value already right is not written again. Every value is logged in
`sf_pipeline.restore_audit` before the call that writes it and completed after (journal.py), so a run killed
at any point leaves an exact account: the next apply of that object and org first reconciles what was left
pending against the org (an update read back, a Bulk job's results read, a re-created record found), then
finishes the job without writing anything twice. Records already re-created (sf_pipeline.id_map) are not
created again, nor records whose re-creation could not be settled (`unchecked`: reported, for a person to
check); records already undeleted are not undeleted again. A create whose answer was lost (5xx, timeout) is
never sent again before reconciliation found what it created. Any record not restored as planned fails the
run (RestoreApplyError), never silently.

The stored plan is read back a chunk of records at a time (tables.CHUNK_RECORDS), once per phase (undelete,
re-create, update): each chunk is fetched fresh, written (one Bulk API 2.0 job per chunk when the apply writes more
records than the Bulk threshold), journaled, and its outcomes stored in `sf_pipeline.restore_items` before the next
chunk is read; the result counts the stored outcomes. The new ids of re-created records are read a chunk's worth at a
time (tables.PlanIdMap over sf_pipeline.id_map, which the journal writes as each create is confirmed), and a
re-created record's lookups to other re-created records are found in the stored plan for its chunk: what apply holds
is one chunk's worth, whatever the plan's size.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator, Mapping
from contextlib import closing
from typing import Any

import psycopg
from psycopg import sql

from sf_pipeline.restore import tables
from sf_pipeline.restore.current import DEFAULT_BULK_THRESHOLD, describe, fetch_current, field_types
from sf_pipeline.restore.decisions import (
    CHANGED_SINCE_PLAN,
    CONFLICT,
    CREATE,
    CREATED,
    FAILED,
    LIVE,
    NOT_ATTEMPTED,
    NOTHING_TO_DO,
    RESTORE,
    SKIPPED_CONFLICT,
    UNDELETE,
    UNDELETED,
    UPDATE,
    WRITTEN,
    RecordItem,
    changed_since_plan,
    changes_to_write,
)
from sf_pipeline.restore.errors import INTERRUPTIONS, RestoreApplyError, RestoreConfigError
from sf_pipeline.restore.hierarchy import apply_tree
from sf_pipeline.restore.journal import Journal, Reconciled, reconcile, unchecked_creates
from sf_pipeline.restore.plan import RestorePlan
from sf_pipeline.restore.results import ApplyResult
from sf_pipeline.salesforce.client import SalesforceClient
from sf_pipeline.salesforce.values import csv_text
from sf_pipeline.salesforce.writes import (
    WriteResult,
    bulk_update,
    create_records,
    current_user_id,
    fetch_records,
    undelete,
    update_records,
)
from sf_pipeline.warehouse.errors import HistoryNotFoundError
from sf_pipeline.warehouse.history import history_columns
from sf_pipeline.warehouse.id_map import lookup_id_map
from sf_pipeline.warehouse.names import column_name
from sf_pipeline.warehouse.org_identity import verify_org


def apply_plan(
    conn: psycopg.Connection[Any],
    client: SalesforceClient,
    plan: RestorePlan,
    *,
    bulk_threshold: int = DEFAULT_BULK_THRESHOLD,
) -> ApplyResult:
    """Write the plan to the target org (unless it is a dry run); raise RestoreApplyError on any shortfall,
    RestoreBusyError when another restore of the object into that org is being applied, OrgIdentityError when
    the target alias reaches another org than before (both before any write)."""
    started = time.perf_counter()
    calls_before = client.api_calls
    result = ApplyResult(plan.run_id, dry_run=plan.config.dry_run)
    if plan.config.dry_run:
        return result
    if plan.tree is not None:  # --- hook: whole-hierarchy restore (hierarchy.py)
        return apply_tree(conn, client, plan)
    if client.alias != plan.config.target_org:
        raise RestoreConfigError(
            f"the client is connected to org {client.alias!r} but the plan targets {plan.config.target_org!r}"
        )
    tables.ensure_restore_tables(conn)
    with tables.apply_lock(conn, plan.config.target_org, plan.object, plan.run_id):
        if plan.summary()["records_to_write"]:
            verify_org(conn, client)  # the org this alias always reached, or nothing is written
            tables.set_plan_status(conn, plan.run_id, "applying")
        return _apply(conn, client, plan, result, bulk_threshold, started, calls_before)


def _apply(
    conn: psycopg.Connection[Any],
    client: SalesforceClient,
    plan: RestorePlan,
    result: ApplyResult,
    bulk_threshold: int,
    started: float,
    calls_before: int,
) -> ApplyResult:
    run = _Run(conn, client, plan, result, bulk_threshold)
    tables.reset_outcomes(conn, plan.run_id)
    try:
        run.reconcile(plan.object)
        run.undelete()
        run.create()
        run.repoint_children()
        run.update()
    except INTERRUPTIONS as exc:
        result.interrupted = f"{type(exc).__name__}: {str(exc)[:500]}"
        try:  # settle what the failed call left pending while the org answers; else the next run does
            run.reconcile(plan.object)
        except INTERRUPTIONS:
            pass
    finally:
        run.settle_the_rest()
        result.outcomes = tables.outcome_counts(conn, plan.run_id)
        result.id_map = run.id_map
        result.api_calls = client.api_calls - calls_before
        result.seconds = time.perf_counter() - started
        tables.set_plan_status(
            conn, plan.run_id, "applied" if result.success else "apply_failed", {"apply": result.summary()}
        )
    if not result.success:
        raise RestoreApplyError(_failure_message(plan, result), result)
    return result


def _failure_message(plan: RestorePlan, result: ApplyResult) -> str:
    parts = [f"restore {plan.run_id} of {plan.object} in org {plan.config.target_org!r} did not complete:"]
    if result.failed:
        shown = "; ".join(f"{rid}: {msg}" for rid, msg in list(result.failed.items())[:20])
        more = f" (+{len(result.failed) - 20} more)" if len(result.failed) > 20 else ""
        parts.append(f"{len(result.failed)} record(s) failed: {shown}{more}.")
    if result.outcomes.get(NOT_ATTEMPTED):
        parts.append(f"{result.outcomes[NOT_ATTEMPTED]} record(s) were not attempted.")
    if result.interrupted:
        parts.append(f"The run stopped on {result.interrupted}.")
    if result.unchecked:
        shown = "; ".join(f"{rid}: {why}" for rid, why in list(result.unchecked.items())[:10])
        parts.append(f"{len(result.unchecked)} record(s) could not be checked in the org: {shown}.")
    parts.append(
        "Every value written is in sf_pipeline.restore_audit; apply the same plan again (the same config, "
        f"plan: {plan.plan_of or plan.run_id}) to finish: records already restored are left as they are."
    )
    return " ".join(parts)


class _Run:
    """One apply: the plan, the org, the audit, and the outcome of each record as it happens."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        client: SalesforceClient,
        plan: RestorePlan,
        result: ApplyResult,
        bulk_threshold: int,
    ):
        self.conn = conn
        self.client = client
        self.plan = plan
        self.result = result
        self.bulk_threshold = bulk_threshold
        self._user: str | None = None
        self.on_conflict = plan.config.on_conflict
        # old id -> new id of the plan's re-created records, read from sf_pipeline.id_map a chunk's worth at a time
        self.id_map = plan.id_map = tables.PlanIdMap(conn, plan.run_id, plan.config.target_org)
        self._journal: Journal | None = None
        self._reconciled: set[str] = set()
        tally = plan.summary()
        # A plan of several chunks that writes more records than the Bulk threshold reads and writes every chunk
        # through Bulk API 2.0 (one job each), as one call would have for the whole plan.
        self.many = tally["records"] > tables.CHUNK_RECORDS and tally["records_to_write"] > bulk_threshold

    @property
    def user(self) -> str | None:
        """The Salesforce user the writes are made as (asked once, only when something is written)."""
        if self._user is None:
            self._user = current_user_id(self.client) or ""
        return self._user or None

    @property
    def journal(self) -> Journal:
        if self._journal is None:
            self._journal = Journal(self.conn, self.plan.run_id, self.plan.config.target_org, self.user)
        return self._journal

    def reconcile(self, object_name: str) -> Reconciled:
        """Settle the journal rows of `object_name` left pending (by an earlier run, or a call of this one whose
        answer was lost) before writing to it."""
        found = reconcile(self.conn, self.client, self.plan.config.target_org, object_name)
        for state, n in found.counts.items():
            self.result.reconciled[state] = self.result.reconciled.get(state, 0) + n
        self.result.unchecked.update(found.unchecked)
        self._reconciled.add(object_name.lower())
        if found.counts:
            self.plan.notes.append(
                f"settled {sum(found.counts.values())} write(s) to {object_name} an earlier call "
                f"left pending: {found.counts}"
            )
        return found

    def fail(self, record: RecordItem, result: WriteResult) -> None:
        record.outcome, record.error = FAILED, result.message
        self.result.failed[record.record_id] = result.message

    def chunks(self, where: str, **params: Any) -> Iterator[list[RecordItem]]:
        """The plan's records matching `where` (SQL over restore_items), a chunk at a time; each chunk's outcomes
        are stored once the caller is done with it, also when it stops half-way (use it under `closing`)."""
        records: list[RecordItem] = []
        try:
            for records in self.plan.records.chunks(sql.SQL(where), params, conn=self.conn):
                yield records
                self.save(records)
                records = []
        finally:
            if records:
                self.save(records)

    def save(self, records: list[RecordItem]) -> None:
        tables.set_outcomes(
            self.conn, self.plan.run_id, ((r.record_id, r.outcome, r.error) for r in records if r.outcome is not None)
        )

    def settle_the_rest(self) -> None:
        """Records no phase took an outcome for: not attempted (the run stopped first), or nothing to do."""
        on_conflict = self.on_conflict
        with closing(self.chunks("outcome IS NULL")) as chunks:
            for records in chunks:
                for record in records:
                    if record.writes(on_conflict):
                        record.outcome = NOT_ATTEMPTED
                    else:
                        record.outcome = SKIPPED_CONFLICT if record.status == CONFLICT else NOTHING_TO_DO

    # ----------------------------------------------------------------- undelete
    def undelete(self) -> None:
        with closing(self.chunks("action = %(action)s", action=UNDELETE)) as chunks:
            for records in chunks:
                self._undelete(records)

    def _undelete(self, records: list[RecordItem]) -> None:
        # Live already (an earlier run of this plan undeleted them): not undeleted twice.
        live = {
            rid
            for rid, rec in fetch_records(self.client, self.plan.object, [r.record_id for r in records], []).items()
            if rec is not None
        }
        for record in records:
            if record.record_id in live:
                record.outcome = UNDELETED
        records = [r for r in records if r.record_id not in live]
        if not records:
            return
        log = self.journal.calls(self.plan.object, "undelete")
        results = undelete(self.client, [r.record_id for r in records], journal=log)
        back = self.reconcile(self.plan.object).undeleted if log.unknown_ids else set()
        for record, res in zip(records, results, strict=True):
            if res.success or record.record_id in back:  # refused as a repeat of an attempt the org carried out
                record.outcome = UNDELETED
            else:
                self.fail(record, res)

    # ----------------------------------------------------------------- re-create
    def create(self) -> None:
        with closing(self.chunks("action = %(action)s", action=CREATE)) as chunks:
            for records in chunks:
                self._create(records)

    def later(self, records: list[RecordItem]) -> dict[str, dict[str, str]]:
        """Per record of the chunk, its lookups to records the plan re-creates: set once those have their new ids
        (by `update`), not in the create. Read from the stored plan for the chunk, not held through the run."""
        values = {r.record_id: r.writes(self.on_conflict) for r in records}
        ids = {v for vs in values.values() for v in vs.values() if isinstance(v, str) and len(v) in (15, 18)}
        gone = tables.plan_record_ids(self.conn, self.plan.run_id, action=CREATE, among=list(ids)) if ids else set()
        out = {}
        for rid, vs in values.items():
            later = {f: v for f, v in vs.items() if isinstance(v, str) and v in gone}
            if later:
                out[rid] = later
        return out

    def _create(self, records: list[RecordItem]) -> None:
        alias = self.plan.config.target_org
        unsettled = unchecked_creates(self.conn, alias, self.plan.object, [r.record_id for r in records])
        known = lookup_id_map(self.conn, alias, alias, [r.record_id for r in records])
        deferred = self.later(records)
        payloads = []
        for record in records:
            values = record.writes(self.on_conflict)
            # Lookups to other records being re-created are set once those have their new ids.
            later = deferred.get(record.record_id, {})
            if record.record_id in known:  # re-created by an earlier run of this plan: never twice
                record.outcome, record.new_id = CREATED, known[record.record_id]
            elif record.record_id in unsettled:
                record.outcome, record.error = FAILED, unsettled[record.record_id]
                self.result.failed[record.record_id] = record.error
                self.result.unchecked[record.record_id] = record.error
            else:
                payloads.append({f: v for f, v in values.items() if f not in later})
        by_payload = {id(p): r for p, r in zip(payloads, [r for r in records if r.outcome is None], strict=True)}

        def written(pairs: list[tuple[Mapping[str, Any], WriteResult]]) -> None:
            for payload, res in pairs:
                record = by_payload[id(payload)]
                record.outcome, record.new_id = CREATED, res.id  # the journal puts the pair in sf_pipeline.id_map

        for _attempt in range(3):  # a lost answer: reconcile, then send only what the org did not create
            if not payloads:
                break
            log = self.journal.calls(
                self.plan.object,
                "create",
                record_id=lambda p: by_payload[id(p)].record_id,
                created_after=self.plan.since,
            )
            results = create_records(self.client, self.plan.object, payloads, on_written=written, journal=log)
            lost = []
            for payload, res in zip(payloads, results, strict=True):
                if res.outcome_unknown:
                    lost.append(payload)
                elif not res.success:
                    self.fail(by_payload[id(payload)], res)
            if not lost:
                break
            # The org may have created them: find what it did before sending anything again.
            found = self.reconcile(self.plan.object)
            payloads = []
            for payload in lost:
                record = by_payload[id(payload)]
                if record.record_id in found.created:
                    record.outcome, record.new_id = CREATED, found.created[record.record_id]
                elif record.record_id in found.unchecked:
                    record.outcome, record.error = FAILED, found.unchecked[record.record_id]
                    self.result.failed[record.record_id] = record.error
                else:
                    payloads.append(payload)
        for record in by_payload.values():
            if record.outcome is None:  # lost again on every attempt, and not found in the org
                record.outcome, record.error = FAILED, "the org's answer to its creation was lost three times"
                self.result.failed[record.record_id] = record.error

    # ----------------------------------------------------------------- children of re-created records
    def repoint_children(self) -> None:
        """Point lookups that referenced a re-created record (at as_of) to its new id, where the org still
        holds the old id or nothing there (a deleted parent clears its children's lookups). The re-created records
        are taken a chunk at a time (their children read for that chunk)."""
        if self.plan.config.as_of is None or not len(self.id_map):
            return
        for rel in describe(self.client, self.plan.object).get("childRelationships") or []:
            child, fname = rel.get("childSObject"), rel.get("field")
            if not child or not fname:
                continue
            try:
                if column_name(fname) not in history_columns(self.conn, child):
                    continue
                child_fields = describe(self.client, child)["fields"]
            except (HistoryNotFoundError, RestoreConfigError):
                continue
            spec = next((f for f in child_fields if f["name"] == fname), None)
            if spec is None or not spec.get("updateable"):
                continue
            recreated = iter(self.id_map)
            while parents := list(itertools.islice(recreated, tables.CHUNK_RECORDS)):
                pointers = tables.children_at(self.conn, child, fname, parents, self.plan.config.as_of)
                if child == self.plan.object and pointers:  # records of the plan itself are restored by it
                    in_plan = tables.plan_record_ids(self.conn, self.plan.run_id, among=[cid for cid, _ in pointers])
                    pointers = [(cid, old) for cid, old in pointers if cid not in in_plan]
                if pointers:
                    self._repoint(child, fname, field_types(child_fields), pointers)

    def _repoint(self, child: str, fname: str, types: Mapping[str, str], pointers: list[tuple[str, str]]) -> None:
        id_map = self.id_map.among([*(cid for cid, _ in pointers), *(old for _, old in pointers)])
        if child.lower() not in self._reconciled:
            self.reconcile(child)
        targets = {id_map.get(cid, cid): id_map[old] for cid, old in pointers}
        olds = {id_map.get(cid, cid): old for cid, old in pointers}
        fresh, _ = fetch_current(self.client, child, list(targets), [fname], types)
        payloads = []
        for cid, new in targets.items():
            org = fresh.get(cid)
            if org is None or org.state != LIVE:
                continue
            if org.values.get(fname) in (None, olds[cid]):
                payloads.append({"Id": cid, fname: new})
            else:
                self.plan.notes.append(
                    f"{child} {cid}: {fname} not re-pointed to {new}, it now holds {org.values.get(fname)}"
                )

        def written(pairs: list[tuple[Mapping[str, Any], WriteResult]]) -> None:
            self.result.repointed += len(pairs)

        log = self.journal.calls(
            child, "repoint", befores={p["Id"]: {fname: fresh[p["Id"]].values.get(fname)} for p in payloads}
        )
        for payload, res in zip(
            payloads, update_records(self.client, child, payloads, on_written=written, journal=log), strict=True
        ):
            if not res.success:
                self.result.failed[payload["Id"]] = f"re-pointing {child}.{fname}: {res.message}"

    # ----------------------------------------------------------------- update
    def update(self) -> None:
        # records with a value to write, and records brought back (their values are checked afresh)
        where = (
            "(action = %(update)s AND classification IN (%(restore)s, %(conflict)s)) "
            "OR outcome IN (%(undeleted)s, %(created)s)"
        )
        params = {
            "update": UPDATE,
            "restore": RESTORE,
            "conflict": CONFLICT,
            "undeleted": UNDELETED,
            "created": CREATED,
        }
        with closing(self.chunks(where, **params)) as chunks:
            for records in chunks:
                self._update(records)

    def _update(self, chunk: list[RecordItem]) -> None:
        plan = self.plan
        deferred = self.later([r for r in chunk if r.action == CREATE and r.outcome == CREATED])
        records = [
            r
            for r in chunk
            if r.outcome != FAILED
            and (
                (r.action == UPDATE and r.writes(self.on_conflict))
                or (r.action == UNDELETE and r.outcome == UNDELETED)
                or (r.action == CREATE and r.outcome == CREATED and deferred.get(r.record_id))
            )
        ]
        if not records:
            return
        # the new ids of the chunk's re-created records and of the re-created records its values point to
        id_map = self.id_map.among(
            [
                *(r.record_id for r in records if r.action == CREATE),
                *(
                    v
                    for r in records
                    for v in r.writes(self.on_conflict).values()
                    if isinstance(v, str) and len(v) in (15, 18)
                ),
            ]
        )
        for r in records:
            if r.action == CREATE:
                r.new_id = id_map.get(r.record_id)
        live = [r.new_id or r.record_id for r in records]
        fresh, _ = fetch_current(
            self.client,
            plan.object,
            live,
            plan.fields,
            plan.field_types,
            since=plan.since,
            bulk_threshold=self.bulk_threshold,
            bulk=self.many,
        )
        payloads: list[dict[str, Any]] = []
        owners: dict[int, RecordItem] = {}
        befores: dict[str, Mapping[str, Any]] = {}
        for record, target in zip(records, live, strict=True):
            org = fresh.get(target)
            values = org.values if org is not None and org.state == LIVE else None
            if record.action == CREATE:
                changes = {f: id_map.get(v, v) for f, v in deferred[record.record_id].items()}
                outcome = WRITTEN
            else:
                changes, outcome = changes_to_write(record, values, self.on_conflict, remap=id_map)
            if not changes:
                if record.outcome is None:
                    record.outcome = outcome
                if outcome == CHANGED_SINCE_PLAN and values is not None:
                    record.error = changed_since_plan(record, values, record.writes(self.on_conflict))
                    self.result.changed[record.record_id] = record.error or outcome
                continue
            payload = {"Id": target, **changes}
            payloads.append(payload)
            owners[id(payload)] = record
            befores[target] = values or {}
        del fresh
        if not payloads:
            return
        log = self.journal.calls(plan.object, "update", befores=befores)
        if len(payloads) > self.bulk_threshold or self.many:
            self.result.mode = "bulk"
            results = bulk_update(
                self.client, plan.object, payloads, csv_text, on_written=self._written(owners), journal=log
            )
        else:
            if self.result.mode != "bulk":
                self.result.mode = "collections"
            results = update_records(self.client, plan.object, payloads, on_written=self._written(owners), journal=log)
        for payload, res in zip(payloads, results, strict=True):
            if not res.success:
                self.fail(owners[id(payload)], res)

    def _written(self, owners: Mapping[int, RecordItem]):
        def written(pairs: list[tuple[Mapping[str, Any], WriteResult]]) -> None:
            for payload, _res in pairs:
                record = owners[id(payload)]
                if record.outcome not in (UNDELETED, CREATED):
                    record.outcome = WRITTEN
                self.result.values_written += len(payload) - 1

        return written


__all__ = ["ApplyResult", "apply_plan"]
