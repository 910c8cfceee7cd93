"""What a restore's apply and verify report: outcomes per record, failures record by record, API calls spent.

Kept apart from apply.py and verify.py so that the errors that carry them (errors.py) need neither.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sf_pipeline.restore.decisions import NOT_ATTEMPTED
from sf_pipeline.salesforce.values import display


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
    id_map: dict[str, str] = field(default_factory=dict)
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
