"""Org writes (sf_pipeline.salesforce.writes) against devorg: chunking, per-record results, retries, undelete."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sf_pipeline.devorg.runner import DevOrgServer
from sf_pipeline.restore.current import changed_since, fetch_current
from sf_pipeline.restore.decisions import LIVE, MISSING, RECYCLE_BIN
from sf_pipeline.salesforce import OrgCredentials, SalesforceClient, connect
from sf_pipeline.salesforce.values import csv_text
from sf_pipeline.salesforce.writes import (
    bulk_create,
    bulk_update,
    create_records,
    current_user_id,
    delete_records,
    fetch_records,
    query_by_ids,
    undelete,
    update_records,
)


@pytest.fixture
def client(devorg: DevOrgServer) -> SalesforceClient:
    creds = OrgCredentials.from_env("production", devorg.env("production"))
    return SalesforceClient(connect(creds), alias="production", backoff=0.01)


def accounts(client: SalesforceClient, n: int) -> list[str]:
    results = create_records(client, "Account", [{"Name": f"Account {i}"} for i in range(n)])
    assert all(r.success and r.created for r in results)
    return [r.id for r in results]


def names(devorg: DevOrgServer) -> dict[str, str]:
    rows = devorg.org.queries.run("SELECT Id, Name FROM Account", include_deleted=False, batch_size=2000)["records"]
    return {r["Id"]: r["Name"] for r in rows}


def test_updates_go_200_records_a_call_with_a_result_per_record(devorg, client):
    ids = accounts(client, 450)
    records = [{"Id": rid, "Name": f"Renamed {i}"} for i, rid in enumerate(ids)]
    records[7]["Name"] = None  # Name is required: this record fails alone
    seen = []
    before = client.api_calls
    results = update_records(client, "Account", records, on_written=seen.extend)
    assert client.api_calls - before == 3
    assert [r.success for r in results] == [i != 7 for i in range(450)]
    assert results[7].codes == ["REQUIRED_FIELD_MISSING"] and "Name" in results[7].message
    assert len(seen) == 449 and all(res.success for _, res in seen)
    held = names(devorg)
    assert held[ids[8]] == "Renamed 8" and held[ids[7]] == "Account 7"


def test_locked_calls_are_retried_until_they_pass(devorg, client):
    ids = accounts(client, 40)
    devorg.app.faults.add("lock", rate=0.5, path="composite/sobjects")
    results = update_records(client, "Account", [{"Id": rid, "Name": "Locked once"} for rid in ids])
    assert all(r.success for r in results)
    assert client.retries > 0 and devorg.app.faults.rules[0].fired == client.retries
    assert set(names(devorg).values()) == {"Locked once"}


def test_bulk_update_retries_locked_rows_in_a_new_job_and_reports_bad_rows(devorg, client):
    ids = accounts(client, 300)
    devorg.app.faults.add("lock", rate=0.3, path="sobjects/Account")
    records = [{"Id": rid, "Name": f"Bulk {i}", "Description": None} for i, rid in enumerate(ids)]
    records[5]["Name"] = None  # `#N/A` on a required field: this row fails alone
    seen = []
    results = bulk_update(client, "Account", records, csv_text, on_written=seen.extend, poll=0.05)
    assert devorg.app.faults.rules[0].fired > 0  # some rows were locked, and went into later jobs
    assert [r.success for r in results] == [i != 5 for i in range(300)]
    assert results[5].codes == ["REQUIRED_FIELD_MISSING"]
    assert len(seen) == 299
    held = names(devorg)
    assert all(held[rid] == f"Bulk {i}" for i, rid in enumerate(ids) if i != 5)


def test_fetch_records_reads_2000_ids_a_call_and_leaves_deleted_ones_empty(devorg, client, sf):
    ids = accounts(client, 2100)
    sf.Account.delete(ids[3])
    before = client.api_calls
    found = fetch_records(client, "Account", ids, ["Name", "IsDeleted"])
    assert client.api_calls - before == 2
    assert found[ids[3]] is None and found[ids[4]]["Name"] == "Account 4"
    assert len(found) == 2100
    in_bin = query_by_ids(client, "Account", ids[:5], ["IsDeleted"])
    assert in_bin[ids[3]]["IsDeleted"] is True and in_bin[ids[4]]["IsDeleted"] is False


def test_undelete_brings_records_back_from_the_recycle_bin_record_by_record(devorg, client, sf):
    ids = accounts(client, 4)
    for rid in ids[:3]:
        sf.Account.delete(rid)
    results = undelete(client, ids)
    assert [r.success for r in results] == [True, True, True, False]
    assert results[3].codes == ["UNDELETE_FAILED"]
    assert set(names(devorg)) >= set(ids)


def test_current_user_is_the_user_the_client_logged_in_as(devorg, client):
    assert current_user_id(client) == devorg.org.user("admin").user_id


def test_current_values_read_the_same_through_collections_and_bulk(devorg, client, sf):
    types = {f["name"]: f["type"] for f in client.describe("Account")["fields"]}
    fields = ["Name", "ParentId", "AnnualRevenue", "NumberOfEmployees", "Description"]
    ids = accounts(client, 5)
    update_records(
        client,
        "Account",
        [
            {
                "Id": ids[1],
                "ParentId": ids[0],
                "AnnualRevenue": 98000,
                "NumberOfEmployees": 12,
                "Description": 'tab\tand "quotes"',
            }
        ],
    )
    sf.Account.delete(ids[4])
    with devorg.org.store.lock:  # ids[3] gone for good (purged from the recycle bin)
        devorg.org.store.conn.execute('DELETE FROM "Account" WHERE Id = ?', (ids[3],))
    by_id, mode = fetch_current(client, "Account", ids, fields, types)
    assert mode == "collections"
    assert [by_id[rid].state for rid in ids] == [LIVE, LIVE, LIVE, MISSING, RECYCLE_BIN]
    assert by_id[ids[1]].values == {
        "Name": "Account 1",
        "ParentId": ids[0],
        "AnnualRevenue": 98000,
        "NumberOfEmployees": 12,
        "Description": 'tab\tand "quotes"',
    }
    assert by_id[ids[0]].values["ParentId"] is None and by_id[ids[0]].values["Description"] is None
    since = min(r.modstamp for r in by_id.values() if r.modstamp is not None)
    bulk = changed_since(client, "Account", fields, types, since)
    assert {rid: bulk[rid] for rid in ids if rid in bulk} == {rid: by_id[rid] for rid in ids if rid != ids[3]}
    also, mode = fetch_current(client, "Account", ids, fields, types, since=since, bulk_threshold=2)
    assert mode == "bulk" and also == by_id


def test_a_bulk_read_of_current_values_reads_line_breaks_commas_quotes_and_accents_as_rest_does(
    devorg, client, monkeypatch
):
    """A large restore reads the org's current values from Bulk API 2.0 CSV result pages, row by row: values
    holding a line break, a comma, quotes or accented letters, and nulls, read as sObject Collections returns
    them, also when the job's results come in several pages."""
    from sf_pipeline.restore import current

    types = {f["name"]: f["type"] for f in client.describe("Account")["fields"]}
    fields = ["Name", "Description", "AnnualRevenue"]
    ids = accounts(client, 5)
    texts = ["line one\nline two\r\nline three", 'comma, and "quotes"', "Zürich – café ✓", None, ","]
    update_records(
        client,
        "Account",
        [{"Id": rid, "Description": text, "AnnualRevenue": 1500.5} for rid, text in zip(ids, texts, strict=True)],
    )
    by_rest, mode = fetch_current(client, "Account", ids, fields, types)
    assert mode == "collections"
    assert [by_rest[rid].values["Description"] for rid in ids] == texts
    since = min(r.modstamp for r in by_rest.values())
    monkeypatch.setattr(current, "BULK_PAGE_RECORDS", 2)  # results in pages of 2 rows
    by_bulk, mode = fetch_current(client, "Account", ids, fields, types, since=since, bulk_threshold=2)
    assert mode == "bulk" and by_bulk == by_rest


