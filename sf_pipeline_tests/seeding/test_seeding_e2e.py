"""Seed a sandbox from the backup through the `seed_sandbox` job.

Two devorg orgs (production, backed up; sandbox, empty but for its users), PostgreSQL, a real Dagster
instance, set up and backed up once for the module. The sandbox is checked record by record against
production: the same names and values, every lookup pointing at the sandbox's copy of the production parent.
The rehearsal of a restore on a sandbox seeded from an incident is checked on the demo's orgs
(`sf_pipeline_tests/test_demo.py`), which tell exactly that story.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import psycopg
import pytest

from sf_pipeline.devorg.generator import generate_org
from sf_pipeline_tests.devorg_fixtures import connect

T0 = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
KEY = "%Y-%m-%d-%H:%M"
OBJECTS = ["Account", "Contact", "Opportunity", "OpportunityContactRole"]
PRIMARY_CONTACT = {
    "name": "Primary_Contact__c",
    "type": "reference",
    "referenceTo": "Contact",
    "relationshipName": "Primary_Contact__r",
}


def _seed(p, **config: Any) -> dg.ExecuteInProcessResult:
    job = p.defs().resolve_job_def("seed_sandbox")
    return job.execute_in_process(
        instance=p.instance, raise_on_error=False, run_config={"ops": {"seed_sandbox": {"config": config}}}
    )


def _meta(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    [event] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    return {k: v.value for k, v in event.event_specific_data.metadata.items()}


def _output(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    return result.output_for_node("seed_sandbox")


def _by_id(sf, soql: str) -> dict[str, dict[str, Any]]:
    return {r["Id"]: r for r in sf.query_all(soql)["records"]}


def _sandbox_state(p, sandbox) -> tuple[dict[str, int], int]:
    """Records per object in the sandbox, and the id map's pairs into it."""
    sand = connect(sandbox)
    counts = {o: sand.query(f"SELECT COUNT() FROM {o}")["totalSize"] for o in OBJECTS}
    with psycopg.connect(p.db_url) as conn:
        if conn.execute("SELECT to_regclass('sf_pipeline.id_map')").fetchone()[0] is None:
            return counts, 0
        pairs = conn.execute("SELECT count(*) FROM sf_pipeline.id_map WHERE target_alias = 'sandbox'").fetchone()[0]
    return counts, pairs


@pytest.fixture(scope="module")
def backed_up(module_pipeline_factory, sandbox):
    """A small production org with a cross-object cycle (Account.Primary_Contact__c -> Contact -> Account),
    account hierarchies (ParentId) and contact roles, backed up in its first window; once for the module (each
    test leaves the first window's backup as it found it)."""
    p = module_pipeline_factory(OBJECTS, partitions={"cron": "0 * * * *", "start": T0.strftime("%Y-%m-%dT%H:%M:%SZ")})
    for org in (p.devorg.org, sandbox.org):
        org.add_custom_field("Account", PRIMARY_CONTACT)
    p.set_clock(T0 - timedelta(minutes=30))
    generate_org(p.devorg.org, 120)
    sf = p.sf()
    contacts = sf.query_all("SELECT Id, AccountId FROM Contact WHERE AccountId != null")["records"]
    first_contact: dict[str, str] = {}
    for c in contacts:
        first_contact.setdefault(c["AccountId"], c["Id"])
    for account_id, contact_id in list(first_contact.items())[:40]:
        sf.Account.update(account_id, {"Primary_Contact__c": contact_id})
    p.set_clock(T0 + timedelta(hours=1, minutes=10))
    assert p.backup(T0.strftime(KEY)).success
    return p, sandbox


