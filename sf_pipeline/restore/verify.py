"""Verify a restore: read the restored records back from the org and compare them with what was written.

A difference means something changed the record again after our write (a flow, a trigger, a user):
DESIGN.md asks to report exactly those records, since restoring into an org with live automation can
undo a restore without anyone noticing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg

from sf_pipeline.restore import tables
from sf_pipeline.restore.current import DEFAULT_BULK_THRESHOLD, fetch_current
from sf_pipeline.restore.decisions import LIVE, VERIFIABLE_OUTCOMES, mismatches
from sf_pipeline.restore.errors import RestoreVerifyError
from sf_pipeline.restore.plan import RestorePlan
from sf_pipeline.salesforce.client import SalesforceClient
from sf_pipeline.salesforce.values import display


@dataclass
class VerifyResult:
    """Records checked, and per record the (field, expected, actual) the org does not hold."""

    run_id: str
    dry_run: bool = False
    checked: int = 0
    mismatched: dict[str, list[tuple[str, Any, Any]]] = field(default_factory=dict)
    api_calls: int = 0

    @property
    def success(self) -> bool:
        return not self.mismatched

    def summary(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "dry_run": self.dry_run, "checked": self.checked,
                "mismatched": len(self.mismatched), "success": self.success, "api_calls": self.api_calls,
                "mismatches": {rid: [f"{f}: expected {display(e)}, found {display(a)}" for f, e, a in diffs]
                               for rid, diffs in list(self.mismatched.items())[:50]}}


def verify_plan(client: SalesforceClient, plan: RestorePlan, *, conn: psycopg.Connection[Any] | None = None,
                bulk_threshold: int = DEFAULT_BULK_THRESHOLD) -> VerifyResult:
    """Check every record apply restored (or found already right); raise RestoreVerifyError on a difference.

    With `conn`, the plan's status becomes `verified` or `verify_failed`.
    """
    calls_before = client.api_calls
    result = VerifyResult(plan.run_id, dry_run=plan.config.dry_run)
    if plan.config.dry_run:
        return result
    if plan.tree is not None:  # --- hook: whole-hierarchy restore (hierarchy.py)
        from sf_pipeline.restore.hierarchy import verify_tree
        return verify_tree(client, plan, conn=conn)
    id_map = plan.id_map
    expected: dict[str, dict[str, Any]] = {}
    for record in plan.records:
        if record.outcome not in VERIFIABLE_OUTCOMES:
            continue
        values = record.writes(plan.config.on_conflict)
        expected[record.new_id or record.record_id] = {
            f: id_map.get(v, v) if isinstance(v, str) else v for f, v in values.items()}
    fields = list(dict.fromkeys(f for values in expected.values() for f in values))
    fresh, _ = fetch_current(client, plan.object, list(expected), fields, plan.field_types, since=plan.since,
                             bulk_threshold=bulk_threshold)
    for rid, values in expected.items():
        org = fresh.get(rid)
        diffs = mismatches(values, org.values if org is not None and org.state == LIVE else None)
        if diffs:
            result.mismatched[rid] = diffs
    result.checked = len(expected)
    result.api_calls = client.api_calls - calls_before
    if conn is not None:
        tables.set_plan_status(conn, plan.run_id, "verified" if result.success else "verify_failed",
                               {"verify": result.summary()})
    if not result.success:
        shown = "; ".join(f"{rid}: " + ", ".join(f"{f} expected {display(e)} found {display(a)}" for f, e, a in d)
                          for rid, d in list(result.mismatched.items())[:20])
        raise RestoreVerifyError(
            f"{len(result.mismatched)} of {result.checked} restored {plan.object} records do not hold the restored "
            f"values (changed again after the write, e.g. by automation): {shown}", result)
    return result
