"""Bulk API 2.0 on devorg, through unmodified simple-salesforce over TLS (and raw HTTP where it hides
statuses and headers): query/queryAll jobs and paging, ingest jobs and their results, job-level
failures, lock faults. Reference: salesforce-api-fidelity.md sections 1.5 and 3."""

from __future__ import annotations

import base64
import csv
import io
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest, SalesforceOperationError

from sf_pipeline.devorg import bulk
from sf_pipeline.devorg.runner import DevOrgServer

V = "59.0"
WAIT = 0.05  # simple-salesforce's first poll delay (it backs off from there)
STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.000\+0000$")


# ============================================================================ fixtures and helpers
@pytest.fixture
def srv(tmp_path: Path) -> Iterator[DevOrgServer]:
    with DevOrgServer(tmp_path / "org", generate=40) as server:
        yield server
        # uvicorn would wait (runner.stop: up to 10 s) for TLS keep-alive connections that never report
        # closed after a POST; nothing is in flight here, so let it exit at once.
        if server._server is not None:
            server._server.force_exit = True


def tls(server: DevOrgServer) -> requests.Session:
    session = requests.Session()
    session.verify = server.ca_bundle
    session.trust_env = False  # REQUESTS_CA_BUNDLE in the environment would override session.verify
    return session


@pytest.fixture
def sf(srv: DevOrgServer) -> Iterator[Salesforce]:
    session = tls(srv)
    yield Salesforce(instance_url=srv.instance_url, session_id=srv.login("admin"), session=session)
    session.close()


class Raw:
    """Plain HTTP against /services/data/v59.0/jobs/ (what simple-salesforce does not show)."""

    def __init__(self, server: DevOrgServer):
        self.http = tls(server)
        self.base = f"{server.instance_url}/services/data/v{V}/jobs/"
        self.http.headers["Authorization"] = f"Bearer {server.login('admin')}"

    def __call__(self, method: str, path: str, **kw) -> requests.Response:
        return self.http.request(method, self.base + path, **kw)

    def wait(self, kind: str, job_id: str, timeout: float = 20) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            info = self("GET", f"{kind}/{job_id}").json()
            if info["state"] in ("JobComplete", "Failed", "Aborted") or time.monotonic() > deadline:
                return info
            time.sleep(0.02)

    def ingest(self, obj: str, operation: str, data: str | bytes, **opts) -> dict:
        job = self("POST", "ingest", json={"object": obj, "operation": operation, "contentType": "CSV", **opts})
        assert job.status_code == 200, job.text
        jid = job.json()["id"]
        put = self(
            "PUT",
            f"ingest/{jid}/batches",
            data=data if isinstance(data, bytes) else data.encode(),
            headers={"Content-Type": "text/csv"},
        )
        assert put.status_code == 201, put.text
        assert self("PATCH", f"ingest/{jid}", json={"state": "UploadComplete"}).status_code == 200
        return self.wait("ingest", jid)


@pytest.fixture
def raw(srv: DevOrgServer) -> Iterator[Raw]:
    client = Raw(srv)
    yield client
    client.http.close()


def rows(text: str, delimiter: str = ",") -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter))


