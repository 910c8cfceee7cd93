"""Calls that never end and sessions that expire (issue 15), against devorg over HTTPS.

Salesforce answers a call made with an expired or revoked session with HTTP 401 and `INVALID_SESSION_ID`
(REST API Developer Guide, "Status Codes and Error Responses":
https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/errorcodes.htm), and the SOAP API with a
`sf:INVALID_SESSION_ID` fault (SOAP API Developer Guide, "Core Data Types Used in API Calls", ExceptionCode).
devorg does the same once `org.expire_sessions()` has run; its `slow` fault holds a request before answering.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from sf_pipeline.devorg.runner import DevOrgServer
from sf_pipeline.resources import SalesforceOrgResource
from sf_pipeline.salesforce import (
    OrgCredentials,
    SalesforceClient,
    SalesforceSessionError,
    SalesforceTimeoutError,
    connect,
)
from sf_pipeline.salesforce.values import csv_text
from sf_pipeline.salesforce.writes import bulk_update, create_records, undelete, update_records
from sf_pipeline.settings import SettingsError, load_settings


def settings_file(tmp_path: Path, **salesforce) -> Path:
    path = tmp_path / "sf_pipeline.yaml"
    path.write_text(
        yaml.safe_dump({"orgs": {"production": {}}, "backup": {"objects": ["Account"]}, "salesforce": salesforce})
    )
    return path


@pytest.fixture
def org_env(devorg: DevOrgServer, monkeypatch: pytest.MonkeyPatch) -> DevOrgServer:
    for key, value in devorg.env("production").items():
        monkeypatch.setenv(key, value)
    return devorg


def client_from_settings(tmp_path: Path, **salesforce) -> SalesforceClient:
    """The client a run gets: the resource built from a settings file, credentials from SALESFORCE_PRODUCTION_*."""
    return SalesforceOrgResource.from_settings(load_settings(settings_file(tmp_path, **salesforce))).client()


def accounts(client: SalesforceClient, n: int) -> list[str]:
    results = create_records(client, "Account", [{"Name": f"Account {i}"} for i in range(n)])
    assert all(r.success for r in results)
    return [r.id for r in results]


def names(devorg: DevOrgServer) -> dict[str, str]:
    rows = devorg.org.queries.run("SELECT Id, Name FROM Account", include_deleted=False, batch_size=2000)["records"]
    return {r["Id"]: r["Name"] for r in rows}


# ============================================================================ timeouts
def test_timeouts_default_to_10_s_connect_and_120_s_read_and_are_checked(tmp_path):
    default = load_settings(settings_file(tmp_path)).salesforce
    assert (default.connect_timeout_seconds, default.read_timeout_seconds) == (10.0, 120.0)
    for bad in ({"read_timeout_seconds": 0}, {"read_timeout_seconds": "soon"}, {"connect_timeot_seconds": 5}):
        with pytest.raises(SettingsError, match="salesforce"):
            load_settings(settings_file(tmp_path, **bad))


def test_a_query_the_org_holds_times_out_and_is_retried(org_env, tmp_path):
    client = client_from_settings(tmp_path, read_timeout_seconds=1.5, retry_backoff_seconds=0.01)
    rule = org_env.app.faults.add("slow", next=1, delay=6.0, path="/query")
    began = time.monotonic()
    pages = list(client.query_pages("SELECT Id FROM User"))
    assert time.monotonic() - began < 5.5  # the held request was given up after 1.5 s, not waited for
    assert rule.fired == 1 and client.retries >= 1
    assert sum(len(p) for p in pages) == len(org_env.org.credentials)


def test_a_bulk_job_poll_the_org_holds_times_out_and_is_retried(org_env, tmp_path):
    client = client_from_settings(tmp_path, read_timeout_seconds=1.5, retry_backoff_seconds=0.01)
    rule = org_env.app.faults.add("slow", next=1, delay=6.0, path="/jobs/query/")
    pages = list(client.bulk_query_pages("SELECT Id FROM User"))
    assert rule.fired == 1 and client.retries >= 1
    assert sum(n for _, n in pages) == len(org_env.org.credentials)


def test_an_org_that_never_answers_fails_the_call_with_a_clear_error(org_env, tmp_path):
    client = client_from_settings(tmp_path, read_timeout_seconds=1.5, retry_backoff_seconds=0.01)
    client.max_attempts = 3
    org_env.app.faults.add("slow", rate=1.0, delay=5.0, path="/query")
    with pytest.raises(SalesforceTimeoutError, match=r"org 'production' did not answer .*read_timeout_seconds"):
        client.count("", "Account")
    assert client.retries == client.max_attempts - 1


def test_an_update_the_org_holds_is_retried_and_written_once(org_env, tmp_path):
    client = client_from_settings(tmp_path, read_timeout_seconds=1.5, retry_backoff_seconds=0.01)
    ids = accounts(client, 3)
    org_env.app.faults.add("slow", next=1, delay=4.0, path="composite/sobjects")
    results = update_records(client, "Account", [{"Id": rid, "Name": "Updated"} for rid in ids])
    assert all(r.success for r in results) and client.retries >= 1
    assert {names(org_env)[rid] for rid in ids} == {"Updated"}


def test_a_create_the_org_holds_is_not_repeated_so_nothing_is_created_twice(org_env, tmp_path):
    client = client_from_settings(tmp_path, read_timeout_seconds=1.5, retry_backoff_seconds=0.01)
    org_env.app.faults.add("slow", next=1, delay=4.0, path="composite/sobjects")
    before = client.api_calls
    results = create_records(client, "Account", [{"Name": "Held create"}])
    # the org may have created it (a real one finishes the request): the caller is told to check, not retried
    assert results[0].outcome_unknown and "find what it created" in results[0].message
    assert client.api_calls - before == 1 and client.retries == 0


def test_a_create_answered_5xx_after_the_org_created_it_is_not_repeated(org_env, tmp_path):
    client = client_from_settings(tmp_path, retry_backoff_seconds=0.01)
    # the org creates the record, then the answer is a 503 (a proxy, a failover): a retry would make a second
    rule = org_env.app.faults.add("5xx", next=1, after=True, method="POST", path="composite/sobjects")
    before = client.api_calls
    results = create_records(client, "Account", [{"Name": "Created behind a 503"}])
    assert rule.fired == 1 and results[0].outcome_unknown and "503" in results[0].message
    assert client.api_calls - before == 1 and client.retries == 0
    assert list(names(org_env).values()).count("Created behind a 503") == 1


# ============================================================================ sessions
def test_a_rest_query_after_the_session_expired_logs_in_again(org_env, tmp_path):
    client = client_from_settings(tmp_path)
    client.count("", "Account")
    org_env.org.expire_sessions()
    assert client.count("", "User") == len(org_env.org.credentials)


def test_a_bulk_query_whose_session_expires_mid_job_logs_in_again_and_completes(org_env, tmp_path):
    client = client_from_settings(tmp_path)
    job = client.bulk_query_start("SELECT Id FROM User")
    org_env.org.expire_sessions()
    client.bulk_query_wait(job)
    pages = list(client.bulk_query_results(job))
    assert sum(n for _, n in pages) == len(org_env.org.credentials)
    assert client.session_renewals == 1


def test_a_bulk_update_whose_session_expires_after_the_upload_is_completed_and_fully_reported(org_env, tmp_path):
    # The incident: the session expired between the upload and the job's results, so records were written in
    # the org but never reached the audit. Now the job is closed, polled and read with a new session.
    client = client_from_settings(tmp_path)
    ids = accounts(client, 5)

    def expire_after_upload(resp, *args, **kwargs):
        if resp.request.method == "PUT" and resp.url.endswith("/batches"):
            org_env.org.expire_sessions()

    client.sf.session.hooks["response"].append(expire_after_upload)
    seen = []
    results = bulk_update(
        client,
        "Account",
        [{"Id": rid, "Name": "Bulk renamed"} for rid in ids],
        csv_text,
        on_written=seen.extend,
        poll=0.05,
    )
    assert all(r.success for r in results) and len(seen) == 5  # every written record reaches the caller
    assert client.session_renewals == 1
    assert {names(org_env)[rid] for rid in ids} == {"Bulk renamed"}


def test_a_soap_undelete_after_the_session_expired_logs_in_again(org_env, tmp_path):
    client = client_from_settings(tmp_path)
    ids = accounts(client, 2)
    for rid in ids:
        client.restful(f"sobjects/Account/{rid}", method="DELETE")
    org_env.org.expire_sessions()
    results = undelete(client, ids)
    assert [r.success for r in results] == [True, True]
    assert client.session_renewals == 1
    assert set(ids) <= set(names(org_env))


@pytest.fixture
def token_client(org_env) -> SalesforceClient:
    """A client given only an instance URL and an access token (SALESFORCE_<ALIAS>_ACCESS_TOKEN)."""
    logged_in = connect(OrgCredentials.from_env("production"))
    creds = OrgCredentials(
        alias="production",
        instance_url=org_env.instance_url,
        access_token=logged_in.session_id,
        ca_bundle=org_env.ca_bundle,
    )
    assert creds.flow == "access token"
    return SalesforceClient(connect(creds), alias="production", backoff=0.01)


def test_an_expired_access_token_stops_a_bulk_update_before_anything_is_written(org_env, token_client):
    ids = accounts(token_client, 3)
    org_env.org.expire_sessions()
    with pytest.raises(SalesforceSessionError, match=r"org 'production'.*SALESFORCE_PRODUCTION_USERNAME") as err:
        bulk_update(token_client, "Account", [{"Id": rid, "Name": "Never written"} for rid in ids], csv_text)
    assert "SALESFORCE_PRODUCTION_ACCESS_TOKEN" in str(err.value)
    assert "Never written" not in names(org_env).values()
    assert (
        org_env.org.queries.run("SELECT COUNT() FROM Account", include_deleted=False, batch_size=200)["totalSize"] == 3
    )


def test_an_expired_access_token_fails_a_query_with_what_to_set(org_env, token_client):
    token_client.count("", "Account")
    org_env.org.expire_sessions()
    with pytest.raises(SalesforceSessionError, match="cannot log in again"):
        token_client.count("", "Account")
    with pytest.raises(SalesforceSessionError, match="cannot log in again"):
        list(token_client.bulk_query_pages("SELECT Id FROM Account"))


def test_counts_of_many_objects_go_several_batches_at_once_and_come_back_in_order(org_env, tmp_path: Path):
    # 130 COUNT() queries: 6 Composite Batch requests, sent BATCH_CONCURRENCY at a time; each answer in its place
    from sf_pipeline.salesforce.client import BATCH_CONCURRENCY

    client = client_from_settings(tmp_path)
    ids = accounts(client, 130)
    before, used = client.api_calls, org_env.org.api_usage()
    queries = [
        (f"SELECT COUNT() FROM Account WHERE Name = 'Account {i}' OR Id = '{ids[0]}'", False) for i in range(130)
    ]
    org_env.app.faults.add("slow", rate=1.0, delay=1.0, path="/composite/batch")
    started = time.monotonic()
    counts = client.counts(queries)
    took = time.monotonic() - started

    assert counts == [1] + [2] * 129  # the first names the same record twice
    assert client.api_calls - before == 6  # HTTP requests
    assert org_env.org.api_usage() - used == 130  # each subrequest counts, as Salesforce counts it
    assert BATCH_CONCURRENCY > 1 and took < 6 * 1.0 - 1.0, took  # not one after another