def test_a_restore_read_of_5000_ids_stays_within_salesforces_url_limit(devorg, client):
    """2,000 ids in a GET URL are ~38 KB, past the 16,384 bytes Salesforce answers with 414 URI Too Long:
    the restore's current-state read sends them in the body of sObject Collections retrieve (POST)."""
    ids = accounts(client, 5000)
    ids_param = ",".join(ids[:2000])
    too_long = client.sf.session.get(
        f"{devorg.instance_url}/services/data/v59.0/composite/sobjects/Account",
        params={"ids": ids_param, "fields": "Id,Name"},
        headers={"Authorization": f"Bearer {client.sf.session_id}"},
    )
    assert too_long.status_code == 414  # the form the pipeline must not use
    before = client.api_calls
    found, mode = fetch_current(client, "Account", ids, ["Name"], {"Id": "id", "Name": "string"})
    assert mode == "collections" and client.api_calls - before == 3  # 2000 + 2000 + 1000 ids
    assert len(found) == 5000 and found[ids[4999]].values["Name"] == "Account 4999"


def test_calls_after_the_orgs_session_timeout_log_in_again(devorg, client):
    """Salesforce ends a session after the org's session timeout (2 hours by default) with INVALID_SESSION_ID on
    every API; a restore that outlives it logs in again instead of failing."""
    ids = accounts(client, 3)
    first = client.sf.session_id
    devorg.org.advance_clock(timedelta(hours=3))
    results = bulk_update(
        client,
        "Account",
        [{"Id": rid, "Name": f"After timeout {i}"} for i, rid in enumerate(ids)],
        to_csv=csv_text,
        poll=0.05,
    )
    assert all(r.success for r in results) and client.sf.session_id != first
    second = client.sf.session_id
    devorg.org.advance_clock(timedelta(hours=3))
    assert fetch_records(client, "Account", ids, ["Name"])[ids[2]]["Name"] == "After timeout 2"
    assert client.sf.session_id != second
    third = client.sf.session_id
    devorg.org.advance_clock(timedelta(hours=3))
    job = client.bulk_query_start("SELECT Id FROM Account")  # Bulk API 2.0 through the client's own requests
    client.bulk_query_wait(job, poll=0.05)
    assert client.sf.session_id != third