def opp_ids(sf: Salesforce, n: int) -> list[str]:
    return [r["Id"] for r in sf.query(f"SELECT Id FROM Opportunity ORDER BY Id LIMIT {n}")["records"]]


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Hold query jobs before they write results (so a test sees them InProgress) until set."""
    release = threading.Event()
    original = bulk._write_query_results

    def held(job, chunks):
        release.wait(20)
        return original(job, chunks)

    monkeypatch.setattr(bulk, "_write_query_results", held)
    yield release
    release.set()


# ============================================================================ query jobs
def test_query_pages_have_headers_locators_and_all_records(sf: Salesforce, raw: Raw):
    soql = "SELECT Id, Name, Amount, CloseDate, IsClosed, CreatedDate, Account.Name FROM Opportunity"
    pages = list(sf.bulk2.Opportunity.query(soql, max_records=15, wait=WAIT))
    assert len(pages) == 3  # 40 records: 15 + 15 + 10
    header = '"Id","Name","Amount","CloseDate","IsClosed","CreatedDate","Account.Name"'
    assert all(p.splitlines()[0] == header for p in pages)
    parsed = [rows(p) for p in pages]
    assert [len(p) for p in parsed] == [15, 15, 10]
    got = {r["Id"]: r for page in parsed for r in page}
    rest = {r["Id"]: r for r in sf.query_all(soql)["records"]}
    assert set(got) == set(rest)
    some = next(iter(rest.values()))
    mine = got[some["Id"]]
    assert mine["Name"] == some["Name"] and mine["Account.Name"] == some["Account"]["Name"]
    assert mine["IsClosed"] == str(some["IsClosed"]).lower()
    assert mine["CreatedDate"] == some["CreatedDate"][:23] + "Z"  # Bulk CSV datetimes: ...000Z

    # the same job over raw HTTP: status, content type, locator and record-count headers
    job = raw("POST", "query", json={"operation": "query", "query": soql})
    jid = job.json()["id"]
    assert raw.wait("query", jid)["state"] == "JobComplete"
    first = raw("GET", f"query/{jid}/results", params={"maxRecords": 15})
    assert first.status_code == 200
    assert first.headers["Content-Type"] == "text/csv"
    assert first.headers["Sforce-NumberOfRecords"] == "15"
    locator = first.headers["Sforce-Locator"]
    assert locator not in ("", "null") and re.fullmatch(r"[A-Za-z0-9+/]+", locator)
    assert base64.b64decode(locator + "=" * (-len(locator) % 4)) == b"15"  # like the real `MTAwMDA`
    assert first.content.count(b"\n") == 16 and first.content.startswith(header.encode())
    second = raw("GET", f"query/{jid}/results", params={"maxRecords": 15, "locator": locator})
    again = raw("GET", f"query/{jid}/results", params={"maxRecords": 15, "locator": locator})
    assert second.content == again.content  # a locator can be fetched again: stable results
    assert second.headers["Sforce-Locator"] == again.headers["Sforce-Locator"]
    last = raw("GET", f"query/{jid}/results", params={"maxRecords": 100, "locator": second.headers["Sforce-Locator"]})
    assert last.headers["Sforce-NumberOfRecords"] == "10" and last.headers["Sforce-Locator"] == "null"
    everything = raw("GET", f"query/{jid}/results")  # no maxRecords: one page
    assert everything.headers["Sforce-NumberOfRecords"] == "40" and everything.headers["Sforce-Locator"] == "null"
    assert everything.content == first.content + b"".join(r.content.split(b"\n", 1)[1] for r in (second, last))
    assert "Sforce-Limit-Info" in first.headers
    bad = raw("GET", f"query/{jid}/results", params={"locator": "!!nope"})
    assert bad.status_code == 400
    other_version = requests.get(
        raw.base.replace(f"v{V}", "v58.0") + f"query/{jid}/results", headers=raw.http.headers, verify=raw.http.verify
    )
    assert other_version.status_code == 409


def test_query_all_includes_deleted_records_only_in_query_all(sf: Salesforce):
    gone = opp_ids(sf, 2)
    for rid in gone:
        sf.Opportunity.delete(rid)
    soql = "SELECT Id, IsDeleted FROM Opportunity"
    live = [r for p in sf.bulk2.Opportunity.query(soql, wait=WAIT) for r in rows(p)]
    everything = [r for p in sf.bulk2.Opportunity.query_all(soql, wait=WAIT) for r in rows(p)]
    assert len(live) == 38 and not {r["Id"] for r in live} & set(gone)
    assert len(everything) == 40
    assert {r["Id"] for r in everything if r["IsDeleted"] == "true"} == set(gone)
    assert all(r["IsDeleted"] == "false" for r in live)


def test_download_writes_one_csv_file_per_page(sf: Salesforce, tmp_path: Path):
    results = sf.bulk2.Opportunity.download(
        "SELECT Id, Name FROM Opportunity", path=str(tmp_path), max_records=16, wait=WAIT
    )
    assert [r["number_of_records"] for r in results] == [16, 16, 8]
    assert [bool(r["locator"]) for r in results] == [True, True, False]
    ids = []
    for r in results:
        text = Path(r["file"]).read_text()
        assert text.startswith('"Id","Name"\n')
        ids += [row["Id"] for row in rows(text)]
    assert len(ids) == len(set(ids)) == 40


def test_query_job_info_list_and_delete_shapes(srv: DevOrgServer, raw: Raw):
    created = raw(
        "POST",
        "query",
        json={
            "operation": "query",
            "query": "SELECT Id FROM Account",
            "contentType": "CSV",
            "columnDelimiter": "COMMA",
            "lineEnding": "LF",
        },
    )
    assert created.status_code == 200
    info = created.json()
    assert list(info) == [
        "id",
        "operation",
        "object",
        "createdById",
        "createdDate",
        "systemModstamp",
        "state",
        "concurrencyMode",
        "contentType",
        "apiVersion",
        "lineEnding",
        "columnDelimiter",
    ]
    assert info["id"].startswith("750") and len(info["id"]) == 18
    assert info["state"] == "UploadComplete" and info["operation"] == "query" and info["object"] == "Account"
    assert info["createdById"] == srv.org.user("admin").user_id
    assert STAMP.match(info["createdDate"]) and STAMP.match(info["systemModstamp"])
    assert info["apiVersion"] == 59.0 and isinstance(info["apiVersion"], float)
    assert (info["concurrencyMode"], info["contentType"]) == ("Parallel", "CSV")
    done = raw.wait("query", info["id"])
    assert done["state"] == "JobComplete" and done["jobType"] == "V2Query"
    assert done["numberRecordsProcessed"] == 4 and done["retries"] == 0
    assert isinstance(done["totalProcessingTime"], int)
    listing = raw("GET", "query").json()
    assert listing["done"] is True and listing["nextRecordsUrl"] is None
    assert [j["id"] for j in listing["records"]] == [info["id"]]
    assert listing["records"][0]["jobType"] == "V2Query"
    assert raw("GET", "ingest").json()["records"] == []
    deleted = raw("DELETE", f"query/{info['id']}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert raw("GET", f"query/{info['id']}").status_code == 404
    assert raw("GET", "query").json()["records"] == []
    assert not (srv.data_dir / "bulk" / info["id"]).exists()  # results file cleaned up


def test_bad_soql_and_bad_job_bodies_are_rejected_at_creation(sf: Salesforce, raw: Raw):
    with pytest.raises(SalesforceMalformedRequest) as exc:
        next(sf.bulk2.Opportunity.query("SELECT Id, Nope__c FROM Opportunity", wait=WAIT))
    assert exc.value.content[0]["errorCode"] == "INVALID_FIELD"
    assert "Nope__c" in exc.value.content[0]["message"]
    resp = raw("POST", "query", json={"operation": "query", "query": "SELECT Id FROM Nothing__c"})
    assert resp.status_code == 400 and resp.json()[0]["errorCode"] == "INVALID_TYPE"
    resp = raw("POST", "query", json={"operation": "query", "query": "SELECT COUNT() FROM Account"})
    assert resp.status_code == 400 and resp.json()[0]["errorCode"] == "API_ERROR"
    resp = raw("POST", "query", json={"operation": "insert", "query": "SELECT Id FROM Account"})
    assert resp.status_code == 400
    assert resp.json() == [
        {"message": "Invalid value: 'insert' supplied for property: 'operation'", "errorCode": "API_ERROR"}
    ]
    resp = raw(
        "POST", "query", json={"operation": "query", "query": "SELECT Id FROM Account", "columnDelimiter": "COLON"}
    )
    assert resp.status_code == 400 and resp.json()[0]["errorCode"] == "API_ERROR"
    resp = raw("POST", "query", json={"operation": "query"})
    assert resp.status_code == 400 and resp.json()[0]["errorCode"] == "INVALIDJOB"
    resp = raw("POST", "query", data=b"{not json")
    assert resp.status_code == 400 and resp.json()[0]["errorCode"] == "JSON_PARSER_ERROR"
    assert raw("GET", "query").json()["records"] == []  # rejected jobs are not created
    assert raw("GET", "query/750000000000000AAA").status_code == 404


def test_job_runs_asynchronously_results_wait_for_completion_and_abort(raw: Raw, gate: threading.Event):
    jid = raw("POST", "query", json={"operation": "query", "query": "SELECT Id FROM Opportunity"}).json()["id"]
    assert raw("GET", f"query/{jid}").json()["state"] in ("UploadComplete", "InProgress")
    early = raw("GET", f"query/{jid}/results")
    assert early.status_code == 412 and early.json()[0]["errorCode"] == "INVALIDJOBSTATE"
    busy = raw("DELETE", f"query/{jid}")
    assert busy.status_code == 400  # cannot delete a job in progress
    other = raw("POST", "query", json={"operation": "query", "query": "SELECT Id FROM Account"}).json()["id"]
    aborted = raw("PATCH", f"query/{other}", json={"state": "Aborted"})
    assert aborted.status_code == 200 and aborted.json()["state"] == "Aborted"
    gate.set()
    assert raw.wait("query", jid)["state"] == "JobComplete"
    assert raw.wait("query", other)["state"] == "Aborted"
    assert raw("GET", f"query/{other}/results").status_code == 412
    again = raw("PATCH", f"query/{jid}", json={"state": "Aborted"})
    assert again.status_code == 400 and again.json()[0]["errorCode"] == "INVALIDJOBSTATE"
    assert raw("DELETE", f"query/{other}").status_code == 204


def test_delimiters_line_endings_and_special_characters(sf: Salesforce, raw: Raw, srv: DevOrgServer):
    tricky = 'Zoë "Quoted" | Ltd, ; ^ `x`\nsecond line'
    rid = sf.Account.create({"Name": tricky, "Description": "naïve café"})["id"]
    for delimiter, char in bulk.DELIMITERS.items():
        for ending, eol in bulk.LINE_ENDINGS.items():
            jid = raw(
                "POST",
                "query",
                json={
                    "operation": "query",
                    "columnDelimiter": delimiter,
                    "lineEnding": ending,
                    "query": "SELECT Id, Name, Description FROM Account",
                },
            ).json()["id"]
            assert raw.wait("query", jid)["state"] == "JobComplete"
            page = raw("GET", f"query/{jid}/results", params={"maxRecords": 2})
            body = page.content.decode()
            assert body.startswith(char.join(['"Id"', '"Name"', '"Description"']) + eol)
            collected = body
            while page.headers["Sforce-Locator"] != "null":
                page = raw(
                    "GET", f"query/{jid}/results", params={"maxRecords": 2, "locator": page.headers["Sforce-Locator"]}
                )
                collected += page.content.decode().split(eol, 1)[1]
            parsed = list(csv.reader(io.StringIO(collected, newline=""), delimiter=char))
            assert parsed[0] == ["Id", "Name", "Description"] and len(parsed) == 6
            assert [rid, tricky, "naïve café"] in parsed


def test_fast_path_matches_the_query_engine_rows(srv: DevOrgServer, sf: Salesforce, raw: Raw):
    """Results written by SQL-formatted lines equal the engine's `iter_csv_rows` through the csv module."""
    sf.Account.create({"Name": 'Ünïcode "quoted", name', "Description": "line1\nline2"})
    soql = "SELECT Id, Name, Description, NumberOfEmployees, AnnualRevenue, CreatedDate, Owner.Name FROM Account"
    jid = raw("POST", "query", json={"operation": "queryAll", "query": soql}).json()["id"]
    raw.wait("query", jid)
    served = raw("GET", f"query/{jid}/results").content
    header, engine_rows = srv.org.queries.iter_csv_rows(soql, include_deleted=True)
    buf = io.StringIO()
    csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows([header, *engine_rows])
    assert served == buf.getvalue().encode()
    # one record per page, whatever its byte length: the row index is in bytes
    page, seen = raw("GET", f"query/{jid}/results", params={"maxRecords": 1}), []
    while True:
        seen += rows(page.content.decode())
        if page.headers["Sforce-Locator"] == "null":
            break
        page = raw("GET", f"query/{jid}/results", params={"maxRecords": 1, "locator": page.headers["Sforce-Locator"]})
    assert len(seen) == 5 and any(r["Description"] == "line1\nline2" for r in seen)


