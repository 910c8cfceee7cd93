"""devorg conformance: unmodified simple-salesforce over TLS sees what a real org would answer."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import jwt
import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from sf_pipeline.devorg import ids
from sf_pipeline.devorg.runner import DevOrgServer
from sf_pipeline_tests.devorg_fixtures import connect, login_domain, tls_session


def _account(sf: Salesforce, name: str = "Acme", **extra) -> str:
    return sf.Account.create({"Name": name, **extra})["id"]


def _opportunity(sf: Salesforce, account_id: str | None, name: str = "Deal", **extra) -> str:
    values = {"Name": name, "StageName": "Prospecting", "CloseDate": "2026-12-31", **extra}
    if account_id:
        values["AccountId"] = account_id
    return sf.Opportunity.create(values)["id"]


# ---------------------------------------------------------------------------------------------- auth
def test_soap_login_with_password_and_security_token(devorg: DevOrgServer):
    sf = connect(devorg, "integration")
    assert sf.sf_instance == f"{devorg.host}:{devorg.port}"
    me = sf.query("SELECT Id, Name FROM User WHERE Username = '{}'".format(devorg.org.user("integration").username))
    assert me["records"][0]["Name"] == "Marketing Integration"


def test_soap_login_with_wrong_password_raises_authentication_failed(devorg: DevOrgServer):
    cred = devorg.org.user("admin")
    with pytest.raises(SalesforceAuthenticationFailed) as exc:
        Salesforce(
            username=cred.username,
            password="wrong",
            security_token=cred.security_token,
            domain=login_domain(devorg),
            session=tls_session(devorg),
        )
    assert "INVALID_LOGIN" in str(exc.value)


def test_oauth_password_grant(devorg: DevOrgServer):
    cred = devorg.org.user("admin")
    sf = Salesforce(
        username=cred.username,
        password=cred.password + cred.security_token,
        consumer_key=devorg.org.client_id,
        consumer_secret=devorg.org.client_secret,
        domain=login_domain(devorg),
        session=tls_session(devorg),
    )
    assert sf.query("SELECT COUNT() FROM User")["totalSize"] == 6


def test_oauth_client_credentials_runs_as_integration_user(devorg: DevOrgServer):
    sf = Salesforce(
        consumer_key=devorg.org.client_id,
        consumer_secret=devorg.org.client_secret,
        domain=login_domain(devorg),
        session=tls_session(devorg),
    )
    created = sf.Account.create({"Name": "Via client credentials"})["id"]
    assert sf.Account.get(created)["CreatedById"] == devorg.org.user("integration").user_id


def test_oauth_client_credentials_with_wrong_secret_is_refused(devorg: DevOrgServer):
    with pytest.raises(SalesforceAuthenticationFailed):
        Salesforce(
            consumer_key=devorg.org.client_id,
            consumer_secret="nope",
            domain=login_domain(devorg),
            session=tls_session(devorg),
        )


def test_jwt_bearer_flow_with_the_connected_app_key(devorg: DevOrgServer):
    env = devorg.env()
    cred = devorg.org.user("sales1")
    sf = Salesforce(
        username=cred.username,
        consumer_key=devorg.org.client_id,
        privatekey_file=env["SALESFORCE_PRODUCTION_PRIVATE_KEY_FILE"],
        domain=login_domain(devorg),
        session=tls_session(devorg),
    )
    created = sf.Account.create({"Name": "Via JWT"})["id"]
    assert sf.Account.get(created)["OwnerId"] == cred.user_id


def test_jwt_signed_with_another_key_is_refused(devorg: DevOrgServer):
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assertion = jwt.encode(
        {
            "iss": devorg.org.client_id,
            "sub": devorg.org.user("admin").username,
            "aud": "https://login.salesforce.com",
            "exp": int(time.time()) + 60,
        },
        other,
        algorithm="RS256",
    )
    resp = requests.post(
        f"{devorg.instance_url}/services/oauth2/token",
        verify=devorg.ca_bundle,
        data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion},
    )
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_grant"


def test_session_id_and_instance_url(devorg: DevOrgServer):
    sf = Salesforce(instance_url=devorg.instance_url, session_id=devorg.login("admin"), session=tls_session(devorg))
    assert sf.query("SELECT COUNT() FROM User")["totalSize"] == 6


def test_invalid_session_gives_401_invalid_session_id(devorg: DevOrgServer):
    sf = Salesforce(instance_url=devorg.instance_url, session_id="00Dbogus!token", session=tls_session(devorg))
    with pytest.raises(SalesforceExpiredSession) as exc:
        sf.query("SELECT Id FROM Account")
    assert exc.value.content[0]["errorCode"] == "INVALID_SESSION_ID"
    raw = requests.get(
        f"{devorg.instance_url}/services/data/v59.0/limits",
        verify=devorg.ca_bundle,
        headers={"Authorization": "Bearer nope"},
    )
    assert raw.status_code == 401
    assert raw.json() == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


def test_expired_session_is_renewed_by_a_client_holding_credentials(devorg: DevOrgServer, sf: Salesforce):
    devorg.org.expire_sessions()
    # simple-salesforce logs in again on INVALID_SESSION_ID when it has credentials.
    assert sf.query("SELECT COUNT() FROM User")["totalSize"] == 6


# ---------------------------------------------------------------------------------------------- REST basics
def test_versions_resources_and_any_api_version(devorg: DevOrgServer):
    versions = requests.get(f"{devorg.instance_url}/services/data", verify=devorg.ca_bundle).json()
    assert {"59.0", "62.0"} <= {v["version"] for v in versions}
    for version in ("52.0", "59.0", "62.0"):
        sf = Salesforce(
            instance_url=devorg.instance_url, session_id=devorg.login(), version=version, session=tls_session(devorg)
        )
        assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 0


def test_every_response_carries_sforce_limit_info(devorg: DevOrgServer, sf: Salesforce):
    sf.query("SELECT Id FROM Account")
    used, total = sf.api_usage["api-usage"]
    assert total == devorg.org.daily_limit and used >= 1
    resp = requests.get(
        f"{devorg.instance_url}/services/data/v59.0/sobjects/Account/001000000000000AAA",
        verify=devorg.ca_bundle,
        headers={"Authorization": f"Bearer {devorg.login()}"},
    )
    assert resp.status_code == 404 and resp.headers["Sforce-Limit-Info"].startswith("api-usage=")


def test_create_get_update_delete_a_record(devorg: DevOrgServer, sf: Salesforce):
    devorg.org.set_clock(datetime(2026, 11, 24, 1, 0, tzinfo=UTC), freeze=True)
    acc = _account(sf, "Acme", Industry="Banking")
    assert len(acc) == 18 and acc.startswith("001") and ids.normalize(acc[:15]) == acc
    rec = sf.Account.get(acc)
    assert rec["attributes"] == {"type": "Account", "url": f"/services/data/v59.0/sobjects/Account/{acc}"}
    assert rec["Name"] == "Acme" and rec["IsDeleted"] is False
    assert rec["CreatedDate"] == rec["SystemModstamp"] == "2026-11-24T01:00:00.000+0000"
    assert rec["CreatedById"] == rec["LastModifiedById"] == rec["OwnerId"] == devorg.org.user("admin").user_id
    devorg.org.advance_clock(timedelta(minutes=5))
    assert sf.Account.update(acc, {"Industry": "Energy"}) == 204
    rec = sf.Account.get(acc)
    assert rec["Industry"] == "Energy" and rec["SystemModstamp"] == "2026-11-24T01:05:00.000+0000"
    assert rec["CreatedDate"] == "2026-11-24T01:00:00.000+0000"
    assert sf.Account.get(acc[:15])["Id"] == acc  # 15-character ids are accepted
    assert sf.Account.delete(acc) == 204
    with pytest.raises(SalesforceResourceNotFound) as exc:
        sf.Account.get(acc)
    assert exc.value.content[0]["errorCode"] == "ENTITY_IS_DELETED"


def test_18_character_ids_are_case_insensitive(sf: Salesforce):
    acc = _account(sf)
    assert sf.Account.get(acc.upper())["Id"] == acc
    assert sf.Account.get(acc.lower())["Id"] == acc


def test_get_with_field_list(sf: Salesforce):
    acc = _account(sf, Phone="555-0100")
    rec = sf.Account.get(acc, params={"fields": "Name,Phone"})
    assert set(rec) == {"attributes", "Name", "Phone"}


def test_object_and_field_names_are_case_insensitive(devorg: DevOrgServer, sf: Salesforce):
    created = sf.restful("sobjects/account/", method="POST", json={"name": "lower", "INDUSTRY": "Banking"})
    rec = sf.Account.get(created["id"])
    assert rec["Name"] == "lower" and rec["Industry"] == "Banking"


def test_system_fields_cannot_be_written(sf: Salesforce):
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Account.create(
            {"Name": "x", "CreatedDate": "2020-01-01T00:00:00Z", "SystemModstamp": "2020-01-01T00:00:00Z"}
        )
    err = exc.value.content[0]
    assert err["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    assert err["fields"] == ["CreatedDate", "SystemModstamp"]
    assert err["message"].startswith("Unable to create/update fields: CreatedDate, SystemModstamp.")


def test_non_updateable_field_is_rejected_on_update_only(sf: Salesforce):
    acc = _account(sf)
    opp = _opportunity(sf, acc)
    contact = sf.Contact.create({"LastName": "Lee", "AccountId": acc})["id"]
    role = sf.OpportunityContactRole.create({"OpportunityId": opp, "ContactId": contact})["id"]
    other = _opportunity(sf, acc, "Other")
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.OpportunityContactRole.update(role, {"OpportunityId": other})
    assert exc.value.content[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"


def test_required_fields_types_lengths_and_emails_are_validated(sf: Salesforce):
    cases = [
        ({"StageName": "Prospecting", "CloseDate": "2026-01-01"}, "REQUIRED_FIELD_MISSING", ["Name"]),
        ({"Name": "x" * 121, "StageName": "Prospecting", "CloseDate": "2026-01-01"}, "STRING_TOO_LONG", ["Name"]),
        ({"Name": "x", "StageName": "Prospecting", "CloseDate": "not-a-date"}, "JSON_PARSER_ERROR", None),
        (
            {"Name": "x", "StageName": "Prospecting", "CloseDate": "2026-01-01", "Amount": "lots"},
            "JSON_PARSER_ERROR",
            None,
        ),
        (
            {"Name": "x", "StageName": "Prospecting", "CloseDate": "2026-01-01", "NoSuchField__c": 1},
            "INVALID_FIELD",
            None,
        ),
    ]
    for values, code, fields in cases:
        with pytest.raises(SalesforceMalformedRequest) as exc:
            sf.Opportunity.create(values)
        err = exc.value.content[0]
        assert err["errorCode"] == code, (values, err)
        if fields is not None:
            assert err["fields"] == fields
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Contact.create({"LastName": "x", "Email": "not an email"})
    assert exc.value.content[0]["errorCode"] == "INVALID_EMAIL_ADDRESS"


def test_references_must_exist_and_have_the_right_type(sf: Salesforce):
    acc = _account(sf)
    contact = sf.Contact.create({"LastName": "Lee", "AccountId": acc})["id"]
    with pytest.raises(SalesforceMalformedRequest) as exc:
        _opportunity(sf, contact)
    assert exc.value.content[0]["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    with pytest.raises(SalesforceMalformedRequest) as exc:
        _opportunity(sf, ids.make_id("001", 999_999))
    assert exc.value.content[0]["errorCode"] == "INVALID_CROSS_REFERENCE_KEY"
    with pytest.raises(SalesforceMalformedRequest) as exc:
        _opportunity(sf, "001notanid")
    assert exc.value.content[0]["errorCode"] == "MALFORMED_ID"


def test_id_in_create_body_and_unknown_object(sf: Salesforce):
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Account.create({"Id": "001000000000000AAA", "Name": "x"})
    assert exc.value.content[0]["message"] == "The Id field should not be specified in the sobject data."
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Accountx.create({"Name": "x"})
    assert exc.value.content[0]["errorCode"] == "INVALID_TYPE"


def test_malformed_json_body_is_a_400_with_a_json_error(devorg: DevOrgServer):
    resp = requests.post(
        f"{devorg.instance_url}/services/data/v59.0/sobjects/Account/",
        data="{not json",
        verify=devorg.ca_bundle,
        headers={"Authorization": f"Bearer {devorg.login()}", "Content-Type": "application/json"},
    )
    assert resp.status_code == 400
    assert resp.json()[0]["errorCode"] == "JSON_PARSER_ERROR"


def test_upsert_on_external_id(sf: Salesforce):
    acc = _account(sf)
    assert sf.Invoice__c.upsert("Invoice_Number__c/INV-1", {"Account__c": acc, "Amount__c": 10}) == 201
    assert sf.Invoice__c.upsert("Invoice_Number__c/INV-1", {"Amount__c": 20}) == 200
    rec = sf.Invoice__c.get_by_custom_id("Invoice_Number__c", "INV-1")
    assert rec["Amount__c"] == 20 and rec["Account__c"] == acc
    created = sf.Invoice__c.upsert("Invoice_Number__c/INV-2", {"Amount__c": 5}, raw_response=True)
    assert created.status_code == 201 and created.json()["created"] is True
    with pytest.raises(SalesforceResourceNotFound):
        sf.Invoice__c.upsert("Amount__c/5", {"Paid__c": True})


def test_cascade_delete_and_undelete_restore_the_whole_tree(devorg: DevOrgServer, sf: Salesforce):
    acc = _account(sf)
    contact = sf.Contact.create({"LastName": "Lee", "AccountId": acc})["id"]
    opp = _opportunity(sf, acc)
    role = sf.OpportunityContactRole.create({"OpportunityId": opp, "ContactId": contact})["id"]
    sf.Account.delete(acc)  # (an Account with Cases could not be deleted: test_vanishing_records.py)
    assert sf.query("SELECT COUNT() FROM Contact")["totalSize"] == 0
    gone = sf.query_all("SELECT Id, IsDeleted FROM Opportunity", include_deleted=True)["records"]
    assert [(r["Id"], r["IsDeleted"]) for r in gone] == [(opp, True)]
    assert (
        sf.query_all(f"SELECT Id FROM OpportunityContactRole WHERE Id = '{role}'", include_deleted=True)["records"][0][
            "Id"
        ]
        == role
    )
    _soap_undelete(devorg, [acc])
    for obj, rid in (("Account", acc), ("Contact", contact), ("Opportunity", opp), ("OpportunityContactRole", role)):
        assert getattr(sf, obj).get(rid)["IsDeleted"] is False


def test_deleting_a_parent_clears_plain_lookups_and_undelete_restores_them(devorg: DevOrgServer, sf: Salesforce):
    acc = _account(sf)
    boss = sf.Contact.create({"LastName": "Boss", "AccountId": acc})["id"]
    report = sf.Contact.create({"LastName": "Lee", "AccountId": acc, "ReportsToId": boss})["id"]
    sf.Contact.delete(boss)
    assert sf.Contact.get(report)["ReportsToId"] is None
    _soap_undelete(devorg, [boss])
    assert sf.Contact.get(report)["ReportsToId"] == boss  # Reports To is one of the lookups undelete restores


def test_lookup_cleared_by_a_deletion_is_a_change_of_the_child_stamped_like_the_deletion(devorg: DevOrgServer):
    """A deletion that clears a child's lookup ("Clear the value of this field") modifies the child: its
    SystemModstamp, LastModifiedDate and LastModifiedById become the deletion's, so a backup reading by
    SystemModstamp sees the cleared lookup in the deletion's window (SOAP API Developer Guide, "System Fields":
    SystemModstamp is "when a user or automated process ... last modified this record"; store._delete_one has the
    sources). Children deleted with the parent (cascade) carry the same stamp; an untouched record keeps its own."""
    admin, sales = connect(devorg, "admin"), connect(devorg, "sales3")
    devorg.org.set_clock(datetime(2026, 11, 24, 1, 0, tzinfo=UTC), freeze=True)
    acc = _account(admin, "Parent")
    invoice = admin.Invoice__c.create({"Account__c": acc, "Name": "INV-1"})["id"]
    child_account = _account(admin, "Subsidiary", ParentId=acc)
    opp = _opportunity(admin, acc)
    bystander = _account(admin, "Bystander")
    created = admin.Account.get(bystander)["SystemModstamp"]
    devorg.org.set_clock(datetime(2026, 11, 24, 2, 5, tzinfo=UTC), freeze=True)
    sales.Account.delete(acc)
    deletion = admin.query_all(
        f"SELECT SystemModstamp, LastModifiedById FROM Account WHERE Id = '{acc}'", include_deleted=True
    )["records"][0]
    assert deletion["SystemModstamp"].startswith("2026-11-24T02:05")
    sales3 = devorg.org.user("sales3").user_id
    for sobject, rid, field in (("Invoice__c", invoice, "Account__c"), ("Account", child_account, "ParentId")):
        row = getattr(admin, sobject).get(rid)
        assert row[field] is None  # cleared, the child still live
        assert (row["SystemModstamp"], row["LastModifiedDate"], row["LastModifiedById"]) == (
            deletion["SystemModstamp"],
            deletion["SystemModstamp"],
            sales3,
        )
    cascaded = admin.query_all(
        f"SELECT IsDeleted, SystemModstamp FROM Opportunity WHERE Id = '{opp}'", include_deleted=True
    )["records"][0]
    assert cascaded == {**cascaded, "IsDeleted": True, "SystemModstamp": deletion["SystemModstamp"]}
    assert admin.Account.get(bystander)["SystemModstamp"] == created


def _soap_undelete(devorg: DevOrgServer, record_ids: list[str]) -> str:
    body = (
        '<?xml version="1.0" encoding="utf-8"?><soapenv:Envelope '
        'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:partner.soap.sforce.com">'
        f"<soapenv:Header><urn:SessionHeader><urn:sessionId>{devorg.login()}</urn:sessionId>"
        "</urn:SessionHeader></soapenv:Header><soapenv:Body><urn:undelete>"
        + "".join(f"<urn:ids>{i}</urn:ids>" for i in record_ids)
        + "</urn:undelete></soapenv:Body></soapenv:Envelope>"
    )
    resp = requests.post(
        f"{devorg.instance_url}/services/Soap/u/59.0/00D5J0000000001",
        data=body,
        verify=devorg.ca_bundle,
        headers={"Content-Type": "text/xml", "SOAPAction": "undelete"},
    )
    assert resp.status_code == 200, resp.text
    assert resp.text.count("<success>true</success>") == len(record_ids), resp.text
    return resp.text


def test_undelete_of_a_live_record_fails_per_record(devorg: DevOrgServer, sf: Salesforce):
    acc = _account(sf)
    body = (
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:urn="urn:partner.soap.sforce.com"><soapenv:Header><urn:SessionHeader><urn:sessionId>'
        f"{devorg.login()}</urn:sessionId></urn:SessionHeader></soapenv:Header><soapenv:Body><urn:undelete>"
        f"<urn:ids>{acc}</urn:ids></urn:undelete></soapenv:Body></soapenv:Envelope>"
    )
    resp = requests.post(
        f"{devorg.instance_url}/services/Soap/u/59.0",
        data=body,
        verify=devorg.ca_bundle,
        headers={"Content-Type": "text/xml", "SOAPAction": "undelete"},
    )
    assert "<success>false</success>" in resp.text and "UNDELETE_FAILED" in resp.text


def test_updated_and_deleted_resources(devorg: DevOrgServer, sf: Salesforce):
    devorg.org.set_clock(datetime(2026, 11, 24, 2, 0, tzinfo=UTC), freeze=True)
    a1 = _account(sf, "A1")
    devorg.org.advance_clock(timedelta(minutes=10))
    a2 = _account(sf, "A2")
    sf.Account.delete(a1)
    devorg.org.advance_clock(timedelta(minutes=10))
    start, end = datetime(2026, 11, 24, 1, 0, tzinfo=UTC), datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
    updated = sf.Account.updated(start, end)
    assert updated["ids"] == [a2]
    deleted = sf.Account.deleted(start, end)
    assert [(d["id"], d["deletedDate"]) for d in deleted["deletedRecords"]] == [(a1, "2026-11-24T02:10:00.000+0000")]


# ---------------------------------------------------------------------------------------------- query
def test_query_all_pages_with_next_records_url_and_batch_size(devorg: DevOrgServer, sf: Salesforce):
    result = sf.restful(
        "composite/sobjects",
        method="POST",
        json={
            "allOrNone": True,
            "records": [{"attributes": {"type": "Account"}, "Name": f"A{i:03d}"} for i in range(200)],
        },
    )
    assert all(r["success"] for r in result)
    sf.restful(
        "composite/sobjects",
        method="POST",
        json={"records": [{"attributes": {"type": "Account"}, "Name": f"B{i:03d}"} for i in range(150)]},
    )
    first = sf.query("SELECT Id, Name FROM Account ORDER BY Name", headers={"Sforce-Query-Options": "batchSize=200"})
    assert first["totalSize"] == 350 and first["done"] is False and len(first["records"]) == 200
    assert first["nextRecordsUrl"].startswith("/services/data/v59.0/query/01g")
    assert first["nextRecordsUrl"].endswith("-200")
    second = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    assert second["done"] is True and "nextRecordsUrl" not in second and len(second["records"]) == 150
    again = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)  # locators can be re-read
    assert again["records"] == second["records"]
    names = [r["Name"] for r in sf.query_all("SELECT Name FROM Account ORDER BY Name")["records"]]
    assert names == sorted(names) and len(names) == 350
    tiny = sf.query("SELECT Id FROM Account", headers={"Sforce-Query-Options": "batchSize=10"})
    assert len(tiny["records"]) == 200  # Salesforce's minimum batch size


def test_query_all_sees_deleted_records_with_isdeleted_true(sf: Salesforce):
    keep, gone = _account(sf, "Keep"), _account(sf, "Gone")
    sf.Account.delete(gone)
    assert [r["Id"] for r in sf.query_all("SELECT Id FROM Account")["records"]] == [keep]
    rows = sf.query_all("SELECT Id, IsDeleted FROM Account ORDER BY Name", include_deleted=True)["records"]
    assert [(r["Id"], r["IsDeleted"]) for r in rows] == [(gone, True), (keep, False)]


def test_query_parent_fields_and_counts(devorg: DevOrgServer, sf: Salesforce):
    acc = _account(sf, "Acme")
    _opportunity(sf, acc, "With account")
    _opportunity(sf, None, "Orphan")
    rows = sf.query("SELECT Name, Account.Name, Owner.Name FROM Opportunity ORDER BY Name")["records"]
    assert rows[0]["Account"] is None and rows[0]["Owner"]["Name"] == "Ada Admin"
    assert rows[1]["Account"]["Name"] == "Acme"
    assert rows[1]["Account"]["attributes"]["type"] == "Account"
    assert sf.query("SELECT COUNT() FROM Opportunity WHERE AccountId = null")["totalSize"] == 1
    agg = sf.query("SELECT COUNT(Id) FROM Opportunity")["records"][0]
    assert agg["expr0"] == 2 and agg["attributes"] == {"type": "AggregateResult"}


def test_bad_soql_gives_the_real_error_codes(sf: Salesforce):
    for soql, code in [
        ("SELECT Id FRM Account", "MALFORMED_QUERY"),
        ("SELECT Id FROM Accountx", "INVALID_TYPE"),
        ("SELECT Nope FROM Account", "INVALID_FIELD"),
        ("SELECT Id FROM Account GROUP BY Name", "MALFORMED_QUERY"),
    ]:
        with pytest.raises(SalesforceMalformedRequest) as exc:
            sf.query(soql)
        assert exc.value.content[0]["errorCode"] == code, soql
        assert "ERROR at Row:1:Column:" in exc.value.content[0]["message"], soql


# ---------------------------------------------------------------------------------------------- collections
def test_collections_all_or_none_rolls_back_everything(sf: Salesforce):
    records = [{"attributes": {"type": "Account"}, "Name": "Good"}, {"attributes": {"type": "Account"}}]
    result = sf.restful("composite/sobjects", method="POST", json={"allOrNone": True, "records": records})
    assert result[0]["success"] is False and result[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert result[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 0
    partial = sf.restful("composite/sobjects", method="POST", json={"allOrNone": False, "records": records})
    assert [r["success"] for r in partial] == [True, False]
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 1


def test_collections_update_delete_and_retrieve(sf: Salesforce):
    a, b = _account(sf, "A"), _account(sf, "B")
    result = sf.restful(
        "composite/sobjects",
        method="PATCH",
        json={
            "records": [
                {"attributes": {"type": "Account"}, "id": a, "Rating": "Hot"},
                {"attributes": {"type": "Account"}, "id": b, "Rating": "Cold"},
            ]
        },
    )
    assert [r["success"] for r in result] == [True, True]
    got = sf.restful("composite/sobjects/Account", params={"ids": f"{a},{b}", "fields": "Id,Rating"})
    assert [(r["Id"], r["Rating"]) for r in got] == [(a, "Hot"), (b, "Cold")]
    deleted = sf.restful("composite/sobjects", method="DELETE", params={"ids": f"{a},{b}", "allOrNone": "true"})
    assert [r["success"] for r in deleted] == [True, True]
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 0


def test_collections_refuse_more_than_200_records(sf: Salesforce):
    records = [{"attributes": {"type": "Account"}, "Name": str(i)} for i in range(201)]
    with pytest.raises(SalesforceMalformedRequest):
        sf.restful("composite/sobjects", method="POST", json={"records": records})


# ---------------------------------------------------------------------------------------------- limits
def test_limits_and_record_count(devorg: DevOrgServer, sf: Salesforce):
    _account(sf)
    limits = sf.limits()
    assert limits["DailyApiRequests"]["Max"] == devorg.org.daily_limit
    assert limits["DailyApiRequests"]["Remaining"] < devorg.org.daily_limit
    counts = sf.restful("limits/recordCount", params={"sObjects": "Account,Contact"})
    assert counts == {"sObjects": [{"count": 1, "name": "Account"}, {"count": 0, "name": "Contact"}]}


def test_daily_limit_spent_gives_request_limit_exceeded(devorg: DevOrgServer, sf: Salesforce):
    devorg.org.set_daily_limit(devorg.org.api_usage() + 2)
    sf.query("SELECT Id FROM Account")
    sf.query("SELECT Id FROM Account")
    with pytest.raises(SalesforceRefusedRequest) as exc:
        sf.query("SELECT Id FROM Account")
    assert exc.value.content == [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]


# ---------------------------------------------------------------------------------------------- describe
def test_describe_global_and_object(sf: Salesforce):
    names = {o["name"] for o in sf.describe()["sobjects"]}
    assert {
        "Account",
        "Contact",
        "Opportunity",
        "Lead",
        "Case",
        "OpportunityContactRole",
        "User",
        "Invoice__c",
    } <= names
    d = sf.Invoice__c.describe()
    account = next(f for f in d["fields"] if f["name"] == "Account__c")
    assert account["type"] == "reference" and account["referenceTo"] == ["Account"]
    assert account["relationshipName"] == "Account__r" and d["custom"] is True
    assert d["keyPrefix"] == "a0B"


# ---------------------------------------------------------------------------------------------- persistence
def test_data_and_clock_persist_across_restart(tmp_path):
    data = tmp_path / "org"
    with DevOrgServer(data) as first:
        first.org.set_clock(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), freeze=True)
        sf = connect(first)
        acc = _account(sf, "Persistent")
        cred = first.org.user("admin")
        client_id = first.org.client_id
    with DevOrgServer(data) as second:
        assert second.org.client_id == client_id and second.org.user("admin").password == cred.password
        sf = connect(second)
        rec = sf.Account.get(acc)
        assert rec["Name"] == "Persistent" and rec["CreatedDate"] == "2026-01-02T03:04:05.000+0000"
        assert second.org.clock.now() == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        # new ids continue after the old ones, never reusing them
        assert _account(sf, "Next") > acc


# ---------------------------------------------------------------------------------------------- faults
def test_fault_5xx_on_next_requests(devorg: DevOrgServer, sf: Salesforce):
    devorg.app.faults.add("5xx", next=2, status=503)
    for _ in range(2):
        with pytest.raises(SalesforceGeneralError) as exc:
            sf.query("SELECT Id FROM Account")
        assert exc.value.status == 503
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 0


def test_fault_unable_to_lock_row_on_writes(devorg: DevOrgServer, sf: Salesforce):
    devorg.app.faults.add("lock", next=1)
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Account.create({"Name": "x"})
    assert exc.value.content[0]["errorCode"] == "UNABLE_TO_LOCK_ROW"
    assert sf.Account.create({"Name": "x"})["success"] is True


def test_fault_dropped_connection_mid_response(devorg: DevOrgServer, sf: Salesforce):
    devorg.app.faults.add("drop", next=1)
    with pytest.raises(requests.exceptions.RequestException):
        sf.query("SELECT Id FROM Account")
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 0


def test_fault_slow_responses(devorg: DevOrgServer, sf: Salesforce):
    devorg.app.faults.add("slow", next=1, delay=0.6)
    started = time.monotonic()
    sf.query("SELECT Id FROM Account")
    assert time.monotonic() - started >= 0.6
    started = time.monotonic()
    sf.query("SELECT Id FROM Account")
    assert time.monotonic() - started < 0.6


def test_fault_rate_fails_about_that_share_of_requests(devorg: DevOrgServer, sf: Salesforce):
    devorg.app.faults.add("5xx", rate=0.5)
    failures = 0
    for _ in range(60):
        try:
            sf.query("SELECT COUNT() FROM Account")
        except SalesforceGeneralError:
            failures += 1
    assert 15 <= failures <= 45
