"""Verify a restore: read the restored records back from the org and compare them with what was written.

A difference means something changed the record again after our write (a flow, a trigger, a user):
DESIGN.md asks to report exactly those records, since restoring into an org with live automation can
undo a restore without anyone noticing. A restore is ordinary DML, so the org runs its automation on every
write (Apex Developer Guide, "Triggers and Order of Execution": before-save flows and `before` triggers may
change the values being saved, in the writer's own transaction; after-save flows, workflow field updates and
scheduled paths may update the record again). For each live record that does not hold what we wrote, verify
reads who changed it last (`LastModifiedById`, `SystemModstamp`) and says "changed again by automation after
our write": by another user (automation running as it, an integration, a person), or in our own write or
later as the restore user (a before-save flow, a trigger, a workflow field update). These are named apart from
plain failures in the result (`automation`), in the run's metadata and per record in
`sf_pipeline.restore_items` (outcome `changed_by_automation`).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from sf_pipeline.restore import tables
from sf_pipeline.restore.current import DEFAULT_BULK_THRESHOLD, fetch_current
from sf_pipeline.restore.decisions import CREATE, LIVE, VERIFIABLE_OUTCOMES, RecordItem, mismatches
from sf_pipeline.restore.errors import RestoreVerifyError
from sf_pipeline.restore.hierarchy import verify_tree
from sf_pipeline.restore.plan import RestorePlan
from sf_pipeline.restore.results import VerifyResult
from sf_pipeline.salesforce.client import SalesforceClient
from sf_pipeline.salesforce.writes import current_user_id, fetch_records

CHANGED_BY_AUTOMATION = "changed_by_automation"  # the outcome of a record whose written values automation changed


def explain_changes(client: SalesforceClient, object_name: str, ids: list[str]) -> dict[str, str]:
    """Why each live record among `ids` holds other values than the restore wrote: who changed it last.

    The restore's own user as the last modifier means the change happened in our write's transaction (a
    before-save flow, a `before` trigger, a workflow field update: Salesforce keeps the writer as
    LastModifiedById) or in a later write as that user; another user means a later change by it."""
    if not ids:
        return {}
    ours = current_user_id(client)
    out: dict[str, str] = {}
    for rid, rec in fetch_records(client, object_name, ids, ["LastModifiedById", "SystemModstamp"]).items():
        if rec is None:
            continue
        by, stamp = rec.get("LastModifiedById"), rec.get("SystemModstamp")
        if ours is not None and by == ours:
            out[rid] = (
                f"changed again by automation after our write: last modified by the restore user itself "
                f"({by}) at {stamp}, so in our write's own transaction (a before-save flow, a trigger, a "
                "workflow field update) or by a later write as that user"
            )
        else:
            out[rid] = (
                f"changed again by automation after our write: last modified by user {by} at {stamp}, "
                "not the restore user (automation running as that user, an integration, or a person)"
            )
    return out


def verify_plan(
    client: SalesforceClient,
    plan: RestorePlan,
    *,
    conn: psycopg.Connection[Any] | None = None,
    bulk_threshold: int = DEFAULT_BULK_THRESHOLD,
) -> VerifyResult:
    """Check every record apply restored (or found already right); raise RestoreVerifyError on a difference.

    With `conn`, the plan's status becomes `verified` or `verify_failed`.
    """
    calls_before = client.api_calls
    result = VerifyResult(plan.run_id, dry_run=plan.config.dry_run)
    if plan.config.dry_run:
        return result
    if plan.tree is not None:  # --- hook: whole-hierarchy restore (hierarchy.py)
        return verify_tree(client, plan, conn=conn)
    # chunk by chunk: the records apply restored or found right, read back from the org and compared
    where = sql.SQL("outcome = ANY(%(verifiable)s)")
    params = {"verifiable": sorted(VERIFIABLE_OUTCOMES)}
    stored = plan.records
    db = conn or stored.conn
    count = tables.count_plan_records(db, plan.run_id, where=where, params=params)
    many = count > tables.CHUNK_RECORDS and count > bulk_threshold  # every chunk through Bulk API 2.0
    recreated = tables.PlanIdMap(db, plan.run_id, plan.config.target_org)
    for records in stored.chunks(where, params, conn=db):
        _verify_chunk(client, plan, records, result, bulk_threshold, many, recreated)
        if conn is not None and result.automation:  # per record: what apply did stays visible as what happened
            tables.set_outcomes(
                conn,
                plan.run_id,
                [
                    (r.record_id, CHANGED_BY_AUTOMATION, result.automation[r.record_id])
                    for r in records
                    if r.record_id in result.automation
                ],
            )
    result.api_calls = client.api_calls - calls_before
    if conn is not None:
        tables.set_plan_status(
            conn, plan.run_id, "verified" if result.success else "verify_failed", {"verify": result.summary()}
        )
    if not result.success:
        raise RestoreVerifyError(result.message(plan.object), result)
    return result


def _verify_chunk(
    client: SalesforceClient,
    plan: RestorePlan,
    records: list[RecordItem],
    result: VerifyResult,
    bulk_threshold: int,
    many: bool,
    recreated: tables.PlanIdMap,
) -> None:
    writes = {r.record_id: r.writes(plan.config.on_conflict) for r in records}
    # new ids of the chunk's re-created records, and of the re-created records its values point to
    id_map = recreated.among(
        [
            *(r.record_id for r in records if r.action == CREATE),
            *(v for vs in writes.values() for v in vs.values() if isinstance(v, str) and len(v) in (15, 18)),
        ]
    )
    expected: dict[str, dict[str, Any]] = {}
    for record in records:
        values = writes.pop(record.record_id)
        target = id_map.get(record.record_id, record.record_id) if record.action == CREATE else record.record_id
        expected[target] = {f: id_map.get(v, v) if isinstance(v, str) else v for f, v in values.items()}
    fields = list(dict.fromkeys(f for values in expected.values() for f in values))
    fresh, _ = fetch_current(
        client,
        plan.object,
        list(expected),
        fields,
        plan.field_types,
        since=plan.since,
        bulk_threshold=bulk_threshold,
        bulk=many,
    )
    mismatched = []
    for rid, values in expected.items():
        org = fresh.get(rid)
        diffs = mismatches(values, org.values if org is not None and org.state == LIVE else None)
        if diffs:
            result.mismatched[rid] = diffs
            mismatched.append(rid)
    result.checked += len(expected)
    live = [rid for rid in mismatched if (org := fresh.get(rid)) is not None and org.state == LIVE]
    result.automation.update(explain_changes(client, plan.object, live))