def _engine_csv(org, soql: str, include_deleted: bool) -> bytes:
    header, engine_rows = org.queries.iter_csv_rows(soql, include_deleted=include_deleted)
    buf = io.StringIO()
    csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows([header, *engine_rows])
    return buf.getvalue().encode()


def _run_job_in_process(org, soql: str) -> bulk.Job:
    reg = bulk.registry(org)
    job = bulk.Job(reg, reg.new_id(), "query", "query", "", org.user("admin").user_id, V, "COMMA", "LF", query=soql)
    job.thread_done = False
    ready = bulk.concurrent.futures.Future()
    bulk._run_query(reg, job, ready)
    assert ready.result()["state"] == "UploadComplete" and job.state == "JobComplete"
    return job


@pytest.mark.parametrize("in_memory", [True, False])
def test_chunked_and_generic_paths_write_the_same_results(tmp_path: Path, monkeypatch, in_memory: bool):
    """Many small SQL chunks (two reader threads on a file org, the store connection in memory) and
    the generic csv-module path all give the engine's rows, with a correct byte index."""
    from sf_pipeline.devorg.generator import generate_org
    from sf_pipeline.devorg.org import Org

    org = Org(None if in_memory else tmp_path / "org")
    try:
        generate_org(org, 30)
        org.store.insert(org.schema.get("Account"), {"Name": 'Ünïcode, "quoted"'}, org.user("admin").user_id)
        soql = "SELECT Id, Name, Owner.Name, CreatedDate, AnnualRevenue FROM Account ORDER BY Name"
        expected = _engine_csv(org, soql, False)
        monkeypatch.setattr(bulk, "SQL_CHUNK", 2)
        fast = _run_job_in_process(org, soql)
        data = fast.header_bytes + fast.results_path.read_bytes()
        assert data == expected
        assert len(fast.offsets) == 5 and fast.offsets[-1] == len(data) - len(fast.header_bytes)
        lines = expected.split(b"\n")[1:-1]
        assert [fast.offsets[i + 1] - fast.offsets[i] for i in range(4)] == [len(x) + 1 for x in lines]
        monkeypatch.setattr(bulk, "SQL_FORMATTED_RESULTS", False)
        generic = _run_job_in_process(org, soql)
        assert generic.header_bytes + generic.results_path.read_bytes() == expected
        assert generic.offsets == fast.offsets
    finally:
        org.close()