def test_reads_by_id_put_fewer_ids_in_a_query_when_the_field_list_is_long():
    """A `WHERE Id IN (...)` query goes in the GET URL: with many fields, fewer ids fit under 16,384 bytes."""
    from urllib.parse import quote_plus

    from sf_pipeline.salesforce.errors import SalesforceWriteError
    from sf_pipeline.salesforce.writes import ids_per_query

    short = "SELECT Id, Name FROM Account WHERE Id IN ("
    assert ids_per_query(short) == 300
    wide = "SELECT " + ", ".join(f"Custom_Field_Number_{i}__c" for i in range(400)) + " FROM Account WHERE Id IN ("
    n = ids_per_query(wide)
    assert 0 < n < 300
    soql = wide + ", ".join(["'001000000000000AAA'"] * n) + ")"
    assert len(quote_plus(soql)) < 16_384 - 200  # room left for the path and the rest of the URL
    with pytest.raises(SalesforceWriteError, match="field list"):
        ids_per_query("SELECT " + ", ".join(f"F{i}__c" for i in range(2000)) + " FROM Account WHERE Id IN (")


def test_a_finished_ingest_job_is_read_back_by_its_id_and_a_job_the_org_no_longer_has_is_none(devorg, client):
    """What a rerun does with the job id an interrupted restore journaled (restore/journal.py)."""
    from sf_pipeline.salesforce.writes import _ingest_job, delete_ingest_job, ingest_job_outcome

    ids = accounts(client, 3)
    jobs: list[str] = []

    class Journal:  # the WriteJournal protocol, keeping the job id as the restore's journal does
        def before(self, records):
            return "call-1"

        def job(self, token, job_id):
            jobs.append(job_id)

        def after(self, token, pairs):
            pass

    results = bulk_update(
        client, "Account", [{"Id": rid, "Name": "By job"} for rid in ids], csv_text, journal=Journal()
    )
    assert all(r.success for r in results) and len(jobs) == 1
    assert ingest_job_outcome(client, jobs[0]) is None  # deleted once the journal completed its rows

    # a job whose results nobody read (the run died): read back by its id, then gone once deleted
    kept = _ingest_job(
        client, "Account", [{"Id": rid, "Name": "Kept"} for rid in ids], csv_text, 0.05, 60, on_job=jobs.append
    )
    assert all(r.success for r in kept) and len(jobs) == 2
    outcome = ingest_job_outcome(client, jobs[1])
    assert outcome is not None and sorted(outcome) == sorted(ids) and all(r.success for r in outcome.values())
    delete_ingest_job(client, jobs[1])
    assert ingest_job_outcome(client, jobs[1]) is None  # gone: the caller reads the records back instead


