"""`backup_complete` says what the backup cannot prove, end to end: devorg over HTTPS, real runs, real checks.

It fails on a hole (windows not backed up), on records that vanished from the org without the backup knowing
(a Bulk API 2.0 hardDelete by the integration user: devorg's `mass-hard-delete`), and on a delete log that no
longer reaches back to the last good backup (records deleted and then purged with emptyRecycleBin: devorg's
`recycle-bin-purge --empty-bin`); each failure names what is missing and what repairs it, and the check
passes again once the schedule's next windows have run. The windows are real-time (the check compares them
with the wall clock), so the org's clock is set to the last hours.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from sf_pipeline.devorg.scenarios import run_scenario
from sf_pipeline_tests.pipeline_fixtures import Pipeline

pytestmark = pytest.mark.e2e

KEY = "%Y-%m-%d-%H:%M"
NOW = datetime.now(UTC)
T0 = NOW.replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)


def key(moment: datetime) -> str:
    return moment.strftime(KEY)


def check(p: Pipeline) -> dict[str, dict[str, str]]:
    """Run `backup_complete` (one step for every object); per object, its metadata as text."""
    defs = p.defs()
    job = defs.resolve_implicit_global_asset_job_def()
    keys = {dg.AssetCheckKey(dg.AssetKey(["salesforce", o]), "backup_complete") for o in ("Account", "Opportunity")}
    result = job.get_subset(asset_selection=set(), asset_check_selection=keys).execute_in_process(instance=p.instance)
    assert result.success
    out = {}
    for evaluation in result.get_asset_check_evaluations():
        meta = {k: str(v.value) for k, v in evaluation.metadata.items()}
        meta["passed"] = str(evaluation.passed)
        out[evaluation.asset_key.path[-1]] = meta
    return out


def failed(meta: dict[str, str]) -> set[str]:
    return set() if meta["failed"] == "none" else set(meta["failed"].split(", "))


def closed_windows(p: Pipeline) -> list[str]:
    partitions = p.defs().resolve_job_def("backup").partitions_def
    return partitions.get_partition_keys(current_time=datetime.now(UTC) - timedelta(minutes=10))


def test_backup_complete_fails_on_a_hole_a_vanished_record_and_an_expired_delete_log_and_passes_after_repair(
    pipeline_factory,
):
    p = pipeline_factory(
        ["Account", "Opportunity"], partitions={"cron": "0 * * * *", "start": T0.strftime("%Y-%m-%dT%H:%M:%SZ")}
    )
    sf = p.sf()
    p.set_clock(T0 - timedelta(minutes=5))
    account = sf.Account.create({"Name": "Acme"})["id"]
    opps = [
        sf.Opportunity.create(
            {"Name": f"Deal {i}", "StageName": "Prospecting", "CloseDate": "2026-12-31", "AccountId": account}
        )["id"]
        for i in range(8)
    ]

    # A hole: only the first window (the full load) is backed up.
    p.set_clock(T0 + timedelta(hours=1, minutes=5))
    assert p.backup(key(T0)).success
    first = check(p)
    for sobject in ("Account", "Opportunity"):
        meta = first[sobject]
        assert meta["passed"] == "False" and failed(meta) == {"windows"}, meta
        assert f"not backed up: {key(T0 + timedelta(hours=1))}" in meta["windows"]
        assert "backup_schedule asks for them oldest first" in meta["windows_repair"]
    assert first["Opportunity"]["counts"].startswith("the mirror's 8 live records last changed before")
    assert "first load" in first["Opportunity"]["reconciliation"]
    assert first["Opportunity"]["delete_log"].startswith("the org's delete log covers every deletion")

    # Records vanish without a trace in queryAll: a Bulk API hardDelete by the integration user.
    p.set_clock(T0 + timedelta(hours=1, minutes=20))
    hard = run_scenario(p.devorg.org, "mass-hard-delete", fraction=0.25)
    gone = hard.changed["Opportunity"]
    assert len(gone) == 2
    vanished = check(p)["Opportunity"]
    assert {"counts", "delete_log"} <= failed(vanished), vanished
    assert "at least 2 vanished from the org" in vanished["counts"]
    assert "reconciles the ids" in vanished["counts_repair"]
    # a hard delete moves the delete log's start (earliestDateAvailable) past the last backup too
    assert "before the org's delete log starts" in vanished["delete_log"]
    assert vanished["delete_log_repair"].startswith("automatic: the next window's run")

    # The repair: the schedule's next window reconciles, finds both and closes them in history.
    p.set_clock(T0 + timedelta(hours=2, minutes=5))
    assert p.backup(key(T0 + timedelta(hours=1))).success
    repaired = check(p)["Opportunity"]
    assert not {"counts", "reconciliation", "delete_log"} & failed(repaired), repaired
    assert "2 vanished records found, flagged and closed in history" in repaired["reconciliation"]
    assert repaired["counts"].startswith("the mirror's 6 live records")

    # The delete log expires: a record deleted after the last backup, then purged from the recycle bin.
    p.set_clock(T0 + timedelta(hours=2, minutes=10))
    sf = p.sf()
    sf.Opportunity.delete(next(i for i in opps if i not in gone))
    purge = run_scenario(p.devorg.org, "recycle-bin-purge", empty_bin=True)
    assert len(purge.changed["Opportunity"]) == 1
    expired = check(p)["Opportunity"]
    assert "delete_log" in failed(expired), expired
    assert (
        f"the last good backup ends {(T0 + timedelta(hours=2)):%Y-%m-%d %H:%M} UTC, before the org's delete "
        "log starts" in expired["delete_log"]
    )
    assert "reconciles every id in full" in expired["delete_log_repair"]

    # The repair: every window left, backed up as the schedule would (here as one range), re-syncs in full.
    p.set_clock(datetime.now(UTC))
    closed = closed_windows(p)
    last = max(closed[-1], key(T0 + timedelta(hours=2)))
    assert p.backup(key(T0 + timedelta(hours=2)), last).success
    final = check(p)
    for sobject in ("Account", "Opportunity"):
        assert final[sobject]["passed"] == "True", final[sobject]
        assert final[sobject]["windows"].startswith("all ")
    assert final["Opportunity"]["counts"].startswith("the mirror's 5 live records")
    assert "every id is reconciled" in final["Opportunity"]["reconciliation"]
    assert "1 vanished records found" in final["Opportunity"]["reconciliation"]
