"""Serial writes (settings `orgs: <alias>: restore: serial: true`, salesforce/writes.py): Bulk API 2.0 ingest has
no serial mode (its batches run in parallel), so the writes that would go through Bulk jobs go through sObject
Collections instead, 200 records a call, one call after the other."""

from __future__ import annotations

import pytest

from sf_pipeline.devorg.runner import DevOrgServer
from sf_pipeline.salesforce import OrgCredentials, SalesforceClient, connect
from sf_pipeline.salesforce.values import csv_text
from sf_pipeline.salesforce.writes import bulk_create, bulk_update


@pytest.fixture
def serial_client(devorg: DevOrgServer) -> SalesforceClient:
    creds = OrgCredentials.from_env("production", devorg.env("production"))
    client = SalesforceClient(connect(creds), alias="production", backoff=0.01)
    client.serial_writes = True
    return client


def test_serial_writes_send_no_bulk_job_but_one_collections_call_per_200_records(devorg, serial_client):
    # any Bulk API 2.0 ingest call would be answered 503 (and fail the writes): none may be made
    ingest = devorg.app.faults.add("5xx", rate=1.0, path="jobs/ingest")
    calls = serial_client.api_calls
    created = bulk_create(
        serial_client, "Account", [{"Name": f"Serial {i}", "Industry": None} for i in range(450)], csv_text
    )
    assert all(r.success and r.created for r in created) and serial_client.api_calls - calls == 3
    ids = [r.id for r in created]
    seen = []
    calls = serial_client.api_calls
    updated = bulk_update(
        serial_client,
        "Account",
        [{"Id": rid, "Name": f"Renamed {i}"} for i, rid in enumerate(ids)],
        csv_text,
        on_written=seen.extend,
    )
    assert all(r.success for r in updated) and len(seen) == 450 and serial_client.api_calls - calls == 3
    assert ingest.fired == 0
    rows = devorg.org.queries.run("SELECT Id, Name FROM Account", include_deleted=False, batch_size=2000)["records"]
    assert sorted(r["Name"] for r in rows if r["Id"] in set(ids)) == sorted(f"Renamed {i}" for i in range(450))