def test_bulk_insert_matches_each_result_to_its_record_and_deletes_go_to_the_recycle_bin(devorg, client):
    # Bulk API 2.0 results carry the uploaded row, not its position ("Get Job Successful Record Results",
    # https://developer.salesforce.com/docs/atlas.en-us.api_asynch.meta/api_asynch/get_job_successful_results.htm):
    # each result is matched to its record by the row's cells.
    records = [{"Name": f"Bulk {i}", "NumberOfEmployees": i} for i in range(300)]
    records[5] = {"NumberOfEmployees": 5}  # no Name: this row fails alone
    records[9] = dict(records[8])  # two identical rows: either pairing is right
    results = bulk_create(client, "Account", records, csv_text)
    assert [r.success for r in results] == [i != 5 for i in range(300)]
    assert results[5].codes == ["REQUIRED_FIELD_MISSING"]
    assert len({r.id for r in results if r.success}) == 299
    rows = {
        r["Id"]: (r["Name"], r["NumberOfEmployees"])
        for r in devorg.org.queries.run(
            "SELECT Id, Name, NumberOfEmployees FROM Account", include_deleted=False, batch_size=2000
        )["records"]
    }
    assert all(
        rows[r.id] == (rec["Name"], rec["NumberOfEmployees"])
        for rec, r in zip(records, results, strict=True)
        if r.success
    )

    gone = [results[0].id, results[1].id, "001000000000000AAA"]
    deleted = delete_records(client, gone)
    assert [r.success for r in deleted] == [True, True, False]
    states = fetch_current(client, "Account", gone[:2], ["Name"], {"Name": "string"})[0]
    assert {states[rid].state for rid in gone[:2]} == {RECYCLE_BIN}


def test_a_bulk_job_with_no_failed_row_is_not_asked_for_its_failed_results(devorg, client, monkeypatch):
    # A finished job's info counts the rows that failed ("numberRecordsFailed", Bulk API 2.0 Developer Guide, "Get
    # Information About a Job"): with none, the failedResults call is one API call for nothing. A job with a bad
    # row still reads them (the tests above).
    asked: list[str] = []
    call = client.call

    def noted(fn, what):
        asked.append(what)
        return call(fn, what)

    monkeypatch.setattr(client, "call", noted)
    created = bulk_create(client, "Account", [{"Name": f"Clean {i}"} for i in range(20)], csv_text)
    assert all(r.success for r in created)
    updated = bulk_update(client, "Account", [{"Id": r.id, "Name": "Renamed"} for r in created], csv_text, poll=0.05)
    assert all(r.success for r in updated)
    assert "bulk insert successfulResults" in asked and "bulk ingest successfulResults" in asked
    assert not [what for what in asked if what.endswith("failedResults")], asked
    held = names(devorg)
    assert all(held[r.id] == "Renamed" for r in created)
