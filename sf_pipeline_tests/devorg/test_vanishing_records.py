"""Records that vanish, over HTTPS as a client sees them: the recycle bin's 15 days, emptyRecycleBin, Bulk API
hardDelete, SOAP merge, the delete log (`/deleted/`, `/updated/`), restrictedDelete and what undelete restores.

Each behaviour is Salesforce's as documented (the sources are cited in sf_pipeline/devorg/recycle_bin.py,
merge.py and store.py); the SOAP calls are raw partner-API envelopes, everything else goes through
simple-salesforce.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest, SalesforceResourceNotFound

from sf_pipeline.devorg.runner import DevOrgServer
from sf_pipeline_tests.devorg_fixtures import connect, shared_reference

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NS = {"p": "urn:partner.soap.sforce.com"}


# ---------------------------------------------------------------------------------------------- helpers
@pytest.fixture
def frozen(devorg: DevOrgServer) -> DevOrgServer:
    _control(devorg, "clock", {"set": T0.isoformat(), "freeze": True})
    return devorg


@pytest.fixture
def sf(frozen: DevOrgServer) -> Salesforce:
    # Logs in with credentials, so it logs in again when a clock jump has expired its session.
    return connect(frozen, "admin")


def _control(devorg: DevOrgServer, action: str, body: dict | None = None) -> dict:
    return devorg.control(action, body or {})  # over HTTPS, with the control token


def _advance(devorg: DevOrgServer, duration: str) -> None:
    _control(devorg, "clock", {"advance": duration})


def _soap(devorg: DevOrgServer, call: str, inner: str, *, expect: int = 200) -> ElementTree.Element:
    """One partner SOAP call with the real envelope; returns the parsed response."""
    body = (
        '<?xml version="1.0" encoding="utf-8"?><soapenv:Envelope '
        'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:partner.soap.sforce.com" '
        'xmlns:urn1="urn:sobject.partner.soap.sforce.com">'
        f"<soapenv:Header><urn:SessionHeader><urn:sessionId>{devorg.login()}</urn:sessionId>"
        f"</urn:SessionHeader></soapenv:Header><soapenv:Body><urn:{call}>{inner}</urn:{call}>"
        "</soapenv:Body></soapenv:Envelope>"
    )
    resp = requests.post(
        f"{devorg.instance_url}/services/Soap/u/59.0/00D5J0000000001",
        data=body,
        verify=devorg.ca_bundle,
        headers={"Content-Type": "text/xml", "SOAPAction": call},
    )
    assert resp.status_code == expect, resp.text
    return ElementTree.fromstring(resp.content)


def _results(root: ElementTree.Element) -> list[dict]:
    out = []
    for r in root.iter("{urn:partner.soap.sforce.com}result"):
        out.append(
            {
                "id": r.findtext("p:id", namespaces=NS),
                "success": r.findtext("p:success", namespaces=NS) == "true",
                "statusCode": r.findtext("p:errors/p:statusCode", namespaces=NS),
                "message": r.findtext("p:errors/p:message", namespaces=NS),
                "merged": [e.text for e in r.findall("p:mergedRecordIds", NS)],
                "related": [e.text for e in r.findall("p:updatedRelatedIds", NS)],
            }
        )
    return out


def _undelete(devorg: DevOrgServer, record_ids: list[str]) -> list[dict]:
    return _results(_soap(devorg, "undelete", "".join(f"<urn:ids>{i}</urn:ids>" for i in record_ids)))


def _empty_bin(devorg: DevOrgServer, record_ids: list[str]) -> list[dict]:
    return _results(_soap(devorg, "emptyRecycleBin", "".join(f"<urn:ids>{i}</urn:ids>" for i in record_ids)))


def _merge(devorg: DevOrgServer, object_name: str, master: str, losers: list[str], fields: str = "") -> dict:
    inner = (
        f"<urn:request><urn:masterRecord><urn1:type>{object_name}</urn1:type><urn1:Id>{master}</urn1:Id>"
        f"{fields}</urn:masterRecord>"
        + "".join(f"<urn:recordToMergeIds>{i}</urn:recordToMergeIds>" for i in losers)
        + "</urn:request>"
    )
    return _results(_soap(devorg, "merge", inner))[0]


def _in_query_all(sf: Salesforce, object_name: str, record_ids: list[str]) -> dict[str, dict]:
    quoted = ",".join(f"'{i}'" for i in record_ids)
    recs = sf.query_all(f"SELECT Id, IsDeleted FROM {object_name} WHERE Id IN ({quoted})", include_deleted=True)[
        "records"
    ]
    return {r["Id"]: r for r in recs}


# ---------------------------------------------------------------------------------------------- retention
def test_a_deleted_record_leaves_the_recycle_bin_after_15_days_and_cannot_be_undeleted(frozen, sf):
    keep, lose = (sf.Account.create({"Name": n})["id"] for n in ("Kept", "Lost"))
    sf.Account.delete(keep)
    sf.Account.delete(lose)
    _advance(frozen, "14d")
    assert set(_in_query_all(sf, "Account", [keep, lose])) == {keep, lose}  # still in the bin on day 14
    assert _undelete(frozen, [keep])[0]["success"]
    _advance(frozen, "1d")  # day 15: purged
    assert set(_in_query_all(sf, "Account", [keep, lose])) == {keep}
    failed = _undelete(frozen, [lose])[0]
    assert (failed["success"], failed["statusCode"], failed["message"]) == (
        False,
        "UNDELETE_FAILED",
        "Entity is not in the recycle bin",
    )
    with pytest.raises(SalesforceResourceNotFound):
        sf.Account.get(lose)


def test_every_api_purges_what_is_due_even_when_the_clock_just_ran(frozen, sf):
    acc = sf.Account.create({"Name": "Gone later"})["id"]
    contact = sf.Contact.create({"LastName": "Child", "AccountId": acc})["id"]
    sf.Account.delete(acc)  # cascades to the contact
    assert sf.query("SELECT COUNT() FROM Contact", include_deleted=True)["totalSize"] == 1
    frozen.org.clock.advance(timedelta(days=16))  # time passes, nobody moved the clock through devorg's hooks
    assert sf.query("SELECT COUNT() FROM Contact", include_deleted=True)["totalSize"] == 0
    assert sf.query("SELECT COUNT() FROM Account", include_deleted=True)["totalSize"] == 0
    assert _undelete(frozen, [contact])[0]["statusCode"] == "UNDELETE_FAILED"


def test_empty_recycle_bin_purges_at_once(frozen, sf):
    acc = sf.Account.create({"Name": "Emptied"})["id"]
    contact = sf.Contact.create({"LastName": "Cascade", "AccountId": acc})["id"]
    live = sf.Account.create({"Name": "Live"})["id"]
    sf.Account.delete(acc)
    results = _empty_bin(frozen, [contact, live, acc])
    # a cascade-deleted child and a live record are refused one by one; the root is purged with its tree
    assert [(r["id"], r["success"]) for r in results] == [(contact, False), (live, False), (acc, True)]
    assert _in_query_all(sf, "Account", [acc, live]).keys() == {live}
    assert _in_query_all(sf, "Contact", [contact]) == {}
    assert _undelete(frozen, [acc])[0]["statusCode"] == "UNDELETE_FAILED"


def test_empty_recycle_bin_takes_at_most_200_ids(frozen):
    root = _soap(frozen, "emptyRecycleBin", "<urn:ids>001000000000000AAA</urn:ids>" * 201, expect=500)
    assert root.findtext(".//faultcode") == "EXCEEDED_ID_LIMIT"


# ---------------------------------------------------------------------------------------------- hard delete
def test_bulk_hard_delete_skips_the_recycle_bin(frozen, sf):
    acc = sf.Account.create({"Name": "Hard"})["id"]
    contact = sf.Contact.create({"LastName": "With it", "AccountId": acc})["id"]
    soft = sf.Account.create({"Name": "Soft"})["id"]
    job = sf.bulk2.Account.hard_delete(records=[{"Id": acc}], wait=0.2)
    assert job[0]["numberRecordsFailed"] == 0
    sf.bulk2.Account.delete(records=[{"Id": soft}], wait=0.2)
    assert _in_query_all(sf, "Account", [acc, soft]).keys() == {soft}
    assert _in_query_all(sf, "Contact", [contact]) == {}  # the cascade went with it
    assert [r["statusCode"] for r in _undelete(frozen, [acc, contact])] == ["UNDELETE_FAILED"] * 2
    assert _undelete(frozen, [soft])[0]["success"]


# ---------------------------------------------------------------------------------------------- merge
def test_merge_deletes_the_losers_with_master_record_id_and_reparents_their_children(frozen, sf):
    master = sf.Account.create({"Name": "Acme", "Phone": "111"})["id"]
    losers = [sf.Account.create({"Name": n, "Phone": "222"})["id"] for n in ("ACME Inc", "Acme Corp")]
    contact = sf.Contact.create({"LastName": "Lee", "AccountId": losers[0]})["id"]
    opp = sf.Opportunity.create(
        {"Name": "Deal", "StageName": "Prospecting", "CloseDate": "2026-12-31", "AccountId": losers[1]}
    )["id"]
    case = sf.Case.create({"Subject": "Help", "AccountId": losers[1]})["id"]
    child_account = sf.Account.create({"Name": "Acme West", "ParentId": losers[0]})["id"]
    result = _merge(frozen, "Account", master, losers, "<urn1:Phone>333</urn1:Phone>")
    assert result["success"] and result["id"] == master and result["merged"] == losers
    assert set(result["related"]) == {contact, opp, case, child_account}
    rows = sf.query_all(
        "SELECT Id, IsDeleted, MasterRecordId FROM Account WHERE IsDeleted = true AND MasterRecordId != null",
        include_deleted=True,
    )["records"]
    assert {(r["Id"], r["MasterRecordId"]) for r in rows} == {(losers[0], master), (losers[1], master)}
    assert sf.Account.get(master)["Phone"] == "333"
    assert sf.Contact.get(contact)["AccountId"] == master
    assert sf.Opportunity.get(opp)["AccountId"] == master
    assert sf.Case.get(case)["AccountId"] == master
    assert sf.Account.get(child_account)["ParentId"] == master
    # undelete brings a loser back, but not its children: the re-parenting cannot be undone
    assert _undelete(frozen, [losers[0]])[0]["success"]
    assert sf.Contact.get(contact)["AccountId"] == master


def test_merge_refuses_more_than_three_records_other_objects_and_circular_reports_to(frozen, sf):
    accounts = [sf.Account.create({"Name": f"A{i}"})["id"] for i in range(4)]
    too_many = _merge(frozen, "Account", accounts[0], accounts[1:])
    assert not too_many["success"] and too_many["statusCode"]
    assert _in_query_all(sf, "Account", accounts).keys() == set(accounts)
    assert all(not r["IsDeleted"] for r in _in_query_all(sf, "Account", accounts).values())
    cases = [sf.Case.create({"Subject": s})["id"] for s in ("x", "y")]
    assert not _merge(frozen, "Case", cases[0], cases[1:])["success"]
    boss = sf.Contact.create({"LastName": "Boss"})["id"]
    report = sf.Contact.create({"LastName": "Report", "ReportsToId": boss})["id"]
    assert not _merge(frozen, "Contact", report, [boss])["success"]  # the master would report to itself
    assert sf.Contact.get(boss)["IsDeleted"] is False


def test_merge_of_leads_and_contacts(frozen, sf):
    leads = [sf.Lead.create({"LastName": "Dup", "Company": c})["id"] for c in ("Globex", "Globex Inc")]
    result = _merge(frozen, "Lead", leads[0], leads[1:])
    assert result["success"] and result["merged"] == [leads[1]]
    assert _in_query_all(sf, "Lead", [leads[1]])[leads[1]]["IsDeleted"] is True
    contacts = [sf.Contact.create({"LastName": "Twin"})["id"] for _ in range(2)]
    case = sf.Case.create({"Subject": "From the twin", "ContactId": contacts[1]})["id"]
    assert _merge(frozen, "Contact", contacts[0], [contacts[1]])["related"] == [case]
    assert sf.Case.get(case)["ContactId"] == contacts[0]


# ---------------------------------------------------------------------------------------------- delete log
def test_get_deleted_covers_15_days_and_earliest_date_moves_with_purges(frozen, sf):
    first = sf.Account.create({"Name": "First"})["id"]
    sf.Account.delete(first)
    _advance(frozen, "1d")
    second = sf.Account.create({"Name": "Second"})["id"]
    sf.Account.delete(second)
    _advance(frozen, "5m")  # windows are half-open: [start, end)
    now = T0 + timedelta(days=1, minutes=5)
    got = sf.Account.deleted(now - timedelta(days=2), now + timedelta(hours=1))
    assert [r["id"] for r in got["deletedRecords"]] == [first, second]
    assert got["deletedRecords"][0]["deletedDate"] == "2026-03-02T09:00:00.000+0000"
    assert got["earliestDateAvailable"] == "2026-02-16T09:05:00.000+0000"  # 15 days back, nothing purged yet
    assert got["latestDateCovered"] == "2026-03-03T09:05:00.000+0000"  # the end is capped at now
    # emptying the first record from the bin physically deletes it: the log no longer covers its time
    assert _empty_bin(frozen, [first])[0]["success"]
    got = sf.Account.deleted(now - timedelta(hours=1), now + timedelta(hours=1))
    assert got["earliestDateAvailable"] == "2026-03-02T09:00:00.000+0000"
    assert [r["id"] for r in got["deletedRecords"]] == [second]
    with pytest.raises(SalesforceMalformedRequest, match="INVALID_REPLICATION_DATE"):
        sf.Account.deleted(now - timedelta(days=2), now)
    # 16 more days: the second record is purged too, and the window must start after it
    _advance(frozen, "16d")
    later = now + timedelta(days=16)
    got = sf.Account.deleted(later - timedelta(days=14), later)
    assert got["deletedRecords"] == []
    assert got["earliestDateAvailable"] == "2026-03-04T09:05:00.000+0000"
    with pytest.raises(SalesforceMalformedRequest, match="INVALID_REPLICATION_DATE"):
        sf.Account.deleted(later - timedelta(days=16), later)


def test_get_deleted_and_updated_windows_are_checked_like_salesforce(frozen, sf):
    acc = sf.Account.create({"Name": "Window"})["id"]
    _advance(frozen, "5m")
    # start after end, or less than a minute before it (seconds are ignored)
    for start, end in ((T0, T0 - timedelta(hours=1)), (T0 - timedelta(seconds=30), T0)):
        for read in (sf.Account.deleted, sf.Account.updated):
            with pytest.raises(SalesforceMalformedRequest, match="INVALID_REPLICATION_DATE"):
                read(start, end)
    assert sf.Account.updated(T0 - timedelta(days=29), T0 + timedelta(minutes=5))["ids"] == [acc]
    with pytest.raises(SalesforceMalformedRequest, match="INVALID_REPLICATION_DATE"):
        sf.Account.updated(T0 - timedelta(days=31), T0)  # getUpdated serves 30 days back
    with pytest.raises(SalesforceMalformedRequest, match="INVALID_REPLICATION_DATE"):
        sf.Account.deleted(T0 - timedelta(days=16), T0)  # getDeleted serves 15 days back


def test_hard_deleted_records_are_not_in_the_delete_log_but_move_its_earliest_date(frozen, sf):
    acc = sf.Account.create({"Name": "Hard"})["id"]
    _advance(frozen, "1h")
    sf.bulk2.Account.hard_delete(records=[{"Id": acc}], wait=0.2)
    _advance(frozen, "10m")
    now = T0 + timedelta(hours=1)
    got = sf.Account.deleted(now, now + timedelta(minutes=10))
    assert got["deletedRecords"] == []
    assert got["earliestDateAvailable"] == "2026-03-02T10:00:00.000+0000"
    with pytest.raises(SalesforceMalformedRequest, match="INVALID_REPLICATION_DATE"):
        sf.Account.deleted(T0, now + timedelta(minutes=5))


# ---------------------------------------------------------------------------------------------- restrictedDelete
def test_an_account_or_contact_with_cases_cannot_be_deleted(frozen, sf):
    acc = sf.Account.create({"Name": "Has cases"})["id"]
    contact = sf.Contact.create({"LastName": "Caller", "AccountId": acc})["id"]
    case = sf.Case.create({"Subject": "Open", "AccountId": acc, "ContactId": contact})["id"]
    number = sf.Case.get(case)["CaseNumber"]
    for obj, rid in (("Account", acc), ("Contact", contact)):
        with pytest.raises(SalesforceMalformedRequest) as exc:
            getattr(sf, obj).delete(rid)
        err = exc.value.content[0]
        assert err["errorCode"] == "DELETE_FAILED" and number in err["message"] and "cases" in err["message"]
    job = sf.bulk2.Account.delete(records=[{"Id": acc}], wait=0.2)
    assert job[0]["numberRecordsFailed"] == 1
    assert sf.Account.get(acc)["IsDeleted"] is False and sf.Contact.get(contact)["IsDeleted"] is False
    sf.Case.delete(case)
    sf.Account.delete(acc)  # now it can go, with its contact
    assert _in_query_all(sf, "Contact", [contact])[contact]["IsDeleted"] is True


def test_describe_child_relationships_carry_restricted_and_cascade_delete_as_the_real_org(sf):
    for name in ("Account", "Contact"):
        real = json.loads(shared_reference("salesforce-describe", f"{name}.json").read_text())
        theirs = {(c["childSObject"], c["field"]): c for c in real["childRelationships"]}
        ours = getattr(sf, name).describe()["childRelationships"]
        compared = 0
        for rel in ours:
            real_rel = theirs.get((rel["childSObject"], rel["field"]))
            if real_rel is None:
                continue
            compared += 1
            assert (rel["cascadeDelete"], rel["restrictedDelete"]) == (
                real_rel["cascadeDelete"],
                real_rel["restrictedDelete"],
            ), rel
        assert compared >= 3
    cases = {(r["childSObject"], r["field"]): r for r in sf.Account.describe()["childRelationships"]}
    assert cases[("Case", "AccountId")]["restrictedDelete"] is True


# ---------------------------------------------------------------------------------------------- undelete
def test_undelete_restores_only_the_lookups_salesforce_documents(frozen, sf):
    acc = sf.Account.create({"Name": "Parent"})["id"]
    child = sf.Account.create({"Name": "Child", "ParentId": acc})["id"]
    invoice = sf.Invoice__c.create({"Account__c": acc})["id"]
    replaced = sf.Invoice__c.create({"Account__c": acc})["id"]
    contact = sf.Contact.create({"LastName": "Buyer"})["id"]
    opp = sf.Opportunity.create(
        {"Name": "Deal", "StageName": "Prospecting", "CloseDate": "2026-12-31", "ContactId": contact}
    )["id"]
    sf.Account.delete(acc)
    sf.Contact.delete(contact)
    assert sf.Account.get(child)["ParentId"] is None and sf.Invoice__c.get(invoice)["Account__c"] is None
    assert sf.Opportunity.get(opp)["ContactId"] is None
    other = sf.Account.create({"Name": "Other"})["id"]
    sf.Invoice__c.update(replaced, {"Account__c": other})  # replaced meanwhile: undelete leaves it
    assert all(r["success"] for r in _undelete(frozen, [acc, contact]))
    assert sf.Account.get(child)["ParentId"] == acc  # parent account: restored
    assert sf.Invoice__c.get(invoice)["Account__c"] == acc  # custom lookup: restored
    assert sf.Invoice__c.get(replaced)["Account__c"] == other
    assert sf.Opportunity.get(opp)["ContactId"] is None  # not in Salesforce's list: stays empty


# ---------------------------------------------------------------------------------------------- scenarios
@pytest.fixture(scope="module")
def generated_org_dir(tmp_path_factory) -> str:
    """A generated org of 5,000 Opportunities (500 Accounts, 1,000 Contacts and Cases) on disk, copied per test."""
    from sf_pipeline.devorg.generator import generate_org
    from sf_pipeline.devorg.org import Org

    path = tmp_path_factory.mktemp("vanishing-org")
    org = Org(path)
    org.set_clock(T0, freeze=True)
    generate_org(org, 5000, 42)
    org.close()
    return str(path)


@pytest.fixture
def big(generated_org_dir: str, tmp_path) -> DevOrgServer:
    import shutil

    target = tmp_path / "org"
    shutil.copytree(generated_org_dir, target)
    with DevOrgServer(target) as server:
        yield server


def _cli(server: DevOrgServer, *args: str) -> dict:
    from click.testing import CliRunner

    from sf_pipeline.cli import main

    result = CliRunner().invoke(
        main,
        ["devorg", *args],
        env={**server.env("production"), **server.control_env("production")},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_mass_hard_delete_scenario_runs_bulk_hard_delete_jobs_as_the_integration_user(big):
    from sf_pipeline.devorg.scenarios import run_scenario

    sf = connect(big, "admin")
    before = {
        o: sf.query(f"SELECT COUNT() FROM {o}", include_deleted=True)["totalSize"] for o in ("Opportunity", "Contact")
    }
    result = run_scenario(big.org, "mass-hard-delete", fraction=0.1)
    assert result.user_id == big.org.user("integration").user_id
    jobs = result.details["jobs"]
    assert set(jobs) == {"Opportunity", "Contact"} and all(j.startswith("750") for j in jobs.values())
    # the jobs are real Bulk API 2.0 ingest jobs: a client can read them back
    info = requests.get(
        f"{big.instance_url}/services/data/v59.0/jobs/ingest/{jobs['Opportunity']}",
        headers={"Authorization": f"Bearer {big.login()}"},
        verify=big.ca_bundle,
    ).json()
    assert (info["operation"], info["state"], info["numberRecordsProcessed"]) == ("hardDelete", "JobComplete", 500)
    assert info["createdById"] == result.user_id
    opps = result.changed["Opportunity"]
    hard = result.details["hard_deleted"]
    assert len(opps) == hard["Opportunity"] == 500 and 0 < hard["Contact"] < 100
    # contacts with Cases are refused (restrictedDelete), the rest are gone without a trace
    assert all(e.startswith("DELETE_FAILED:") for e in result.details["failed"]["Contact"].values())
    assert hard["Contact"] + len(result.details["failed"]["Contact"]) == 100
    after = {
        o: sf.query(f"SELECT COUNT() FROM {o}", include_deleted=True)["totalSize"] for o in ("Opportunity", "Contact")
    }
    assert after == {"Opportunity": before["Opportunity"] - 500, "Contact": before["Contact"] - hard["Contact"]}
    # the children: contact roles went with their opportunities or contacts, reports-to lookups were cleared
    assert result.details["cascade_deleted"]["OpportunityContactRole"] > 0
    assert result.details["lookups_cleared"].get("Contact.ReportsToId", 0) > 0
    assert _in_query_all(sf, "Opportunity", opps[:100]) == {}
    assert {r["statusCode"] for r in _undelete(big, opps[:5])} == {"UNDELETE_FAILED"}


def test_recycle_bin_purge_scenario_by_retention_and_by_emptying(big):
    from sf_pipeline.devorg.scenarios import run_scenario

    sf = connect(big, "admin")
    mass = run_scenario(big.org, "mass-delete", fraction=0.2)
    deleted = mass.changed["Case"][: mass.details["deleted"]["Case"]]  # (then the cases whose ParentId was cleared)
    emptied = run_scenario(big.org, "recycle-bin-purge", empty_bin=True, fraction=0.5)
    half = len(deleted) // 2
    assert emptied.details["mode"] == "emptyRecycleBin" and emptied.details["emptied_roots"] == half
    gone = set(emptied.changed["Case"])
    assert len(gone) == half and gone <= set(deleted)
    in_bin = _in_query_all(sf, "Case", deleted)
    assert not gone & set(in_bin) and len(in_bin) == len(deleted) - half
    # the rest go when the clock passes their 15 days
    purged = run_scenario(big.org, "recycle-bin-purge")
    assert purged.details["mode"] == "retention" and len(purged.changed["Case"]) == len(deleted) - half
    assert big.org.clock.now() >= T0 + timedelta(days=15)
    assert sf.query("SELECT COUNT() FROM Case WHERE IsDeleted = true", include_deleted=True)["totalSize"] == 0
    with pytest.raises(ValueError, match="fraction"):
        run_scenario(big.org, "recycle-bin-purge", fraction=0.5)
    with pytest.raises(ValueError, match="empty_bin"):
        run_scenario(big.org, "mass-merge", empty_bin=True)


def test_mass_merge_scenario_merges_hundreds_of_accounts(big):
    from sf_pipeline.devorg.scenarios import run_scenario

    sf = connect(big, "admin")
    result = run_scenario(big.org, "mass-merge", fraction=0.6)
    assert result.user_id == big.org.user("integration").user_id
    merged = result.details["merged"]
    assert merged >= 250 and len(result.changed["Account"]) >= 375  # hundreds of Accounts touched
    losers = sf.query_all(
        "SELECT Id, MasterRecordId FROM Account WHERE IsDeleted = true AND MasterRecordId != null", include_deleted=True
    )["records"]
    assert len(losers) == merged
    loser_ids = {r["Id"] for r in losers}
    quoted = ",".join(f"'{i}'" for i in sorted(loser_ids)[:300])
    # no live child still points at a loser: every Contact and Opportunity moved to its master
    for obj in ("Contact", "Opportunity", "Case"):
        assert sf.query(f"SELECT COUNT() FROM {obj} WHERE AccountId IN ({quoted})")["totalSize"] == 0
    assert sum(result.details["reparented"].values()) > 0


def test_vanishing_scenarios_from_the_command_line(big):
    out = _cli(big, "scenario", "mass-hard-delete", "--fraction", "0.02")
    assert out["name"] == "mass-hard-delete" and out["changed"]["Opportunity"] == 100
    out = _cli(big, "scenario", "mass-merge", "--fraction", "0.1")
    merged = out["details"]["merged"]
    assert merged >= 45 and out["changed"]["Account"] >= 70
    out = _cli(big, "scenario", "recycle-bin-purge", "--empty-bin")
    assert out["details"]["mode"] == "emptyRecycleBin" and out["changed"]["Account"] == merged
    out = _cli(big, "scenario", "recycle-bin-purge")
    assert out["details"]["mode"] == "retention" and out["changed"] == {}


def test_a_detail_deleted_before_its_master_is_hard_deleted_with_the_master(tmp_path):
    spec = tmp_path / "objects.yaml"
    spec.write_text(
        "objects:\n  Invoice_Line__c:\n    label: Invoice Line\n    fields:\n"
        "      - {name: Invoice__c, type: reference, referenceTo: Invoice__c, deleteConstraint: Cascade}\n"
        "      - {name: Quantity__c, type: double}\n"
    )
    with DevOrgServer(tmp_path / "org", custom_objects=spec) as server:
        sf = connect(server, "admin")
        invoice = sf.Invoice__c.create({"Amount__c": 10})["id"]
        early, late = (sf.Invoice_Line__c.create({"Invoice__c": invoice, "Quantity__c": q})["id"] for q in (1, 2))
        sf.Invoice_Line__c.delete(early)  # in the bin on its own
        sf.Invoice__c.delete(invoice)  # takes `late` with it, and makes `early` a hard delete
        assert _in_query_all(sf, "Invoice_Line__c", [early, late]).keys() == {late}
        assert _undelete(server, [early])[0]["statusCode"] == "UNDELETE_FAILED"
        assert _undelete(server, [invoice])[0]["success"]
        assert sf.Invoice_Line__c.get(late)["IsDeleted"] is False
