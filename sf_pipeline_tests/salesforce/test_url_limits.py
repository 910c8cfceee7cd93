"""No long SOQL in a URL: an object of 760 fields is backed up and read by id within Salesforce's URI limit.

Salesforce refuses a REST request whose URI and headers pass 16,384 bytes (414 URI Too Long; "API Request Limits
and Allocations", https://developer.salesforce.com/docs/atlas.en-us.salesforce_app_limits_cheatsheet.meta/
salesforce_app_limits_cheatsheet/salesforce_app_limits_platform_api.htm), and devorg with it (devorg/limits.py).
A REST query puts its SOQL in the URL, so a query naming 700+ fields cannot be sent that way: the pipeline takes
the Bulk API 2.0, whose query is POSTed in the body.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import yaml
from simple_salesforce.exceptions import SalesforceError

from sf_pipeline.devorg.runner import DevOrgServer
from sf_pipeline.salesforce import OrgCredentials, SalesforceClient, connect
from sf_pipeline.salesforce.client import soql_fits_url
from sf_pipeline.salesforce.errors import SoqlTooLongError
from sf_pipeline.salesforce.extract import extract_window, window_soql
from sf_pipeline.salesforce.writes import create_records, query_by_ids

FIELDS = [f"Customer_Attribute_{i:04d}__c" for i in range(760)]
NOW = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def wide_org(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("wide")
    spec = folder / "wide.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "objects": {
                    "Wide__c": {
                        "label": "Wide",
                        "keyPrefix": "a7W",
                        "fields": [{"name": name, "type": "string", "length": 40} for name in FIELDS],
                    }
                }
            }
        )
    )
    with DevOrgServer(folder / "org", custom_objects=spec) as server:
        server.org.set_clock(NOW, freeze=True)
        yield server


@pytest.fixture(scope="module")
def client(wide_org: DevOrgServer) -> SalesforceClient:
    creds = OrgCredentials.from_env("production", wide_org.env("production"))
    return SalesforceClient(connect(creds), alias="production", backoff=0.01)


@pytest.fixture(scope="module")
def wide_records(client: SalesforceClient) -> list[str]:
    results = create_records(
        client, "Wide__c", [{"Name": f"W{i}", FIELDS[0]: f"first {i}", FIELDS[-1]: f"last {i}"} for i in range(3)]
    )
    assert all(r.success for r in results)
    return [r.id for r in results]


def test_a_rest_query_of_760_fields_is_refused_by_the_org_and_never_sent(client, wide_records):
    soql = window_soql("Wide__c", ["Id", *FIELDS], NOW - timedelta(hours=1), NOW + timedelta(hours=1))
    assert not soql_fits_url(soql)
    with pytest.raises(SalesforceError) as refused:  # the org's answer to that URL
        client.sf.query(soql)
    assert refused.value.status == 414
    before = client.api_calls
    with pytest.raises(SoqlTooLongError, match="Bulk API 2.0"):
        next(client.query_pages(soql))
    assert client.api_calls == before  # refused before any call


def test_backup_of_an_object_with_760_fields_takes_the_bulk_path_under_the_rest_threshold(client, wide_records):
    fields = ["Id", "Name", "SystemModstamp", *FIELDS]
    pages = list(
        extract_window(
            client, "Wide__c", fields, NOW - timedelta(hours=1), NOW + timedelta(hours=1), bulk_threshold=10_000
        )
    )
    assert sum(page.num_rows for page in pages) == 3


def test_a_restore_read_by_id_of_760_fields_goes_through_bulk(client, wide_records):
    found = query_by_ids(client, "Wide__c", wide_records, FIELDS, include_deleted=True)
    assert sorted(found) == sorted(wide_records)
    assert {found[rid][FIELDS[-1]] for rid in wide_records} == {"last 0", "last 1", "last 2"}
    assert all(found[rid][FIELDS[1]] is None for rid in wide_records)


def test_a_short_query_still_goes_by_rest(client, wide_records):
    assert soql_fits_url("SELECT Id FROM Wide__c")
    assert [r["Id"] for r in client.records_by_soql("SELECT Id FROM Wide__c ORDER BY Id")] == sorted(wide_records)
