"""How `backup_complete` judges the org's counts, the last reconciliation and the delete log (plain functions;
the end-to-end test with devorg is test_backup_complete_e2e.py)."""

from datetime import UTC, datetime, timedelta

from sf_pipeline.backup.completeness import (
    LastReconciliation,
    OrgEvidence,
    counts_finding,
    delete_log_finding,
    reconciliation_finding,
)

W = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


def org(live: int, changed: int = 0, covered: bool | None = True, earliest: datetime | None = None) -> OrgEvidence:
    return OrgEvidence(live, changed, covered, earliest)


def test_counts_hold_within_the_records_the_org_changed_since_the_newest_backed_up_window():
    assert counts_finding(W, 100, org(100)).passed
    assert counts_finding(W, 103, org(100, changed=3)).passed  # three deleted or edited since W
    missing = counts_finding(W, 98, org(100, changed=5))
    assert not missing.passed and "2 missing from the backup" in missing.detail
    vanished = counts_finding(W, 110, org(100, changed=3))
    assert not vanished.passed and "at least 7 vanished from the org" in vanished.detail
    assert "reconciles the ids" in vanished.repair
    assert not counts_finding(W, None, org(0)).passed


def test_the_last_reconciliation_must_exist_and_be_recent_and_says_what_it_found():
    assert not reconciliation_finding(None, W, 24).passed
    old = LastReconciliation(W, W - timedelta(hours=25), "scheduled", 0, 0)
    assert not reconciliation_finding(old, W, 24).passed
    found = reconciliation_finding(LastReconciliation(W, W, "counts differ", 4, 0), W, 24)
    assert found.passed and "4 vanished records found, flagged and closed in history" in found.detail


def test_a_delete_log_starting_after_the_last_good_backup_fails_and_repairs_itself():
    assert delete_log_finding(W, org(1, covered=None)).passed
    assert delete_log_finding(W, org(1, covered=True, earliest=W - timedelta(days=15))).passed
    expired = delete_log_finding(W, org(1, covered=False, earliest=W + timedelta(minutes=10)))
    assert not expired.passed
    assert "before the org's delete log starts (2026-12-01 03:10 UTC" in expired.detail
    assert expired.repair.startswith("automatic: the next window's run")
