"""Every devorg damage scenario (and a mass overwrite of Opportunity.StageName), as a new user meets it: the
damage, the backup of its window, the anomaly check that fails, and the incident's suggested config run exactly as
suggested (`incident: <id>`: a dry run, then `dry_run: false` with `plan: <its run id>`), verified by the restore
job and against the org as it was before the damage. Issue 16: "the suggested config runs as suggested".

One generated org, backed up once for the module (its full load); each test damages its own copy.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import dagster as dg
import pytest
import yaml

from sf_pipeline.anomalies import StoredIncident, get_incident, list_incidents
from sf_pipeline.devorg.generator import generate_org
from sf_pipeline.devorg.scenarios import ScenarioResult, run_scenario
from sf_pipeline_tests.anomalies.test_checks_e2e import KEY, T0, _check, _partitions, _sensor_requests
from sf_pipeline_tests.pipeline_fixtures import Pipeline, SavedState
from sf_pipeline_tests.restore.story import create

OBJECTS = ["Account", "Contact", "Opportunity", "Case", "Invoice__c"]
# A small org (400 Opportunities, 40 Accounts): thresholds low enough that its damage is an incident.
# (mass_delete keeps its defaults, 50 records: 15 Accounts alone are not an incident, their cascade makes one)
ANOMALIES = {
    "defaults": {
        "mass_nulling": {"min_records": 10},
        "mass_overwrite": {"min_records": 10},
        "mass_vanishing": {"min_records": 5},
    }
}
FAMILIES = 15  # Accounts with 3 Contacts and 4 Opportunities each, and no Case (a Case would refuse the delete)
LEDGERS = 6  # Accounts with 5 Invoices each and nothing else: what `account-cleanup` deletes (with a few generated)
HOUR = 2  # the damage happens in the 02:00 window


def _full_load(p: Pipeline) -> list[str]:
    p.set_clock(T0 - timedelta(minutes=1))
    generate_org(p.devorg.org, 400)
    accounts = create(p, "Account", [{"Name": f"Cascade {i}"} for i in range(FAMILIES)])
    create(
        p,
        "Contact",
        [{"LastName": f"Cascade {i}.{k}", "AccountId": a} for i, a in enumerate(accounts) for k in range(3)],
    )
    create(
        p,
        "Opportunity",
        [
            {"Name": f"Cascade {i}.{k}", "AccountId": a, "StageName": "Prospecting", "CloseDate": "2026-12-31"}
            for i, a in enumerate(accounts)
            for k in range(4)
        ],
    )
    ledgers = create(p, "Account", [{"Name": f"Ledger {i}"} for i in range(LEDGERS)])
    create(
        p, "Invoice__c", [{"Name": f"Ledger {i}.{k}", "Account__c": a} for i, a in enumerate(ledgers) for k in range(5)]
    )
    p.set_clock(T0 + timedelta(hours=1, minutes=10))
    assert p.backup(T0.strftime(KEY)).success
    return accounts


@pytest.fixture(scope="module")
def backed_up(save_pipeline_state) -> SavedState:
    return save_pipeline_state(_full_load, OBJECTS, partitions=_partitions(), anomalies=ANOMALIES)


def _rows(p: Pipeline, sobject: str, fields: str, deleted: bool = False) -> dict[str, dict[str, Any]]:
    where = "" if deleted else " WHERE IsDeleted = false"
    rows = p.devorg.org.queries.run(
        f"SELECT Id, {fields} FROM {sobject}{where}", include_deleted=deleted, batch_size=2000
    )["records"]
    return {r["Id"]: {k: v for k, v in r.items() if k not in ("Id", "attributes")} for r in rows}


def _launch(p: Pipeline, config: dict[str, Any]) -> dg.ExecuteInProcessResult:
    job = p.defs().resolve_job_def("restore")
    result = job.execute_in_process(
        run_config={"ops": {"restore": {"config": config}}}, instance=p.instance, raise_on_error=False
    )
    if not result.success:
        failure = next(e for e in result.all_events if e.is_step_failure)
        pytest.fail(f"the restore {config} failed: {failure.event_specific_data.error.message}")
    return result


def _metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    [event] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    return {k: v.value for k, v in event.event_specific_data.metadata.items()}


def damage_and_detect(p: Pipeline, damage: Callable[[Pipeline, datetime], Any]) -> tuple[Any, list[StoredIncident]]:
    """The damage at 02:05, the 02:00 window backed up at 03:10, the sensor's checks: the incidents they stored."""
    window = T0 + timedelta(hours=HOUR)
    result = damage(p, window + timedelta(minutes=5))
    p.set_clock(window + timedelta(hours=1, minutes=10))
    assert p.backup(window.strftime(KEY)).success
    requests = [r for r in _sensor_requests(p) if r.partition_key == window.strftime(KEY)]
    evaluations = [e for r in requests for e in _check(p, r)]
    failed = [e for e in evaluations if not e.passed]
    assert failed, "the anomaly check should fail on the damaged window"
    numbers = [n for e in failed for n in e.metadata["incident_ids"].value]
    with p.conn() as conn:
        incidents = [get_incident(conn, n) for n in numbers]
    return result, incidents