@pytest.mark.e2e
def test_seeding_copies_records_with_parents_and_cycles_and_reseeding_updates_in_place(backed_up):
    p, sandbox = backed_up
    prod, sand = p.sf(), connect(sandbox)
    roles = sf_roles = prod.query_all(
        "SELECT Id, OpportunityId, ContactId, Role FROM OpportunityContactRole ORDER BY Id LIMIT 15"
    )["records"]
    child = prod.query_all(
        "SELECT Id, ParentId FROM Account WHERE ParentId != null AND Primary_Contact__c != null LIMIT 1"
    )["records"]
    if not child:  # the generator's hierarchies and our primary contacts may not overlap: make one that does
        child = prod.query_all("SELECT Id FROM Account WHERE Primary_Contact__c != null LIMIT 1")["records"]
        parent = prod.query_all(f"SELECT Id FROM Account WHERE Id != '{child[0]['Id']}' LIMIT 1")["records"][0]
        p.set_clock(T0 + timedelta(hours=1, minutes=20))
        prod.Account.update(child[0]["Id"], {"ParentId": parent["Id"]})
        p.set_clock(T0 + timedelta(hours=2, minutes=10))
        assert p.backup((T0 + timedelta(hours=1)).strftime(KEY)).success
    as_of = "2026-11-24T02:00:00Z"
    config = {"as_of": as_of, "record_ids": [r["Id"] for r in roles] + [child[0]["Id"]]}

    first = _seed(p, **config)
    assert first.success, first.all_events
    summary, meta = _output(first), _meta(first)
    objects = summary["objects"]
    # parents first; the self-reference and the cross-object cycle are set in a second pass
    assert (
        summary["order"].index("Account")
        < summary["order"].index("Opportunity")
        < summary["order"].index("OpportunityContactRole")
    )
    assert summary["deferred"]["Account"] == ["ParentId", "Primary_Contact__c"] or set(
        summary["deferred"]["Account"]
    ) >= {"ParentId"}
    assert not summary["missing"], summary["missing"]
    assert objects["OpportunityContactRole"]["selected"] == len(roles) == objects["OpportunityContactRole"]["inserted"]
    assert objects["Opportunity"]["parents"] > 0 and objects["Contact"]["parents"] > 0
    assert objects["Account"]["second_pass"] >= 1
    # fields the org sets itself or calculates are reported, not silently dropped
    assert "IsClosed" in objects["Opportunity"]["not_settable"]
    assert "not settable on insert" in meta["objects"] and meta["records_failed"] == 0
    assert meta["users_mapped"] >= 1

    with psycopg.connect(p.db_url) as conn:
        id_map = dict(
            conn.execute(
                "SELECT source_id, target_id FROM sf_pipeline.id_map WHERE source_alias = "
                "'production' AND target_alias = 'sandbox'"
            ).fetchall()
        )
    assert len(id_map) == summary["copied"]
    # every copied record holds production's values, with lookups pointing at the sandbox copies
    src_roles = _by_id(prod, "SELECT Id, Role, OpportunityId, ContactId FROM OpportunityContactRole")
    dst_roles = _by_id(sand, "SELECT Id, Role, OpportunityId, ContactId FROM OpportunityContactRole")
    for r in sf_roles:
        copy = dst_roles[id_map[r["Id"]]]
        assert copy["Role"] == src_roles[r["Id"]]["Role"]
        assert copy["OpportunityId"] == id_map[r["OpportunityId"]] and copy["ContactId"] == id_map[r["ContactId"]]
    fields = "Id, Name, Amount, StageName, CloseDate, AccountId, Owner.Name"
    src_opps, dst_opps = (
        _by_id(prod, f"SELECT {fields} FROM Opportunity"),
        _by_id(sand, f"SELECT {fields} FROM Opportunity"),
    )
    for sid, tid in id_map.items():
        if sid.startswith("006"):
            s, t = src_opps[sid], dst_opps[tid]
            assert (t["Name"], t["Amount"], t["StageName"], t["CloseDate"]) == (
                s["Name"],
                s["Amount"],
                s["StageName"],
                s["CloseDate"],
            )
            assert t["AccountId"] == (id_map[s["AccountId"]] if s["AccountId"] else None)
            assert t["Owner"]["Name"] == s["Owner"]["Name"]  # owners matched to the sandbox's users
    accounts = "Id, Name, ParentId, Primary_Contact__c"
    src_acc, dst_acc = _by_id(prod, f"SELECT {accounts} FROM Account"), _by_id(sand, f"SELECT {accounts} FROM Account")
    c = child[0]["Id"]
    copy = dst_acc[id_map[c]]
    assert copy["ParentId"] == id_map[src_acc[c]["ParentId"]]
    assert copy["Primary_Contact__c"] == id_map[src_acc[c]["Primary_Contact__c"]]
    counts = {o: sand.query(f"SELECT COUNT() FROM {o}")["totalSize"] for o in OBJECTS}

    # someone edits and deletes sandbox copies; seeding again puts them back without duplicating anything
    opp_id = next(s for s in id_map if s.startswith("006"))
    sand.Opportunity.update(id_map[opp_id], {"Amount": 1.0})
    gone = id_map[sf_roles[0]["Id"]]
    sand.OpportunityContactRole.delete(gone)
    second = _seed(p, **config)
    assert second.success
    again = _output(second)["objects"]
    assert (
        again["OpportunityContactRole"]["inserted"] == 1
        and again["OpportunityContactRole"]["updated"] == len(roles) - 1
    )
    assert again["Opportunity"]["inserted"] == 0 and again["Account"]["inserted"] == 0
    assert {o: sand.query(f"SELECT COUNT() FROM {o}")["totalSize"] for o in OBJECTS} == counts
    assert sand.Opportunity.get(id_map[opp_id])["Amount"] == src_opps[opp_id]["Amount"]
    with psycopg.connect(p.db_url) as conn:
        remapped = conn.execute(
            "SELECT target_id FROM sf_pipeline.id_map WHERE source_id = %s", (sf_roles[0]["Id"],)
        ).fetchone()[0]
    assert (
        remapped != gone and sand.OpportunityContactRole.get(remapped)["Role"] == src_roles[sf_roles[0]["Id"]]["Role"]
    )


@pytest.mark.e2e
def test_a_bad_seed_config_fails_before_any_write(backed_up):
    p, sandbox = backed_up
    before = _sandbox_state(p, sandbox)  # empty, unless the module's seeding test ran first
    result = _seed(p, as_of="2026-11-24T02:00:00Z", objects=["Lead"])
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "Lead is not a backed-up object" in failure.event_specific_data.error.message
    assert _sandbox_state(p, sandbox) == before  # not a record written, not an id mapped


@pytest.mark.e2e
def test_seeding_from_the_sandbox_into_production_is_refused_with_nothing_written(backed_up):
    p, sandbox = backed_up
    prod = p.sf()
    before = {o: prod.query(f"SELECT COUNT() FROM {o}")["totalSize"] for o in OBJECTS}
    result = _seed(p, as_of="2026-11-24T02:00:00Z", objects=["Account"], source_org="sandbox", target_org="production")
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.error.message
    assert "target_org 'production' is the backed-up org: seeding writes only to sandboxes" in message
    assert {o: prod.query(f"SELECT COUNT() FROM {o}")["totalSize"] for o in OBJECTS} == before  # 0 records written
    with psycopg.connect(p.db_url) as conn:
        if conn.execute("SELECT to_regclass('sf_pipeline.id_map')").fetchone()[0] is not None:
            assert (
                conn.execute("SELECT count(*) FROM sf_pipeline.id_map WHERE target_alias = 'production'").fetchone()[0]
                == 0
            )
