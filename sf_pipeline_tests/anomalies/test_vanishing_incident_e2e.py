"""End to end: devorg's `mass-hard-delete` (purging 150 of 400 Opportunities once raised no incident),
backed up through Dagster and dbt, raises a mass-vanishing incident in the next window: how many, when, who
(the Bulk job's owner), and a restore config that re-creates the records from history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sf_pipeline.anomalies import report_incident, run_detectors
from sf_pipeline.devorg.generator import generate_org
from sf_pipeline.devorg.scenarios import run_scenario

T0 = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)  # the partitions start of the pipeline fixture's settings


def key(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d-%H:%M")


@pytest.mark.e2e
def test_mass_hard_delete_raises_an_incident_in_the_next_window_with_a_restore_that_recreates(pipeline_factory):
    p = pipeline_factory(["Account", "Contact", "Opportunity"])
    org = p.devorg.org
    org.set_clock(T0 - timedelta(minutes=1), freeze=True)
    generate_org(org, 400)
    org.set_clock(T0 + timedelta(minutes=10), freeze=True)
    assert p.backup(key(T0)).success
    with p.conn() as conn:
        live = conn.execute("SELECT count(*) FROM salesforce.opportunity WHERE NOT isdeleted").fetchone()[0]

    window = T0 + timedelta(hours=1)
    scenario = run_scenario(org, "mass-hard-delete", at=window + timedelta(minutes=5), fraction=150 / live)
    gone = scenario.changed["Opportunity"]
    assert len(gone) == 150
    org.set_clock(window + timedelta(hours=1, minutes=10), freeze=True)
    assert p.backup(key(window)).success

    with p.conn() as conn:
        findings = run_detectors(conn, "Opportunity", window, window + timedelta(hours=1), history_start=T0)
        vanishing = [f for f in findings if f.detector == "mass_vanishing"]
        assert len(vanishing) == 1, [(f.detector, f.affected_count) for f in findings]
        finding = vanishing[0]
        assert finding.severity == "error"
        assert sorted(finding.record_ids) == sorted(gone) and finding.affected_count == 150
        assert finding.user_id == scenario.user_id  # the Bulk hardDelete job's owner
        assert finding.details["how_learnt"] == "hard-deleted"
        # when: the job's time, to the second (the scenario's jobs ran within its start and finish)
        assert scenario.started_at <= finding.first_change <= finding.last_change <= scenario.finished_at
        report = report_incident(conn, finding)
    config = report.restore_config
    assert config["restore_deleted"] is True and config["changed_by"] is None
    assert config["record_ids"] == sorted(gone)
    assert config["as_of"] == (finding.first_change.replace(microsecond=0) - timedelta(seconds=1)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    assert "re-created from history" in report.restore_note

    # The incident's restore config, as pasted into the restore job: its dry run re-creates every record.
    from sf_pipeline.restore import RestoreConfig, plan_restore
    from sf_pipeline_tests.restore.story import client

    with p.conn() as conn:
        plan = plan_restore(conn, client(p), RestoreConfig.from_dict(config), "recreate-dry")
    assert plan.actions.get("create") == 150, (plan.counts, plan.actions)