def restore_as_suggested(p: Pipeline, incident: StoredIncident) -> dict[str, Any]:
    """The incident's launchpad config, pasted: its dry run, then that plan applied (the job verifies it)."""
    config = incident.launchpad_config()
    assert config == {"incident": incident.id, "target_org": "production", "dry_run": True}
    pasted = yaml.safe_load(incident.restore_config_yaml())  # what the check's metadata shows
    assert pasted == config and len(incident.restore_config_yaml().encode()) < 1024
    dry = _launch(p, config)
    assert _metadata(dry)["dry_run"] is True
    applied = _metadata(_launch(p, {**config, "dry_run": False, "plan": dry.run_id}))
    assert applied["plan_of"] == dry.run_id and applied["verified_records"] >= applied["records_to_write"]
    return applied


def restore_every_incident(p: Pipeline, incidents: list[StoredIncident]) -> list[dict[str, Any]]:
    restorable = [i for i in incidents if i.restore_config]
    assert restorable, [(i.report.detector, i.report.restore_note) for i in incidents]
    return [restore_as_suggested(p, i) for i in restorable]


def _detectors(incidents: list[StoredIncident]) -> set[tuple[str, str]]:
    return {(i.report.detector, i.report.object) for i in incidents}


# ------------------------------------------------------------------------------------------ field damage
@pytest.mark.e2e
@pytest.mark.parametrize(
    ("scenario", "sobject", "field", "detector"),
    [
        ("orphan-opportunities", "Opportunity", "AccountId", "mass_nulling"),
        ("owner-takeover", "Account", "OwnerId", "mass_overwrite"),
        ("picklist-wipe", "Invoice__c", "Status__c", "mass_nulling"),
    ],
)
def test_field_damage_scenario_is_undone_by_its_incident_as_suggested(
    pipeline_factory, backed_up, scenario, sobject, field, detector
):
    p = pipeline_factory(state=backed_up)
    before = _rows(p, sobject, field)
    result, incidents = damage_and_detect(p, lambda p, at: run_scenario(p.devorg.org, scenario, at=at))
    assert (detector, sobject) in _detectors(incidents)
    restore_every_incident(p, incidents)
    after = _rows(p, sobject, field)
    assert {i: after[i][field] for i in result.changed[sobject]} == {
        i: before[i][field] for i in result.changed[sobject]
    }


def _stage_overwrite(p: Pipeline, at: datetime) -> list[str]:
    """The integration user sets StageName to Closed Lost on 120 open Opportunities (over 20% of them): the org
    derives IsClosed, IsWon, ForecastCategory, Probability and ExpectedRevenue from it (issue 16's 9-run
    restore)."""
    p.set_clock(at)
    open_ids = sorted(i for i, r in _rows(p, "Opportunity", "IsClosed").items() if not r["IsClosed"])[:120]
    assert len(open_ids) == 120
    sf = p.sf("integration")
    answer = sf.restful(
        "composite/sobjects",
        method="PATCH",
        json={
            "allOrNone": True,
            "records": [{"attributes": {"type": "Opportunity"}, "id": i, "StageName": "Closed Lost"} for i in open_ids],
        },
    )
    assert all(r["success"] for r in answer), answer
    return open_ids


@pytest.mark.e2e
def test_stage_overwrite_restores_the_stage_and_the_org_derives_the_rest(pipeline_factory, backed_up):
    p = pipeline_factory(state=backed_up)
    fields = "StageName, Probability, IsClosed, IsWon, ForecastCategory, ForecastCategoryName, ExpectedRevenue"
    before = _rows(p, "Opportunity", fields)
    changed, incidents = damage_and_detect(p, _stage_overwrite)
    overwrite = next(i for i in incidents if i.report.detector == "mass_overwrite")
    suggested = overwrite.report.restore_config["fields"]
    assert "StageName" in suggested
    assert not {"IsClosed", "IsWon", "ForecastCategory", "ExpectedRevenue"} & set(suggested), suggested
    assert {"IsClosed", "ForecastCategory", "ExpectedRevenue"} <= set(overwrite.report.details["not_restored_fields"])
    restore_every_incident(p, incidents)
    after = _rows(p, "Opportunity", fields)
    assert {i: after[i] for i in changed} == {i: before[i] for i in changed}


