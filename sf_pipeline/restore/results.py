"""What a restore's plan, apply and verify report: outcomes per record, failures record by record, API calls spent,
and what each shows in the restore run's metadata (plain values, sf_pipeline.metadata).

Kept apart from apply.py and verify.py so that the errors that carry them (errors.py) need neither.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from sf_pipeline.metadata import Markdown
from sf_pipeline.restore.decisions import NOT_ATTEMPTED
from sf_pipeline.salesforce.values import display


def plan_metadata(summary: Mapping[str, Any]) -> dict[str, Any]:
    """What a plan shows in the run's metadata, from its summary (RestorePlan.summary, FilePlan.summary): records
    planned and to write, counts per classification, the preview table and the notes; a whole-hierarchy restore
    adds per object what it undeletes, re-creates, re-points or cannot, in the order it writes them."""
    metadata = {
        "object": summary["object"],
        "records_planned": summary["records"],
        "records_to_write": summary["records_to_write"],
        "counts": summary["counts"],
        "plan": Markdown(summary["preview"]),
        "notes": "; ".join(summary["notes"]) or "none",
    }
    if "tree" in summary:
        metadata["tree"] = {"objects": summary["tree"], "order": summary["order"], "cannot": summary["cannot"]}
    return metadata


def apply_config_markdown(dry_run_config: Mapping[str, Any], run_id: str) -> Markdown:
    """The launchpad config that writes a dry run's plan: the same config, dry_run: false, plan: <its run id>."""
    config = {**{k: v for k, v in dry_run_config.items() if k != "dry_run"}, "dry_run": False, "plan": run_id}
    text = yaml.safe_dump({"ops": {"restore": {"config": config}}}, sort_keys=False)
    return Markdown(
        "Review the plan above; to write exactly it, launch the restore job with this config (records "
        f"changed in the org since this dry run are refused as conflicts):\n\n```yaml\n{text}```"
    )


@dataclass
class ApplyResult:
    """What apply did: outcomes per record, failures record by record, API calls spent."""

    run_id: str
    dry_run: bool = False
    mode: str = "none"  # collections | bulk: how updates were sent
    outcomes: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # record id -> the org's error
    changed: dict[str, str] = field(default_factory=dict)  # record id -> what moved since the dry run (refused)
    interrupted: str | None = None
    values_written: int = 0
    repointed: int = 0
    id_map: Mapping[str, str] = field(default_factory=dict)  # of an applied plan: tables.PlanIdMap (read on demand)
    reconciled: dict[str, int] = field(default_factory=dict)  # journal rows an earlier run left pending, settled
    unchecked: dict[str, str] = field(default_factory=dict)  # record id -> why the org could not tell
    api_calls: int = 0
    seconds: float = 0.0

    @property
    def success(self) -> bool:
        return not self.failed and self.interrupted is None and not self.outcomes.get(NOT_ATTEMPTED)

    def summary(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "dry_run": self.dry_run,
            "success": self.success,
            "mode": self.mode,
            "outcomes": self.outcomes,
            "values_written": self.values_written,
            "children_repointed": self.repointed,
            "failed": len(self.failed),
            "failures": dict(list(self.failed.items())[:50]),
            "changed_since_plan": len(self.changed),
            "changes": dict(list(self.changed.items())[:50]),
            "interrupted": self.interrupted,
            "recreated": len(self.id_map),
            "reconciled": self.reconciled,
            "unchecked": len(self.unchecked),
            "unchecked_records": dict(list(self.unchecked.items())[:50]),
            "api_calls": self.api_calls,
            "seconds": round(self.seconds, 3),
        }

    def as_metadata(self) -> dict[str, Any]:
        """What the run shows of the apply: outcomes per record, the writes an interrupted earlier run left pending
        and this one settled against the org first (journal.py), values written, and the records refused as
        changed since the dry run (the first 50). An apply that fell short shows its whole summary instead."""
        if not self.success:
            return {"apply": self.summary()}
        return {
            "outcomes": self.outcomes,
            "reconciled": self.reconciled,
            "values_written": self.values_written,
            "changed_since_plan": dict(list(self.changed.items())[:50]),
        }


@dataclass
class VerifyResult:
    """Records checked, and per record the (field, expected, actual) the org does not hold."""

    run_id: str
    dry_run: bool = False
    checked: int = 0
    mismatched: dict[str, list[tuple[str, Any, Any]]] = field(default_factory=dict)
    # among mismatched: records live in the org whose values changed after our write, and by whom (see above)
    automation: dict[str, str] = field(default_factory=dict)
    api_calls: int = 0

    @property
    def success(self) -> bool:
        return not self.mismatched

    def summary(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "dry_run": self.dry_run,
            "checked": self.checked,
            "mismatched": len(self.mismatched),
            "success": self.success,
            "api_calls": self.api_calls,
            "changed_by_automation": len(self.automation),
            "automation": dict(list(self.automation.items())[:50]),
            "mismatches": {
                rid: [f"{f}: expected {display(e)}, found {display(a)}" for f, e, a in diffs]
                for rid, diffs in list(self.mismatched.items())[:50]
            },
        }

    def as_metadata(self) -> dict[str, Any]:
        """What the run shows of the verification: the records checked; on a difference its summary, and apart
        from plain failures how many records automation changed again after our write."""
        if not self.success:
            return {"verify": self.summary(), "changed_by_automation": len(self.automation)}
        return {"verified_records": self.checked}

    def message(self, object_name: str) -> str:
        """What went wrong, automation first: records it changed are not failed writes."""
        parts = []
        if self.automation:
            shown = "; ".join(
                f"{rid}: "
                + ", ".join(f"{f} written {display(e)} now {display(a)}" for f, e, a in self.mismatched[rid])
                + f" ({why})"
                for rid, why in list(self.automation.items())[:20]
            )
            parts.append(
                f"{len(self.automation)} of {self.checked} restored {object_name} records were changed "
                f"again by automation after our write (the restore wrote them; the org's triggers, flows "
                f"or another user changed them since): {shown}"
            )
        other = {rid: d for rid, d in self.mismatched.items() if rid not in self.automation}
        if other:
            shown = "; ".join(
                f"{rid}: " + ", ".join(f"{f} expected {display(e)} found {display(a)}" for f, e, a in d)
                for rid, d in list(other.items())[:20]
            )
            parts.append(
                f"{len(other)} of {self.checked} restored {object_name} records do not hold the restored "
                f"values: {shown}"
            )
        return "; ".join(parts)
