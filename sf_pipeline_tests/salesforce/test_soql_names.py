"""Field names from describe and ids read back from the database are checked before they go into SOQL (issue 15)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from sf_pipeline.salesforce import OrgCredentials, SalesforceClient, UnsafeSoqlValue, connect, soql
from sf_pipeline.salesforce.extract import extract_window, window_soql
from sf_pipeline.salesforce.writes import fetch_records, query_by_ids, undelete
from sf_pipeline_tests.devorg_fixtures import shared_reference

INJECTIONS = [
    "Name FROM Account WHERE Name != ''",  # a whole clause
    "Id,Name",
    "Name, (SELECT Id FROM Contacts)",
    "Name'",
    "Name--",
    "Name__c OR Id != null",
    "_Name",
    "Name_",
    "Name___c",
    "9Lives__c",
    "",
    " Name",
    "Näme",
    "Name__c\n",
]
BAD_IDS = [
    "001' OR Name != '",
    "0015g00000AbCdE'",
    "0015g00000AbCd",
    "0015g00000AbCdEFGHI",
    "0015g00000AbCdE ",
    "0015g00000AbCd%",
    "",
    None,
    15,
]


def test_every_name_in_recorded_real_describes_is_accepted():
    names = []
    for sobject in (
        "Account",
        "Case",
        "Contact",
        "Custom__c",
        "Event",
        "Lead",
        "Opportunity",
        "OpportunityContactRole",
    ):
        describe = json.loads(shared_reference("salesforce-describe", f"{sobject}.json").read_text())
        names += [describe["name"]] + [f["name"] for f in describe["fields"]]
    names += [
        s["name"] for s in json.loads(shared_reference("salesforce-describe", "_global.json").read_text())["sobjects"]
    ]
    names += [
        "npe01__One2OneContact__c",
        "Location__latitude__s",
        "ns__Loc__longitude__s",
        "Invoice__c",
        "Setting__mdt",
        "Order_Event__e",
        "Account__History",
    ]  # namespaced and suffixed custom names
    assert len(names) > 400
    assert soql.field_names(names) == list(dict.fromkeys(names))


@pytest.mark.parametrize("name", INJECTIONS)
def test_a_name_that_is_not_an_api_name_is_refused_with_a_clear_error(name):
    with pytest.raises(UnsafeSoqlValue, match="is not a Salesforce API name"):
        soql.api_name(name)
    with pytest.raises(UnsafeSoqlValue):
        window_soql("Account", ["Id", name], datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))
    with pytest.raises(UnsafeSoqlValue):
        window_soql(name, ["Id"], datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))


@pytest.mark.parametrize("value", BAD_IDS)
def test_an_id_that_is_not_a_record_id_is_refused_with_a_clear_error(value):
    with pytest.raises(UnsafeSoqlValue, match="is not a Salesforce record id"):
        soql.id_list(["0015g00000AbCdEAAA", value])
    assert soql.record_ids(["0015g00000AbCdE", "0015g00000AbCdEAAV"]) == ["0015g00000AbCdE", "0015g00000AbCdEAAV"]


@pytest.fixture
def client(devorg) -> SalesforceClient:
    return SalesforceClient(
        connect(OrgCredentials.from_env("production", devorg.env("production"))), alias="production", backoff=0.01
    )


def test_reads_and_writes_refuse_a_bad_id_or_name_before_calling_the_org(client):
    good = "0015g00000AbCdEAAV"
    before = client.api_calls
    with pytest.raises(UnsafeSoqlValue):
        query_by_ids(client, "Account", [good, "001' OR Name != '"], ["Name"])
    with pytest.raises(UnsafeSoqlValue):
        query_by_ids(client, "Account", [good], ["Name FROM User WHERE Name != ''"])
    with pytest.raises(UnsafeSoqlValue):
        fetch_records(client, "Account", [good, "0015g,0015h"], ["Name"])
    with pytest.raises(UnsafeSoqlValue):
        undelete(client, ["</urn:ids>"])
    with pytest.raises(UnsafeSoqlValue):
        client.count("", "Account WHERE Name != ''")
    with pytest.raises(UnsafeSoqlValue):
        list(
            extract_window(
                client,
                "Account",
                ["Id", "Name FROM User"],
                datetime(2000, 1, 1, tzinfo=UTC),
                datetime(2100, 1, 1, tzinfo=UTC),
            )
        )
    assert client.api_calls == before  # nothing reached the org