# ------------------------------------------------------------------------------------------ deletions
@pytest.mark.e2e
def test_mass_delete_of_cases_is_undeleted_by_its_incident_as_suggested(pipeline_factory, backed_up):
    p = pipeline_factory(state=backed_up)
    before = _rows(p, "Case", "Subject, Status, ParentId, AccountId, ContactId")
    result, incidents = damage_and_detect(p, lambda p, at: run_scenario(p.devorg.org, "mass-delete", at=at))
    deleted = incidents[[i.report.detector for i in incidents].index("mass_delete")]
    assert deleted.report.restore_config["fields"] == []  # whole records: never MasterRecordId
    assert deleted.report.restore_config["restore_deleted"] is True
    restore_every_incident(p, incidents)
    assert _rows(p, "Case", "Subject, Status, ParentId, AccountId, ContactId") == before


def _vanished_back(p: Pipeline, sobject: str, before: dict[str, dict[str, Any]], gone: list[str]) -> None:
    """Records gone for good come back re-created (new ids) with their values."""
    now = _rows(p, sobject, "Name")
    assert not set(gone) & set(now)
    assert sorted(r["Name"] for r in now.values()) == sorted(r["Name"] for r in before.values())


@pytest.mark.e2e
def test_mass_hard_delete_is_recreated_by_its_incidents_as_suggested(pipeline_factory, backed_up):
    p = pipeline_factory(state=backed_up)
    before = {o: _rows(p, o, "Name") for o in ("Opportunity", "Contact")}
    result, incidents = damage_and_detect(p, lambda p, at: run_scenario(p.devorg.org, "mass-hard-delete", at=at))
    assert {("mass_vanishing", "Opportunity"), ("mass_vanishing", "Contact")} <= _detectors(incidents)
    restore_every_incident(p, incidents)
    for sobject, rows in before.items():
        gone = [
            r
            for i in incidents
            if (i.report.detector, i.report.object) == ("mass_vanishing", sobject)
            for r in i.report.record_ids
        ]
        assert gone
        _vanished_back(p, sobject, rows, gone)


@pytest.mark.e2e
def test_recycle_bin_purge_is_recreated_by_its_incident_as_suggested(pipeline_factory, backed_up):
    p = pipeline_factory(state=backed_up)
    before = _rows(p, "Case", "Subject")

    def delete_then_purge(p: Pipeline, at: datetime) -> ScenarioResult:
        # Half the Cases deleted, and the bin emptied a minute later, before the window is backed up: the backup
        # never sees them in the bin. (A purge of records whose deletion was backed up is no new damage: the
        # deletion's incident is, and the backup only notes the cause, warehouse/vanished.py.)
        run_scenario(p.devorg.org, "mass-delete", at=at, fraction=0.5)
        return run_scenario(p.devorg.org, "recycle-bin-purge", at=at + timedelta(minutes=1), empty_bin=True)

    result, incidents = damage_and_detect(p, delete_then_purge)
    assert ("mass_vanishing", "Case") in _detectors(incidents)
    restore_every_incident(p, [i for i in incidents if i.report.detector == "mass_vanishing"])
    now = _rows(p, "Case", "Subject")
    assert sorted(r["Subject"] for r in now.values()) == sorted(r["Subject"] for r in before.values())


@pytest.mark.e2e
def test_mass_merge_is_undone_by_its_incidents_as_suggested(pipeline_factory, backed_up):
    p = pipeline_factory(state=backed_up)
    before = _rows(p, "Account", "Name")
    result, incidents = damage_and_detect(p, lambda p, at: run_scenario(p.devorg.org, "mass-merge", at=at))
    assert ("mass_vanishing", "Account") in _detectors(incidents)
    restore_every_incident(p, incidents)
    now = _rows(p, "Account", "Name")
    assert sorted(r["Name"] for r in now.values()) == sorted(r["Name"] for r in before.values())


# ------------------------------------------------------------------------------------------ cascades
@pytest.mark.e2e
def test_a_cascade_is_one_incident_listed_first_and_one_run_brings_the_whole_tree_back(pipeline_factory, backed_up):
    p = pipeline_factory(state=backed_up)
    accounts = backed_up.story
    fields = {"Account": "Name", "Contact": "LastName, AccountId", "Opportunity": "Name, AccountId, StageName"}
    before = {o: _rows(p, o, f) for o, f in fields.items()}

    def delete_accounts(p: Pipeline, at: datetime) -> list[str]:
        p.set_clock(at)  # sales3 deletes the 15 Accounts in one call: their Contacts and Opportunities go too
        answer = p.sf("sales3").restful(
            "composite/sobjects", method="DELETE", params={"ids": ",".join(accounts), "allOrNone": "true"}
        )
        assert all(r["success"] for r in answer), answer
        return accounts

    _, incidents = damage_and_detect(p, delete_accounts)
    deletions = [i for i in incidents if i.report.detector == "mass_delete"]
    assert [(i.report.object, i.report.affected_count) for i in deletions] == [("Account", FAMILIES)]
    root = deletions[0]
    assert root.report.details["cascade"] == {"contact": 3 * FAMILIES, "opportunity": 4 * FAMILIES}
    assert "one incident for the whole tree" in root.report.what
    with p.conn() as conn:
        assert list_incidents(conn)[0].id == root.id  # the root cause is listed first
    restore_as_suggested(p, root)  # one run: undeleting the Accounts undeletes their cascade
    assert {o: _rows(p, o, f) for o, f in fields.items()} == before


