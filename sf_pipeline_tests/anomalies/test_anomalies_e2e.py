"""End to end: devorg's damage scenarios, backed up through Dagster and dbt, are found in the history
exactly as devorg says they happened; its business day is not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sf_pipeline.anomalies import Finding, report_incident, run_detectors
from sf_pipeline.devorg.generator import generate_org
from sf_pipeline.devorg.scenarios import ScenarioResult, run_scenario

T0 = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)  # the partitions start of the pipeline fixture's settings
OBJECTS = ["Account", "Contact", "Opportunity", "Case", "Invoice__c"]
FIELD_NAMES = {"accountid": "AccountId", "ownerid": "OwnerId", "status__c": "Status__c"}


def key(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d-%H:%M")


def only(findings: list[Finding], detector: str) -> Finding:
    matching = [f for f in findings if f.detector == detector]
    assert len(matching) == 1, [(f.detector, f.fields, f.affected_count) for f in findings]
    return matching[0]


def assert_matches(finding: Finding, scenario: ScenarioResult, ids: list[str]) -> None:
    """The finding names the scenario's user, exactly its records, and its first and last change."""
    assert finding.severity == "error"
    assert finding.user_id == scenario.user_id and finding.acted_alone
    assert sorted(finding.record_ids) == sorted(ids) and finding.affected_count == len(ids)
    # One transaction per batch of 200, the frozen clock one second further after each.
    assert finding.first_change == scenario.started_at
    assert finding.last_change == scenario.started_at + timedelta(seconds=scenario.details["batches"] - 1)


@pytest.mark.e2e
def test_devorg_damage_scenarios_are_found_exactly_and_a_business_day_is_not(pipeline_factory) -> None:
    p = pipeline_factory(OBJECTS)
    org = p.devorg.org
    org.set_clock(T0 - timedelta(minutes=1), freeze=True)
    generate_org(org, 1500)
    users = {org.user(k).user_id: k for k in ("admin", "integration", "sales1", "sales2", "sales3", "support")}

    org.set_clock(T0 + timedelta(minutes=10), freeze=True)
    assert p.backup(key(T0)).success  # the first window: the full load

    day = run_scenario(org, "business-day", at=T0 + timedelta(hours=1))
    assert day.finished_at < T0 + timedelta(hours=10)
    org.set_clock(T0 + timedelta(hours=10, minutes=1), freeze=True)
    assert p.backup(key(T0 + timedelta(hours=1)), key(T0 + timedelta(hours=9))).success  # one backfill run
    # Then each damage in its own window, backed up ten minutes after it closes, as the schedule does.
    results = {}
    for hour, name in enumerate(["orphan-opportunities", "mass-delete", "owner-takeover", "picklist-wipe"], 10):
        window = T0 + timedelta(hours=hour)
        results[name] = run_scenario(org, name, at=window + timedelta(minutes=5))
        org.set_clock(window + timedelta(hours=1, minutes=10), freeze=True)
        assert p.backup(key(window)).success

    def check(object_name: str, hour: int) -> list[Finding]:
        start = T0 + timedelta(hours=hour)
        with p.conn() as conn:
            return run_detectors(
                conn, object_name, start, start + timedelta(hours=1), user_names=users, history_start=T0
            )

    for hour in range(1, 10):
        for object_name in OBJECTS:
            findings = check(object_name, hour)
            assert not [f for f in findings if f.severity == "error"], (object_name, hour, findings)

    orphaned = results["orphan-opportunities"]
    finding = only(check("Opportunity", 10), "mass_nulling")
    assert finding.fields == ("accountid",) and finding.share > 0.9
    assert_matches(finding, orphaned, orphaned.changed["Opportunity"])
    with p.conn() as conn:
        config = report_incident(conn, finding, field_names=FIELD_NAMES).restore_config
    assert config["fields"] == ["AccountId"] and config["changed_by"] == orphaned.user_id
    assert config["as_of"] == (orphaned.started_at - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert config["record_ids"] == sorted(orphaned.changed["Opportunity"])

    deleted = results["mass-delete"]
    finding = only(check("Case", 11), "mass_delete")
    assert_matches(finding, deleted, deleted.changed["Case"][: deleted.details["deleted"]["Case"]])

    takeover = results["owner-takeover"]
    finding = only(check("Account", 12), "mass_overwrite")
    assert finding.fields == ("ownerid",) and finding.details["per_field"][0]["value"] == takeover.user_id
    assert_matches(finding, takeover, takeover.changed["Account"])

    wiped = results["picklist-wipe"]
    finding = only(check("Invoice__c", 13), "mass_nulling")
    assert finding.fields == ("status__c",)
    assert_matches(finding, wiped, wiped.changed["Invoice__c"])