# ============================================================================ ingest jobs
def test_insert_update_upsert_delete_with_per_record_results(sf: Salesforce, srv: DevOrgServer):
    bulk2 = sf.bulk2.Account
    inserted = bulk2.insert(
        records=[
            {"Name": "One", "NumberOfEmployees": "10"},
            {"Name": "Two", "NumberOfEmployees": "20"},
            {"Name": "", "NumberOfEmployees": "30"},
        ],
        wait=WAIT,
    )
    assert inserted[0]["numberRecordsProcessed"] == 3 and inserted[0]["numberRecordsFailed"] == 1
    jid = inserted[0]["job_id"]
    ok = rows(bulk2.get_successful_records(jid))
    assert [r["Name"] for r in ok] == ["One", "Two"] and all(r["sf__Created"] == "true" for r in ok)
    assert list(ok[0])[:2] == ["sf__Id", "sf__Created"]  # then the uploaded columns, in upload order
    assert sorted(list(ok[0])[2:]) == ["Name", "NumberOfEmployees"]
    assert sf.Account.get(ok[0]["sf__Id"])["NumberOfEmployees"] == 10
    failed = rows(bulk2.get_failed_records(jid))
    assert failed == [
        {
            "sf__Id": "",
            "sf__Error": "REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --",
            "Name": "",
            "NumberOfEmployees": "30",
        }
    ]
    columns = ",".join(f'"{c}"' for c in list(ok[0])[2:])
    assert bulk2.get_unprocessed_records(jid) == columns + "\n"
    assert bulk2.get_successful_records(jid).startswith(
        f'"sf__Id","sf__Created",{columns}\n"{ok[0]["sf__Id"]}","true",'
    )
    one, two = ok[0]["sf__Id"], ok[1]["sf__Id"]

    # update: empty leaves a field unchanged, #N/A sets null; a bad id fails alone
    sf.Account.update(one, {"Phone": "555-0100", "Website": "https://one.example.com"})
    updated = bulk2.update(
        records=[
            {"Id": one, "Name": "One v2", "Phone": "", "Website": "#N/A"},
            {"Id": "001000000000000AAA", "Name": "Ghost", "Phone": "", "Website": ""},
        ],
        wait=WAIT,
    )
    assert updated[0]["numberRecordsProcessed"] == 2 and updated[0]["numberRecordsFailed"] == 1
    rec = sf.Account.get(one)
    assert (rec["Name"], rec["Phone"], rec["Website"]) == ("One v2", "555-0100", None)
    all_results = bulk2.get_all_ingest_records(updated[0]["job_id"])
    assert [r["sf__Created"] for r in all_results["successfulRecords"]] == ["false"]
    assert all_results["failedRecords"][0]["sf__Error"] == "INVALID_CROSS_REFERENCE_KEY:invalid cross reference id:--"
    assert all_results["unprocessedRecords"] == []

    # upsert on an external id: one match updated, one new record created
    inv = sf.bulk2.Invoice__c
    first = inv.upsert(
        records=[{"Invoice_Number__c": "BLK-1", "Account__c": one, "Amount__c": "10.5"}],
        external_id_field="Invoice_Number__c",
        wait=WAIT,
    )
    assert first[0]["numberRecordsFailed"] == 0
    second = inv.upsert(
        records=[
            {"Invoice_Number__c": "BLK-1", "Account__c": one, "Amount__c": "99"},
            {"Invoice_Number__c": "BLK-2", "Account__c": two, "Amount__c": "5"},
        ],
        external_id_field="Invoice_Number__c",
        wait=WAIT,
    )
    created = {r["Invoice_Number__c"]: r["sf__Created"] for r in rows(inv.get_successful_records(second[0]["job_id"]))}
    assert created == {"BLK-1": "false", "BLK-2": "true"}
    got = sf.query(
        "SELECT Invoice_Number__c, Amount__c FROM Invoice__c WHERE Invoice_Number__c LIKE 'BLK-%' "
        "ORDER BY Invoice_Number__c"
    )["records"]
    assert [(r["Invoice_Number__c"], r["Amount__c"]) for r in got] == [("BLK-1", 99.0), ("BLK-2", 5.0)]

    # delete sends two to the recycle bin; hardDelete removes one for good (two is already deleted)
    gone = bulk2.delete(records=[{"Id": two}], wait=WAIT)
    assert gone[0]["numberRecordsFailed"] == 0
    hard = bulk2.hard_delete(records=[{"Id": one}, {"Id": two}], wait=WAIT)
    assert hard[0]["numberRecordsFailed"] == 1  # two is already deleted
    assert rows(bulk2.get_failed_records(hard[0]["job_id"]))[0]["sf__Error"].startswith("ENTITY_IS_DELETED:")
    assert sf.query(f"SELECT Id FROM Account WHERE Id IN ('{one}', '{two}')")["totalSize"] == 0
    bin_rows = sf.query_all(f"SELECT Id FROM Account WHERE Id IN ('{one}', '{two}')", include_deleted=True)
    assert [r["Id"] for r in bin_rows["records"]] == [two]