# ------------------------------------------------------------------------------------------ other detectors
@pytest.mark.e2e
def test_one_user_editing_a_third_of_the_opportunities_is_undone_by_its_user_share_incident(
    pipeline_factory, backed_up
):
    """sales2 writes a different Description on 160 Opportunities (a third of them): no mass nulling or overwrite
    (every value differs), but one user changing an unusual share of the object (`user_share`, a warning)."""
    p = pipeline_factory(state=backed_up)
    before = _rows(p, "Opportunity", "Description")
    chosen = sorted(before)[:160]

    def rewrite(p: Pipeline, at: datetime) -> list[str]:
        p.set_clock(at)
        sf = p.sf("sales2")
        for i in range(0, len(chosen), 200):
            answer = sf.restful(
                "composite/sobjects",
                method="PATCH",
                json={
                    "allOrNone": True,
                    "records": [
                        {"attributes": {"type": "Opportunity"}, "id": o, "Description": f"Reviewed {n}"}
                        for n, o in enumerate(chosen[i : i + 200], start=i)
                    ],
                },
            )
            assert all(r["success"] for r in answer), answer
        return chosen

    _, incidents = damage_and_detect(p, rewrite)
    share = next(i for i in incidents if i.report.detector == "user_share")
    assert share.report.restore_config["fields"] == ["Description"]
    restore_every_incident(p, incidents)
    after = _rows(p, "Opportunity", "Description")
    assert {o: after[o] for o in chosen} == {o: before[o] for o in chosen}


# ------------------------------------------------------------------------------------------ orphans
@pytest.mark.e2e
def test_account_cleanup_orphans_invoices_and_their_incident_brings_the_accounts_and_the_lookups_back(
    pipeline_factory, backed_up
):
    """`account-cleanup` deletes every Account with invoices and no Case: their Contacts and Opportunities go with
    them, and Salesforce clears the Invoices' lookups to them (stamped like the deletion). The Invoices' check finds
    them orphaned (`orphans`, parents deleted), not a mass nulling of `Account__c` to put back (the Accounts are
    deleted: Salesforce would refuse the lookup); its suggested config brings the Accounts back, and with them their
    cascade and the Invoices' lookups. Every other incident of the window with a restore then runs as suggested too.
    """
    p = pipeline_factory(state=backed_up)
    fields = {
        "Account": "Name",
        "Contact": "LastName, AccountId",
        "Opportunity": "Name, AccountId",
        "Invoice__c": "Name, Account__c, Opportunity__c",
    }
    before = {o: _rows(p, o, f) for o, f in fields.items()}
    result, incidents = damage_and_detect(
        p, lambda p, at: run_scenario(p.devorg.org, "account-cleanup", at=at, fraction=1.0)
    )
    cleared = result.details["lookups_cleared"]["Invoice__c.Account__c"]
    assert len(cleared) >= 30 and all(_rows(p, "Invoice__c", "Account__c")[i]["Account__c"] is None for i in cleared)
    orphans = [i for i in incidents if (i.report.detector, i.report.fields) == ("orphans", ("Account__c",))]
    assert len(orphans) == 1, [(i.report.detector, i.report.object, i.report.fields) for i in incidents]
    orphaned = orphans[0].report
    assert orphaned.object == "Invoice__c" and sorted(orphaned.record_ids) == sorted(cleared)
    assert orphaned.details["lookups_cleared"] == len(cleared) and orphaned.details["parent_object"] == "Account"
    assert orphaned.restore_config["object"] == "Account" and orphaned.restore_config["restore_deleted"] is True
    assert sorted(orphaned.restore_config["record_ids"]) == sorted(result.changed["Account"])
    nulled = [i for i in incidents if i.report.detector == "mass_nulling" and i.report.object == "Invoice__c"]
    assert not nulled, [(i.report.fields, i.report.affected_count) for i in nulled]  # settled into the orphans

    restore_as_suggested(p, orphans[0])
    assert {o: _rows(p, o, f) for o, f in fields.items()} == before
    for other in [i for i in incidents if i.id != orphans[0].id and i.restore_config]:
        restore_as_suggested(p, other)  # the rest (the Opportunity__c orphans, ...): nothing left to do
    assert {o: _rows(p, o, f) for o, f in fields.items()} == before
