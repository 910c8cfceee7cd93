"""devorg's Organization sObject: one record per org, its Id the org id, IsSandbox telling a sandbox apart.

Salesforce's object reference, "Organization":
https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_organization.htm
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from simple_salesforce.exceptions import SalesforceMalformedRequest

from sf_pipeline.devorg import ids
from sf_pipeline.devorg.org import ORG_ID, Org
from sf_pipeline.devorg.runner import DevOrgServer
from sf_pipeline_tests.devorg_fixtures import connect, shared_reference

SOQL = "SELECT Id, Name, IsSandbox, OrganizationType, InstanceName FROM Organization"


def test_each_org_has_its_own_organization_id_kept_across_restarts(tmp_path: Path):
    with DevOrgServer(tmp_path / "prod") as prod, DevOrgServer(tmp_path / "sand", name="sandbox", sandbox=True) as sand:
        [p] = connect(prod).query(SOQL)["records"]
        [s] = connect(sand).query(SOQL)["records"]
        ids_seen = (p["Id"], s["Id"])
        assert p["Id"] != s["Id"]
        for row, org in ((p, prod.org), (s, sand.org)):
            assert row["Id"] == org.org_id and row["Id"].startswith("00D") and ids.normalize(row["Id"]) == row["Id"]
            assert row["OrganizationType"] == "Enterprise Edition" and row["Name"]
        assert (p["IsSandbox"], p["InstanceName"]) == (False, "NA1")
        assert (s["IsSandbox"], s["InstanceName"]) == (True, "CS1")  # sandbox instances are CSnn
        # simple-salesforce's own check reads the same record
        assert connect(prod).is_sandbox() is False and connect(sand).is_sandbox() is True
        # the login answers the same org id (OAuth userinfo organization_id)
        token = prod.login("admin")
        info = requests.get(
            f"{prod.instance_url}/services/oauth2/userinfo",
            headers={"Authorization": f"Bearer {token}"},
            verify=prod.ca_bundle,
            timeout=30,
        ).json()
        assert info["organization_id"] == p["Id"]
    with DevOrgServer(tmp_path / "prod") as again, DevOrgServer(tmp_path / "sand") as sand_again:
        assert (again.org.org_id, sand_again.org.org_id) == ids_seen
        assert sand_again.org.is_sandbox and connect(again).query("SELECT COUNT() FROM Organization")["totalSize"] == 1


def test_an_org_cannot_turn_into_a_sandbox(tmp_path: Path):
    Org(tmp_path / "prod").close()
    with pytest.raises(ValueError, match="is a production org .* Salesforce never turns one into the other"):
        Org(tmp_path / "prod", sandbox=True)


def test_data_made_before_per_org_ids_keeps_the_old_org_id(tmp_path: Path):
    org = Org(tmp_path / "old")
    org.store.conn.execute("DELETE FROM _meta WHERE key = 'organization'")
    org.store.conn.execute('DELETE FROM "Organization"')
    org.close()
    reopened = Org(tmp_path / "old")
    assert reopened.org_id == ORG_ID and not reopened.is_sandbox
    assert (
        reopened.queries.run("SELECT Id FROM Organization", include_deleted=False, batch_size=10)["records"][0]["Id"]
        == ORG_ID
    )
    reopened.close()


def test_organization_is_read_only_but_for_its_settings(devorg: DevOrgServer):
    sf = connect(devorg)
    org_id = devorg.org.org_id
    with pytest.raises(SalesforceMalformedRequest) as created:
        sf.Organization.create({})
    assert created.value.content[0]["errorCode"] == "INVALID_TYPE_FOR_OPERATION"
    with pytest.raises(SalesforceMalformedRequest) as deleted:
        sf.Organization.delete(org_id)
    assert deleted.value.content[0]["errorCode"] == "INVALID_TYPE_FOR_OPERATION"
    with pytest.raises(SalesforceMalformedRequest) as flipped:
        sf.Organization.update(org_id, {"IsSandbox": True})
    assert flipped.value.content[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    sf.Organization.update(org_id, {"Division": "EMEA"})  # Division is updateable (object reference)
    assert sf.Organization.get(org_id)["Division"] == "EMEA"
    fields = {f["name"]: f for f in sf.Organization.describe()["fields"]}
    assert not fields["IsSandbox"]["updateable"] and not fields["IsSandbox"]["nillable"]
    assert fields["OrganizationType"]["type"] == "picklist" and fields["InstanceName"]["type"] == "string"


def test_organization_describe_global_entry_matches_a_real_org(devorg: DevOrgServer):
    real = json.loads(shared_reference("salesforce-describe", "_global.json").read_text())
    real_entry = next(o for o in real["sobjects"] if o["name"] == "Organization")
    ours = next(o for o in connect(devorg).describe()["sobjects"] if o["name"] == "Organization")
    for key, value in real_entry.items():
        if key != "urls":
            assert ours[key] == value, key