def test_csv_values_are_converted_per_field_type(sf: Salesforce):
    account = sf.Account.create({"Name": "Parent"})["id"]
    good = {
        "Name": "Typed",
        "StageName": "Closed Won",
        "CloseDate": "2026-03-31",
        "Amount": "1234.5",
        "IsPrivate": "true",
        "AccountId": account,
        "TotalOpportunityQuantity": "3",
    }
    bad_date = dict(good, Name="Bad date", CloseDate="31/03/2026")
    bad_bool = dict(good, Name="Bad bool", IsPrivate="maybe")
    result = sf.bulk2.Opportunity.insert(records=[good, bad_date, bad_bool], wait=WAIT)
    assert result[0]["numberRecordsFailed"] == 2
    jid = result[0]["job_id"]
    ok = rows(sf.bulk2.Opportunity.get_successful_records(jid))
    rec = sf.Opportunity.get(ok[0]["sf__Id"])
    assert (rec["Amount"], rec["IsPrivate"], rec["CloseDate"], rec["IsWon"], rec["AccountId"]) == (
        1234.5,
        True,
        "2026-03-31",
        True,
        account,
    )
    errors = {r["Name"]: r["sf__Error"] for r in rows(sf.bulk2.Opportunity.get_failed_records(jid))}
    assert errors["Bad date"].startswith("INVALID_FIELD:Failed to deserialize field at col ")
    assert "'31/03/2026' is not a valid value for the type xsd:date" in errors["Bad date"]
    assert "xsd:boolean" in errors["Bad bool"]
    assert all(e.endswith("--") for e in errors.values())


