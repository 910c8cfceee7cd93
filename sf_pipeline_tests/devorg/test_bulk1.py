"""Bulk API 1.0 on devorg over HTTPS (`/services/async/<version>/...`): jobs and batches in XML, CSV and
JSON, query/queryAll and insert/update/upsert/delete/hardDelete, the error bodies and states of the
"Bulk API Developer Guide", FeatureNotEnabled for an org without the feature, and simple-salesforce's
`sf.bulk` (JSON jobs) unmodified. References are cited in sf_pipeline/devorg/bulk1.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import pytest
import requests
from simple_salesforce import Salesforce

from sf_pipeline.devorg.bulk1 import set_bulk_api_enabled
from sf_pipeline.devorg.runner import DevOrgServer
from sf_pipeline_tests.devorg_fixtures import tls_session

NS = "{http://www.force.com/2009/06/asyncapi/dataload}"
XML = "application/xml; charset=UTF-8"


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[DevOrgServer]:
    with DevOrgServer(tmp_path / "org", generate=30) as server:
        yield server


class Async:
    """Raw HTTP on /services/async/59.0/ with the X-SFDC-Session header."""

    def __init__(self, server: DevOrgServer, user: str = "admin"):
        self.http = tls_session(server)
        self.base = f"{server.instance_url}/services/async/59.0/"
        self.http.headers["X-SFDC-Session"] = server.login(user)

    def __call__(self, method: str, path: str, body: str | bytes | None = None, ctype: str = XML) -> requests.Response:
        return self.http.request(method, self.base + path, data=body, headers={"Content-Type": ctype})

    @staticmethod
    def xml(resp: requests.Response) -> dict[str, str]:
        assert resp.headers["content-type"] == "application/xml", resp.text
        return {el.tag.replace(NS, ""): el.text for el in ElementTree.fromstring(resp.content)}

    def job(self, operation: str, obj: str, content_type: str = "CSV", **extra: str) -> str:
        more = "".join(f"<{k}>{v}</{k}>" for k, v in extra.items())
        r = self(
            "POST",
            "job",
            f'<?xml version="1.0" encoding="UTF-8"?><jobInfo xmlns="{NS[1:-1]}">'
            f"<operation>{operation}</operation><object>{obj}</object>{more}"
            f"<contentType>{content_type}</contentType></jobInfo>",
        )
        assert r.status_code == 201, r.text
        return self.xml(r)["id"]

    def batch(self, job_id: str, data: str, ctype: str = "text/csv") -> str:
        r = self("POST", f"job/{job_id}/batch", data, ctype)
        assert r.status_code == 201, r.text
        info = r.json() if "json" in r.headers["content-type"] else self.xml(r)
        assert info["state"] == "Queued"
        return info["id"]

    def wait(self, job_id: str, batch_id: str, timeout: float = 20) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            info = self.xml(self("GET", f"job/{job_id}/batch/{batch_id}"))
            if info["state"] not in ("Queued", "InProgress") or time.monotonic() > deadline:
                return info
            time.sleep(0.02)


@pytest.fixture
def bulk(srv: DevOrgServer) -> Async:
    return Async(srv)


def soql(srv: DevOrgServer, text: str, deleted: bool = False) -> list[dict]:
    return srv.org.queries.run(text, include_deleted=deleted)["records"]


# ============================================================================ ingest
def test_csv_insert_batch_reports_each_row_in_request_order(srv: DevOrgServer, bulk: Async) -> None:
    job = bulk.job("insert", "Account")
    info = bulk.xml(bulk("GET", f"job/{job}"))
    assert (
        info["operation"],
        info["object"],
        info["state"],
        info["contentType"],
        info["concurrencyMode"],
        info["apiVersion"],
    ) == ("insert", "Account", "Open", "CSV", "Parallel", "59.0")
    assert info["id"].startswith("750") and info["createdDate"].endswith(".000Z")
    batch = bulk.batch(job, 'Name,NumberOfEmployees,Industry\nBulk One,10,Banking\n,5,\n"Bulk, Two",x,\n')
    assert batch.startswith("751")
    done = bulk.wait(job, batch)
    assert (done["state"], done["numberRecordsProcessed"], done["numberRecordsFailed"]) == ("Completed", "3", "2")

    result = bulk("GET", f"job/{job}/batch/{batch}/result")
    assert result.headers["content-type"] == "text/csv"
    lines = result.text.splitlines()
    assert lines[0] == '"Id","Success","Created","Error"'
    first_id = lines[1].split(",")[0].strip('"')
    assert lines[1] == f'"{first_id}","true","true",""'
    assert lines[2].startswith('"","false","false","REQUIRED_FIELD_MISSING:Required fields are missing: [Name]')
    assert "'x' is not a valid value for the type xsd:int" in lines[3]
    rec = soql(srv, f"SELECT Name, NumberOfEmployees, Industry, CreatedById FROM Account WHERE Id = '{first_id}'")[0]
    assert (rec["Name"], rec["NumberOfEmployees"], rec["Industry"]) == ("Bulk One", 10, "Banking")
    assert rec["CreatedById"] == srv.org.user("admin").user_id
    # the batch's request is kept as posted
    assert bulk("GET", f"job/{job}/batch/{batch}/request").text.startswith("Name,NumberOfEmployees")

    closed = bulk.xml(bulk("POST", f"job/{job}", f'<jobInfo xmlns="{NS[1:-1]}"><state>Closed</state></jobInfo>'))
    assert (
        closed["state"],
        closed["numberBatchesTotal"],
        closed["numberBatchesCompleted"],
        closed["numberRecordsProcessed"],
        closed["numberRecordsFailed"],
    ) == ("Closed", "1", "1", "3", "2")
    again = bulk("POST", f"job/{job}/batch", "Name\nLate\n", "text/csv")
    assert again.status_code == 400 and bulk.xml(again)["exceptionCode"] == "InvalidJobState"


def test_xml_update_with_nil_clears_a_field_and_json_upsert_matches_by_external_id(
    srv: DevOrgServer, bulk: Async
) -> None:
    acc = soql(srv, "SELECT Id, Industry FROM Account WHERE Industry != null LIMIT 1")[0]
    job = bulk.job("update", "Account", "XML")
    batch = bulk.batch(
        job,
        f'<sObjects xmlns="{NS[1:-1]}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        f'<sObject><Id>{acc["Id"]}</Id><Industry xsi:nil="true"/><Phone>555-0100</Phone>'
        "</sObject></sObjects>",
        XML,
    )
    assert bulk.wait(job, batch)["state"] == "Completed"
    results = ElementTree.fromstring(bulk("GET", f"job/{job}/batch/{batch}/result").content)
    assert [r.findtext(f"{NS}success") for r in results] == ["true"]
    rec = soql(srv, f"SELECT Industry, Phone FROM Account WHERE Id = '{acc['Id']}'")[0]
    assert (rec["Industry"], rec["Phone"]) == (None, "555-0100")

    http = Async(srv).http
    base = f"{srv.instance_url}/services/async/59.0/"
    r = http.post(
        base + "job",
        json={
            "operation": "upsert",
            "object": "Invoice__c",
            "contentType": "JSON",
            "externalIdFieldName": "Invoice_Number__c",
        },
    )
    assert r.status_code == 201 and r.headers["content-type"] == "application/json"
    job = r.json()["id"]
    records = [
        {"Invoice_Number__c": "INV-1", "Amount__c": 10.5, "Account__c": acc["Id"], "Due_Date__c": "2026-01-31"},
        {"Invoice_Number__c": "INV-2", "Amount__c": 20, "Account__c": acc["Id"]},
    ]
    r = http.post(base + f"job/{job}/batch", json=records)
    batch = r.json()["id"]
    deadline = time.monotonic() + 20
    while http.get(base + f"job/{job}/batch/{batch}").json()["state"] != "Completed" and time.monotonic() < deadline:
        time.sleep(0.02)
    first = http.get(base + f"job/{job}/batch/{batch}/result").json()
    assert [(r["success"], r["created"], r["errors"]) for r in first] == [(True, True, []), (True, True, [])]
    r = http.post(base + f"job/{job}/batch", json=[{"Invoice_Number__c": "INV-1", "Amount__c": 99}])
    batch = r.json()["id"]
    while http.get(base + f"job/{job}/batch/{batch}").json()["state"] != "Completed" and time.monotonic() < deadline:
        time.sleep(0.02)
    second = http.get(base + f"job/{job}/batch/{batch}/result").json()
    assert (second[0]["id"], second[0]["created"]) == (first[0]["id"], False)
    rows = soql(
        srv,
        "SELECT Invoice_Number__c, Amount__c, Due_Date__c FROM Invoice__c WHERE Invoice_Number__c "
        "IN ('INV-1', 'INV-2') ORDER BY Invoice_Number__c",
    )
    assert [(r["Invoice_Number__c"], r["Amount__c"], r["Due_Date__c"]) for r in rows] == [
        ("INV-1", 99.0, "2026-01-31"),
        ("INV-2", 20.0, None),
    ]


def test_delete_and_hard_delete_remove_records_and_queryall_sees_the_soft_deleted(
    srv: DevOrgServer, bulk: Async
) -> None:
    # hardDelete rows run through the Bulk 2.0 row machinery, so they follow its hardDelete (whether the
    # record skips the recycle bin is Bulk 2.0's concern): only their absence from `query` is checked here.
    # Contacts with Cases cannot be deleted (Case.ContactId is restrictedDelete), so take three without any
    with_cases = {r["ContactId"] for r in soql(srv, "SELECT ContactId FROM Case WHERE ContactId != null")}
    contacts = [r["Id"] for r in soql(srv, "SELECT Id FROM Contact ORDER BY Id") if r["Id"] not in with_cases][:3]
    assert len(contacts) == 3
    job = bulk.job("delete", "Contact")
    batch = bulk.batch(job, "Id\n" + "\n".join(contacts[:2]) + "\n003000000000000AAA\n")
    assert bulk.wait(job, batch)["numberRecordsFailed"] == "1"
    job = bulk.job("hardDelete", "Contact")
    assert bulk.wait(job, bulk.batch(job, f"Id\n{contacts[2]}\n"))["state"] == "Completed"
    ids = ",".join(f"'{i}'" for i in contacts)
    assert soql(srv, f"SELECT Id FROM Contact WHERE Id IN ({ids})") == []

    soft = ",".join(f"'{i}'" for i in contacts[:2])
    job = bulk.job("queryAll", "Contact")
    batch = bulk.batch(job, f"SELECT Id, IsDeleted FROM Contact WHERE Id IN ({soft})")
    assert bulk.wait(job, batch)["state"] == "Completed"
    listing = ElementTree.fromstring(bulk("GET", f"job/{job}/batch/{batch}/result").content)
    assert listing.tag == f"{NS}result-list"
    result_id = listing.findtext(f"{NS}result")
    assert result_id.startswith("752")
    csv_text = bulk("GET", f"job/{job}/batch/{batch}/result/{result_id}").text
    assert sorted(csv_text.splitlines()[1:]) == sorted(f'"{i}","true"' for i in contacts[:2])


def test_a_batch_with_an_unknown_column_fails_with_the_guides_state_message(bulk: Async) -> None:
    job = bulk.job("insert", "Account")
    info = bulk.wait(job, bulk.batch(job, "Name,Colour__c\nA,red\n"))
    assert (info["state"], info["stateMessage"]) == ("Failed", "InvalidBatch : Field name not found : Colour__c")


# ============================================================================ query
def test_query_results_in_csv_json_and_xml(srv: DevOrgServer, bulk: Async) -> None:
    rec = soql(srv, "SELECT Id, Name, CreatedDate, Owner.Username FROM Account ORDER BY Name LIMIT 1")[0]
    text = f"SELECT Id, Name, CreatedDate, Owner.Username FROM Account WHERE Id = '{rec['Id']}'"

    job = bulk.job("query", "Account")
    batch = bulk.batch(job, text)
    bulk.wait(job, batch)
    rid = ElementTree.fromstring(bulk("GET", f"job/{job}/batch/{batch}/result").content).findtext(f"{NS}result")
    result = bulk("GET", f"job/{job}/batch/{batch}/result/{rid}")
    assert result.headers["content-type"] == "text/csv"  # exactly: heroku salesforce-bulk compares it
    csv_text = result.text
    assert csv_text.splitlines()[0] == '"Id","Name","CreatedDate","Owner.Username"'
    assert csv_text.splitlines()[1].startswith(f'"{rec["Id"]}","{rec["Name"]}","')

    job = bulk.job("query", "Account", "JSON")
    batch = bulk.batch(job, text, "application/json")
    bulk.wait(job, batch)
    rid = bulk("GET", f"job/{job}/batch/{batch}/result", ctype="application/json").json()[0]
    (row,) = bulk("GET", f"job/{job}/batch/{batch}/result/{rid}", ctype="application/json").json()
    assert row["attributes"]["type"] == "Account" and row["Owner"]["Username"] == rec["Owner"]["Username"]
    from sf_pipeline.devorg.clock import parse_datetime

    assert row["CreatedDate"] == int(parse_datetime(rec["CreatedDate"]).timestamp() * 1000)  # epoch ms

    job = bulk.job("query", "Account", "XML")
    batch = bulk.batch(job, text, XML)
    bulk.wait(job, batch)
    rid = ElementTree.fromstring(bulk("GET", f"job/{job}/batch/{batch}/result").content).findtext(f"{NS}result")
    root = ElementTree.fromstring(bulk("GET", f"job/{job}/batch/{batch}/result/{rid}").content)
    (records,) = root.findall(f"{NS}records")
    assert records.findtext(f"{NS}Name") == rec["Name"]
    assert records.findtext(f"{NS}CreatedDate").endswith("Z")
    assert records.find(f"{NS}Owner").findtext(f"{NS}Username") == rec["Owner"]["Username"]


def test_empty_csv_query_result_and_bad_soql(bulk: Async) -> None:
    job = bulk.job("query", "Account")
    batch = bulk.batch(job, "SELECT Id FROM Account WHERE Name = 'no such account'")
    bulk.wait(job, batch)
    rid = ElementTree.fromstring(bulk("GET", f"job/{job}/batch/{batch}/result").content).findtext(f"{NS}result")
    assert bulk("GET", f"job/{job}/batch/{batch}/result/{rid}").text == "Records not found for this query"
    failed = bulk.wait(job, bulk.batch(job, "SELECT Nope__c FROM Account"))
    assert failed["state"] == "Failed" and failed["stateMessage"].startswith("InvalidBatch : Failed to process query")


# ============================================================================ errors and feature switch
def test_errors_are_async_api_exception_bodies(srv: DevOrgServer, bulk: Async) -> None:
    http = tls_session(srv)
    r = http.get(f"{srv.instance_url}/services/async/59.0/job/750000000000001AAA", headers={"X-SFDC-Session": "bogus"})
    # jsforce treats exactly this as an expired session: 400 with InvalidSessionId
    assert r.status_code == 400 and Async.xml(r) == {
        "exceptionCode": "InvalidSessionId",
        "exceptionMessage": "Invalid session id",
    }
    r = bulk("GET", "job/7505J00000000ZZAAA")
    assert r.status_code == 400 and Async.xml(r)["exceptionCode"] == "InvalidJob"
    r = bulk("POST", "job", '{"operation": "merge", "object": "Account"}', "application/json")
    assert r.status_code == 400 and r.json()["exceptionCode"] == "InvalidJob"
    r = bulk(
        "POST", "job", f'<jobInfo xmlns="{NS[1:-1]}"><operation>insert</operation><object>Nope__c</object></jobInfo>'
    )
    assert Async.xml(r) == {"exceptionCode": "InvalidJob", "exceptionMessage": "Unable to find object: Nope__c"}
    r = bulk("POST", "job", "<jobInfo")
    assert Async.xml(r)["exceptionCode"] == "InvalidXML"
    job = bulk.job("insert", "Account")
    aborted = bulk.xml(bulk("POST", f"job/{job}", f'<jobInfo xmlns="{NS[1:-1]}"><state>Aborted</state></jobInfo>'))
    assert aborted["state"] == "Aborted"
    r = bulk("POST", f"job/{job}/batch", "Name\nToo late\n", "text/csv")
    assert Async.xml(r)["exceptionCode"] == "InvalidJobState"


def test_an_org_without_the_bulk_api_answers_feature_not_enabled(srv: DevOrgServer, bulk: Async) -> None:
    # the org option (also `POST /_devorg/features {"bulk_api": false}`), set in-process
    set_bulk_api_enabled(srv.org, False)
    r = bulk(
        "POST", "job", f'<jobInfo xmlns="{NS[1:-1]}"><operation>insert</operation><object>Account</object></jobInfo>'
    )
    assert r.status_code == 400
    assert Async.xml(r) == {
        "exceptionCode": "FeatureNotEnabled",
        "exceptionMessage": "Bulk API is not enabled for this Organization or Partner",
    }
    set_bulk_api_enabled(srv.org, True)
    assert (
        bulk(
            "POST",
            "job",
            f'<jobInfo xmlns="{NS[1:-1]}"><operation>insert</operation><object>Account</object></jobInfo>',
        ).status_code
        == 201
    )


# ============================================================================ simple-salesforce sf.bulk
def test_simple_salesforce_bulk_insert_and_query_round_trip(srv: DevOrgServer) -> None:
    sf = Salesforce(instance_url=srv.instance_url, session_id=srv.login("admin"), session=tls_session(srv))
    results = sf.bulk.Contact.insert(
        [{"LastName": "Bulk JSON", "Email": "json@example.com"}, {"FirstName": "x"}], batch_size=10000, use_serial=True
    )
    assert [r["success"] for r in results] == [True, False]
    assert results[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    rows = sf.bulk.Contact.query(
        f"SELECT Id, LastName, Email FROM Contact WHERE Id = '{results[0]['id']}'", lazy_operation=False, wait=0.05
    )
    assert [(r["LastName"], r["Email"]) for r in rows] == [("Bulk JSON", "json@example.com")]
