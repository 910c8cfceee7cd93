"""An admin changes custom field types while the org runs; describe and the stored data follow, converted as
Salesforce Help's "Considerations for Converting the Field Type of a Custom Field" says (field_types.py).
"""

from __future__ import annotations

import json

from click.testing import CliRunner
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest

from sf_pipeline.cli import main
from sf_pipeline.devorg.runner import DevOrgServer
from sf_pipeline_tests.devorg_fixtures import connect, tls_session


def describe_field(sf: Salesforce, obj: str, name: str) -> dict:
    return next(f for f in getattr(sf, obj).describe()["fields"] if f["name"] == name)


def invoices(sf: Salesforce) -> tuple[str, list[str]]:
    acc = sf.Account.create({"Name": "Acme"})["id"]
    ids = [
        sf.Invoice__c.create(
            {
                "Name": f"INV-{i}",
                "Account__c": acc,
                "Amount__c": 12.5 + i,
                "Due_Date__c": "2026-03-0" + str(i + 1),
                "Status__c": ["Paid", "Sent"][i],
                "Invoice_Number__c": f"N-{i}",
            }
        )["id"]
        for i in range(2)
    ]
    return acc, ids


def test_number_to_text_keeps_values_as_text_in_describe_rest_and_bulk(devorg: DevOrgServer, sf: Salesforce):
    _, ids = invoices(sf)
    assert describe_field(sf, "Invoice__c", "Amount__c")["type"] == "currency"
    out = devorg.control("fields/type", {"object": "Invoice__c", "field": "Amount__c", "type": "string", "length": 40})
    assert out == {
        "object": "Invoice__c",
        "field": "Amount__c",
        "from": "currency",
        "to": "string",
        "kept": 2,
        "cleared": 0,
    }
    field = describe_field(sf, "Invoice__c", "Amount__c")
    assert (field["type"], field["length"], field["precision"], field["soapType"]) == ("string", 40, 0, "xsd:string")
    assert sf.Invoice__c.get(ids[0])["Amount__c"] == "12.50"
    assert sf.query("SELECT Id FROM Invoice__c WHERE Amount__c = '13.50'")["records"][0]["Id"] == ids[1]
    assert "13.50" in list(sf.bulk2.Invoice__c.query("SELECT Amount__c FROM Invoice__c"))[0]
    sf.Invoice__c.update(ids[0], {"Amount__c": "about twelve"})  # text is accepted now
    assert sf.Invoice__c.get(ids[0])["Amount__c"] == "about twelve"


def test_date_to_datetime_loses_the_data_as_salesforce_warns(devorg: DevOrgServer, sf: Salesforce):
    _, ids = invoices(sf)
    out = devorg.control("fields/type", {"object": "Invoice__c", "field": "Due_Date__c", "type": "datetime"})
    assert (out["kept"], out["cleared"]) == (0, 2)
    assert describe_field(sf, "Invoice__c", "Due_Date__c")["type"] == "datetime"
    assert sf.Invoice__c.get(ids[0])["Due_Date__c"] is None
    sf.Invoice__c.update(ids[0], {"Due_Date__c": "2026-04-01T10:00:00.000+0000"})
    assert sf.Invoice__c.get(ids[0])["Due_Date__c"] == "2026-04-01T10:00:00.000+0000"


def test_lookup_to_text_keeps_the_id_and_drops_the_relationship(devorg: DevOrgServer, sf: Salesforce):
    acc, ids = invoices(sf)
    env = {**devorg.env("production"), **devorg.control_env("production")}
    result = CliRunner().invoke(
        main,
        ["devorg", "change-field-type", "Invoice__c", "Account__c", "string", "--length", "18"],
        env=env,
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["kept"] == 2
    field = describe_field(sf, "Invoice__c", "Account__c")
    assert (field["type"], field["referenceTo"], field["relationshipName"]) == ("string", [], None)
    assert sf.Invoice__c.get(ids[0])["Account__c"] == acc
    try:
        sf.query("SELECT Account__r.Name FROM Invoice__c")
        raise AssertionError("the relationship should be gone")
    except SalesforceMalformedRequest as exc:
        assert exc.content[0]["errorCode"] == "INVALID_FIELD"
    assert not any(r.get("field") == "Account__c" for r in sf.Account.describe()["childRelationships"])


def test_picklist_to_multiselect_keeps_defined_values_and_the_change_survives_a_restart(tmp_path):
    data = tmp_path / "org"
    with DevOrgServer(data) as devorg:
        sf = connect(devorg)
        _, ids = invoices(sf)
        devorg.org.store.conn.execute("UPDATE Invoice__c SET Status__c = 'Legacy' WHERE Id = ?", (ids[1],))
        out = devorg.org.change_field_type("Invoice__c", "Status__c", "multipicklist")  # the Python API
        assert (out["kept"], out["cleared"]) == (1, 1)
    with DevOrgServer(data) as devorg:
        sf = connect(devorg)
        field = describe_field(sf, "Invoice__c", "Status__c")
        assert field["type"] == "multipicklist" and "Paid" in [v["value"] for v in field["picklistValues"]]
        assert [sf.Invoice__c.get(i)["Status__c"] for i in ids] == ["Paid", None]


def test_changes_salesforce_does_not_allow_are_refused_with_the_reason(devorg: DevOrgServer):
    session = tls_session(devorg)
    auth = {"Authorization": f"Bearer {devorg.control_token}"}
    url = f"{devorg.instance_url}/_devorg/fields/type"
    standard = session.post(url, json={"object": "Account", "field": "Name", "type": "textarea"}, headers=auth)
    assert standard.status_code == 400 and "standard field" in standard.json()["error"]
    checkbox = session.post(url, json={"object": "Invoice__c", "field": "Status__c", "type": "boolean"}, headers=auth)
    assert checkbox.status_code == 400 and "does not emulate" in checkbox.json()["error"]
    unknown = session.post(url, json={"object": "Invoice__c", "field": "Nope__c", "type": "string"}, headers=auth)
    assert unknown.status_code == 400
