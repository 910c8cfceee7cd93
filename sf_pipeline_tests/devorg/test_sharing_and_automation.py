"""devorg's record-level sharing (devorg/sharing.py) and update automation (devorg/automation.py), over HTTPS
with simple-salesforce as each user: what a restore meets in a real org.

Sources: Salesforce Help, "Organization-Wide Sharing Defaults" (Private: only the owner, and View All Data,
sees a record); Apex Developer Guide, "Triggers and Order of Execution" (before-save flows and triggers change
the values being saved in the writer's transaction; after-save automation updates the record again).
"""

from __future__ import annotations

import pytest
import requests
from simple_salesforce.exceptions import SalesforceResourceNotFound

from sf_pipeline_tests.devorg_fixtures import connect


def _opportunities(sf, owner: str, n: int, prefix: str) -> list[str]:
    answer = sf.restful(
        "composite/sobjects",
        method="POST",
        json={
            "allOrNone": True,
            "records": [
                {
                    "attributes": {"type": "Opportunity"},
                    "Name": f"{prefix} {i}",
                    "StageName": "Prospecting",
                    "CloseDate": "2026-12-31",
                    "OwnerId": owner,
                }
                for i in range(n)
            ],
        },
    )
    assert all(r["success"] for r in answer), answer
    return [r["id"] for r in answer]


def test_a_private_object_shows_each_user_only_its_own_records_and_admins_everything(devorg):
    admin, integration = connect(devorg, "admin"), connect(devorg, "integration")
    mine = _opportunities(admin, devorg.org.user("integration").user_id, 3, "Mine")
    theirs = _opportunities(admin, devorg.org.user("sales1").user_id, 2, "Theirs")
    everyone = sorted(mine + theirs)

    def visible(sf, query="SELECT Id FROM Opportunity") -> list[str]:
        return sorted(r["Id"] for r in sf.query_all(query)["records"])

    assert visible(integration) == everyone  # Public Read/Write: as before
    devorg.control("sharing", {"objects": {"Opportunity": "Private"}})
    assert visible(integration) == sorted(mine)  # the others are simply absent, as if deleted
    assert sorted(
        r["Id"] for r in integration.query_all("SELECT Id FROM Opportunity", include_deleted=True)["records"]
    ) == sorted(mine)  # queryAll too
    assert integration.query("SELECT COUNT() FROM Opportunity")["totalSize"] == 3
    assert visible(admin) == everyone  # View All Data
    # sObject Collections retrieve: null for a record the user cannot see ("Get Records With a Request Body Using
    # sObject Collections": "If you don't have access to an object, or if a passed ID is invalid, the array returns
    # null for that object", https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/
    # resources_composite_sobjects_collections_retrieve_post.htm); a record GET: 404 NOT_FOUND (REST API Developer
    # Guide, "Status Codes and Error Responses": 404, "The requested resource couldn't be found. Check the URI for
    # errors, and verify that there are no sharing issues.", https://developer.salesforce.com/docs/atlas.en-us.
    # api_rest.meta/api_rest/errorcodes.htm)
    got = integration.restful(
        "composite/sobjects/Opportunity", method="POST", json={"ids": [mine[0], theirs[0]], "fields": ["Name"]}
    )
    assert got[0]["Name"] == "Mine 0" and got[1] is None
    with pytest.raises(SalesforceResourceNotFound):
        integration.Opportunity.get(theirs[0])
    # an update of a hidden record fails record by record: INSUFFICIENT_ACCESS_OR_READONLY, "insufficient access
    # rights on object id" (SOAP API Developer Guide, "StatusCode": the user lacks access to the record being
    # written, sharing or object permissions; the message as orgs show it: agentforceaccess.com, "Insufficient
    # access rights on object id - how to fix it": "If either [object permission or sharing] is missing for the
    # record being saved, the operation is rejected")
    answer = integration.restful(
        "composite/sobjects",
        method="PATCH",
        json={
            "allOrNone": False,
            "records": [
                {"attributes": {"type": "Opportunity"}, "id": i, "Description": "touched"} for i in (mine[0], theirs[0])
            ],
        },
    )
    assert answer[0]["success"] is True
    assert answer[1]["errors"][0]["statusCode"] == "INSUFFICIENT_ACCESS_OR_READONLY"
    # Bulk API 2.0 queries run as the job's creator
    job = integration.bulk2.Opportunity.query("SELECT Id FROM Opportunity")
    assert sum(len(chunk.strip().splitlines()) - 1 for chunk in job) == 3
    devorg.control("sharing", {"objects": {"Opportunity": "Public Read/Write"}})
    assert visible(integration) == everyone


def test_a_before_save_rule_changes_the_written_value_in_the_writers_own_transaction(devorg):
    admin, integration = connect(devorg, "admin"), connect(devorg, "integration")
    [oid] = _opportunities(admin, devorg.org.user("admin").user_id, 1, "Deal")
    devorg.control(
        "automation",
        {
            "rules": [
                {
                    "object": "Opportunity",
                    "when_fields": ["StageName"],
                    "set": {"Description": "stage changed by the flow", "StageName": "Qualification"},
                }
            ]
        },
    )
    integration.Opportunity.update(oid, {"StageName": "Closed Won"})
    rec = admin.Opportunity.get(oid)
    assert (rec["StageName"], rec["Description"]) == ("Qualification", "stage changed by the flow")
    assert rec["LastModifiedById"] == devorg.org.user("integration").user_id  # the writer, one save
    assert rec["Probability"] == 10  # derived from the stage the flow set (Qualification), not the one written
    integration.Opportunity.update(oid, {"Amount": 5})  # a field the rule does not watch: no change
    assert admin.Opportunity.get(oid)["Description"] == "stage changed by the flow"
    with pytest.raises(requests.HTTPError):  # INVALID_FIELD
        devorg.control("automation", {"rules": [{"object": "Opportunity", "set": {"NoSuchField__c": 1}}]})


def test_an_after_save_rule_updates_the_record_again_as_its_own_user(devorg):
    admin, integration = connect(devorg, "admin"), connect(devorg, "integration")
    [oid] = _opportunities(admin, devorg.org.user("admin").user_id, 1, "Deal")
    devorg.control(
        "automation",
        {"rules": [{"object": "Opportunity", "when_fields": ["Amount"], "set": {"Amount": 0}, "as_user": "sales1"}]},
    )
    integration.Opportunity.update(oid, {"Amount": 1234})
    rec = admin.Opportunity.get(oid)
    assert rec["Amount"] == 0 and rec["LastModifiedById"] == devorg.org.user("sales1").user_id
    devorg.control("automation", method="DELETE")
    integration.Opportunity.update(oid, {"Amount": 1234})
    assert admin.Opportunity.get(oid)["Amount"] == 1234