def test_unknown_header_field_fails_the_whole_job(sf: Salesforce, raw: Raw):
    with pytest.raises(SalesforceOperationError) as exc:
        sf.bulk2.Account.insert(records=[{"Name": "A", "Foo": "x"}, {"Name": "B", "Foo": "y"}], wait=WAIT)
    assert "InvalidBatch : Field name not found : Foo" in str(exc.value)
    jobs = raw("GET", "ingest").json()["records"]
    info = raw("GET", f"ingest/{jobs[-1]['id']}").json()
    assert info["state"] == "Failed" and info["errorMessage"] == "InvalidBatch : Field name not found : Foo"
    assert info["numberRecordsProcessed"] == 0
    unprocessed = rows(raw("GET", f"ingest/{info['id']}/unprocessedrecords").text)
    assert sorted(r["Name"] for r in unprocessed) == ["A", "B"]
    assert sf.query("SELECT COUNT() FROM Account WHERE Name IN ('A', 'B')")["totalSize"] == 0
    assert raw("DELETE", f"ingest/{info['id']}").status_code == 204


def test_line_ending_must_match_the_job(raw: Raw):
    info = raw.ingest("Account", "insert", "Name\r\nCRLF Co\r\n", lineEnding="LF")
    assert info["state"] == "Failed"
    assert info["errorMessage"] == (
        "ClientInputError : LineEnding is invalid on user data. Current LineEnding setting is LF"
    )
    info = raw.ingest("Account", "insert", "Name\r\nCRLF Co\r\n", lineEnding="CRLF")
    assert info["state"] == "JobComplete" and info["numberRecordsProcessed"] == 1
    info = raw.ingest("Account", "insert", 'Name;Phone\n"Semi; Co";555\n', columnDelimiter="SEMICOLON")
    assert info["state"] == "JobComplete" and info["numberRecordsFailed"] == 0
    ok = raw("GET", f"ingest/{info['id']}/successfulResults").text
    assert rows(ok, ";")[0]["Name"] == "Semi; Co"


def test_raw_http_ingest_statuses_content_url_and_second_upload(raw: Raw, srv: DevOrgServer):
    created = raw(
        "POST",
        "ingest",
        json={
            "object": "account",
            "operation": "insert",
            "contentType": "CSV",
            "columnDelimiter": "COMMA",
            "lineEnding": "LF",
        },
    )
    assert created.status_code == 200
    info = created.json()
    jid = info["id"]
    assert info["state"] == "Open" and info["object"] == "Account" and jid.startswith("750")
    assert info["contentUrl"] == f"services/data/v{V}/jobs/ingest/{jid}/batches"  # no leading slash
    assert STAMP.match(info["createdDate"]) and info["apiVersion"] == 59.0
    assert raw("DELETE", f"ingest/{jid}").status_code == 400  # an Open job cannot be deleted
    put = raw(
        "PUT", info["contentUrl"].split("jobs/", 1)[1], data=b"Name\nRaw One\n", headers={"Content-Type": "text/csv"}
    )
    assert put.status_code == 201 and put.content == b""
    closed = raw("PATCH", f"ingest/{jid}", json={"state": "UploadComplete"})
    assert closed.status_code == 200 and closed.json()["state"] == "UploadComplete"
    done = raw.wait("ingest", jid)
    assert done["state"] == "JobComplete" and done["jobType"] == "V2Ingest"
    for key in (
        "numberRecordsProcessed",
        "numberRecordsFailed",
        "retries",
        "totalProcessingTime",
        "apiActiveProcessingTime",
        "apexProcessingTime",
    ):
        assert isinstance(done[key], int), key
    assert "errorMessage" not in done
    late = raw("PUT", f"ingest/{jid}/batches", data=b"Name\nLate\n", headers={"Content-Type": "text/csv"})
    assert late.status_code == 400
    deleted = raw("DELETE", f"ingest/{jid}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert raw("GET", f"ingest/{jid}").status_code == 404

    # two uploads on one job: each PUT answers 201, then the close fails (one PUT per job)
    jid = raw("POST", "ingest", json={"object": "Account", "operation": "insert"}).json()["id"]
    for body in (b"Name\nTwice A\n", b"Name\nTwice B\n"):
        assert raw("PUT", f"ingest/{jid}/batches", data=body, headers={"Content-Type": "text/csv"}).status_code == 201
    refused = raw("PATCH", f"ingest/{jid}", json={"state": "UploadComplete"})
    assert refused.status_code == 400
    assert refused.json()[0]["errorCode"] == "INVALIDJOB"
    assert refused.json()[0]["message"].startswith(f"Found multipe contents for job: <{jid[:15]}>, please 'Close'")
    aborted = raw("PATCH", f"ingest/{jid}", json={"state": "Aborted"})
    assert aborted.status_code == 200 and aborted.json()["state"] == "Aborted"
    assert rows(raw("GET", f"ingest/{jid}/unprocessedrecords").text) == [{"Name": "Twice A"}]
    assert raw("DELETE", f"ingest/{jid}").status_code == 204


def test_ingest_job_creation_errors(raw: Raw):
    resp = raw("POST", "ingest", json={"object": "Nope__c", "operation": "insert", "contentType": "CSV"})
    assert resp.status_code == 400
    assert resp.json() == [{"message": "InvalidJob : Unable to find object: Nope__c", "errorCode": "INVALIDJOB"}]
    resp = raw("POST", "ingest", json={"object": "Account", "operation": "upsert", "contentType": "CSV"})
    assert resp.status_code == 400 and resp.json()[0]["errorCode"] == "INVALIDJOB"
    assert "does not match an External ID for Account" in resp.json()[0]["message"]
    resp = raw("POST", "ingest", json={"object": "Account", "operation": "upsert", "externalIdFieldName": "Name"})
    assert resp.status_code == 400 and resp.json()[0]["errorCode"] == "INVALIDJOB"
    resp = raw("POST", "ingest", json={"object": "Account", "operation": "merge"})
    assert resp.json() == [
        {"message": "Invalid value: 'merge' supplied for property: 'operation'", "errorCode": "API_ERROR"}
    ]
    resp = raw("POST", "ingest", json={"object": "Account", "operation": "insert", "contentType": "JSON"})
    assert resp.status_code == 400 and resp.json()[0]["errorCode"] == "API_ERROR"
    assert raw("GET", "ingest").json()["records"] == []


def test_lock_faults_fail_rows_with_unable_to_lock_row(sf: Salesforce, srv: DevOrgServer):
    ids = opp_ids(sf, 6)
    srv.app.faults.add("lock", next=2, path="sobjects/Opportunity")
    result = sf.bulk2.Opportunity.update(records=[{"Id": i, "NextStep": "Locked?"} for i in ids], wait=WAIT)
    assert result[0]["numberRecordsProcessed"] == 6 and result[0]["numberRecordsFailed"] == 2
    failed = rows(sf.bulk2.Opportunity.get_failed_records(result[0]["job_id"]))
    assert [r["sf__Error"] for r in failed] == [
        f"UNABLE_TO_LOCK_ROW:unable to obtain exclusive access to this record or 1 records: {i}:--" for i in ids[:2]
    ]
    assert [sf.Opportunity.get(i)["NextStep"] for i in ids[2:]] == ["Locked?"] * 4
    assert sf.Opportunity.get(ids[0])["NextStep"] != "Locked?"  # failed rows change nothing

    srv.app.faults.add("lock", rate=1.0, path="sobjects/Opportunity")
    result = sf.bulk2.Opportunity.update(records=[{"Id": i, "NextStep": "Never"} for i in ids], wait=WAIT)
    assert result[0]["numberRecordsFailed"] == 6
    srv.app.faults.clear()
    # a rule scoped to another object leaves these rows alone
    srv.app.faults.add("lock", rate=1.0, path="sobjects/Account/")
    result = sf.bulk2.Opportunity.update(records=[{"Id": i, "NextStep": "Fine"} for i in ids], wait=WAIT)
    assert result[0]["numberRecordsFailed"] == 0


def test_rest_calls_interleave_with_a_running_ingest_job(sf: Salesforce, raw: Raw, monkeypatch):
    """The store lock is held per chunk, not per job: REST reads complete while a job is running."""
    monkeypatch.setattr(bulk, "INGEST_CHUNK", 5)
    ids = opp_ids(sf, 40)
    data = "Id,Description\n" + "".join(f"{i},Chunked {n}\n" for n, i in enumerate(ids))
    original = bulk._IngestRun.apply
    started = threading.Event()

    def slow_apply(self, row):
        started.set()
        time.sleep(0.02)  # 40 rows: the job runs for at least 0.8 s
        return original(self, row)

    monkeypatch.setattr(bulk._IngestRun, "apply", slow_apply)
    job = raw("POST", "ingest", json={"object": "Opportunity", "operation": "update"}).json()["id"]
    raw("PUT", f"ingest/{job}/batches", data=data.encode(), headers={"Content-Type": "text/csv"})
    raw("PATCH", f"ingest/{job}", json={"state": "UploadComplete"})
    assert started.wait(10)
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] >= 4  # answered between two chunks...
    mid = raw("GET", f"ingest/{job}").json()  # ...while the job is still running
    assert mid["state"] == "InProgress" and 0 < mid["numberRecordsProcessed"] < 40
    assert raw.wait("ingest", job)["numberRecordsProcessed"] == 40
    done = rows(raw("GET", f"ingest/{job}/successfulResults").text)
    assert [r["Description"] for r in done] == [f"Chunked {n}" for n in range(40)]
