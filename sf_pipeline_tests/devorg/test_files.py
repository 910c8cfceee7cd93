"""Binary content as Salesforce serves it: blob URLs in queries, bytes from the blob endpoint, ContentVersion
inserts (JSON and multipart) that create documents and versions, links, cascades, Bulk refusing base64."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator

import pytest
from simple_salesforce import Salesforce

from sf_pipeline.devorg.runner import DevOrgServer
from sf_pipeline.devorg.wide_generator import generate_wide
from sf_pipeline_tests.devorg_fixtures import connect

V = "v59.0"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevOrgServer]:
    with DevOrgServer(tmp_path_factory.mktemp("files") / "org", generate=100) as srv:
        yield srv


@pytest.fixture(scope="module")
def sf(server: DevOrgServer) -> Salesforce:
    return connect(server)


def _url(server: DevOrgServer, path: str) -> str:
    return f"{server.instance_url}/services/data/{V}/{path}"


def _post_version(sf: Salesforce, server: DevOrgServer, data: bytes, **fields) -> str:
    body = {"PathOnClient": "report.pdf", **fields, "VersionData": base64.b64encode(data).decode()}
    resp = sf.session.post(_url(server, "sobjects/ContentVersion"), headers=sf.headers, data=json.dumps(body))
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


def test_a_content_version_insert_creates_its_document_and_serves_its_bytes(sf, server):
    data = b"%PDF-1.4 quarterly report\n" + bytes(range(256)) * 40
    account = sf.query("SELECT Id FROM Account LIMIT 1")["records"][0]["Id"]
    cv = _post_version(sf, server, data, Title="Q1 report", FirstPublishLocationId=account)
    rec = sf.ContentVersion.get(cv)
    assert rec["VersionNumber"] == "1" and rec["IsLatest"] is True and rec["ContentSize"] == len(data)
    assert rec["Checksum"] == hashlib.md5(data).hexdigest() and rec["FileType"] == "PDF"
    assert rec["VersionData"] == f"/services/data/{V}/sobjects/ContentVersion/{cv}/VersionData"
    doc = sf.ContentDocument.get(rec["ContentDocumentId"])
    assert doc["LatestPublishedVersionId"] == cv and doc["Title"] == "Q1 report"
    links = sf.query(
        f"SELECT LinkedEntityId, ShareType, Visibility FROM ContentDocumentLink WHERE ContentDocumentId = '{doc['Id']}'"
    )["records"]
    assert {r["LinkedEntityId"] for r in links} == {account, server.org.user("admin").user_id}
    # a REST query returns the blob's URL, the blob endpoint its bytes
    queried = sf.query(f"SELECT VersionData FROM ContentVersion WHERE Id = '{cv}'")["records"][0]
    assert queried["VersionData"] == rec["VersionData"]
    blob = sf.session.get(server.instance_url + queried["VersionData"], headers=sf.headers)
    assert blob.status_code == 200 and blob.content == data
    assert blob.headers["content-type"] == "application/pdf"
    # the bytes live on disk in the org's data directory, not in SQLite
    assert (server.data_dir / "blobs" / "068" / f"{cv}.VersionData").read_bytes() == data


def test_a_multipart_upload_as_the_rest_api_documents_it(sf, server):
    data = b"col1,col2\n" + b"1,2\n" * 5000
    entity = json.dumps({"Title": "Export", "PathOnClient": "export.csv", "ReasonForChange": "first"})
    headers = {k: v for k, v in sf.headers.items() if k.lower() != "content-type"}
    resp = sf.session.post(
        _url(server, "sobjects/ContentVersion"),
        headers=headers,
        files=[
            ("entity_content", (None, entity, "application/json")),
            ("VersionData", ("export.csv", data, "application/octet-stream")),
        ],
    )
    assert resp.status_code == 201, resp.text
    cv = resp.json()["id"]
    got = sf.session.get(_url(server, f"sobjects/ContentVersion/{cv}/VersionData"), headers=sf.headers)
    assert got.content == data and got.headers["content-type"].startswith("text/csv")
    missing = sf.session.post(
        _url(server, "sobjects/ContentVersion"),
        headers=headers,
        files=[("entity_content", (None, entity, "application/json"))],
    )
    assert missing.status_code == 400 and "VersionData" in missing.json()[0]["message"]


def test_a_new_version_becomes_the_latest_and_numbers_up(sf, server):
    first = _post_version(sf, server, b"v1", Title="Plan")
    doc = sf.ContentVersion.get(first)["ContentDocumentId"]
    second = _post_version(sf, server, b"version two", Title="Plan v2", ContentDocumentId=doc)
    versions = sf.query(
        f"SELECT Id, VersionNumber, IsLatest FROM ContentVersion WHERE ContentDocumentId = '{doc}' "
        "ORDER BY VersionNumber"
    )["records"]
    assert [(r["Id"], r["VersionNumber"], r["IsLatest"]) for r in versions] == [
        (first, "1", False),
        (second, "2", True),
    ]
    assert sf.ContentDocument.get(doc)["LatestPublishedVersionId"] == second
    old = sf.session.get(_url(server, f"sobjects/ContentVersion/{first}/VersionData"), headers=sf.headers)
    assert old.content == b"v1"
    # a version's bytes never change: new bytes are a new version
    refused = sf.session.patch(
        _url(server, f"sobjects/ContentVersion/{first}"),
        headers=sf.headers,
        data=json.dumps({"VersionData": base64.b64encode(b"v1 edited").decode()}),
    )
    assert refused.status_code == 400 and refused.json()[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"


def test_links_attach_a_document_to_records_and_deleting_it_cascades(sf, server):
    cv = _post_version(sf, server, b"contract text", Title="Contract", PathOnClient="contract.txt")
    doc = sf.ContentVersion.get(cv)["ContentDocumentId"]
    contact = sf.query("SELECT Id FROM Contact LIMIT 1")["records"][0]["Id"]
    link = sf.ContentDocumentLink.create(
        {"ContentDocumentId": doc, "LinkedEntityId": contact, "ShareType": "V", "Visibility": "AllUsers"}
    )["id"]
    got = sf.query(f"SELECT ContentDocumentId, ShareType FROM ContentDocumentLink WHERE LinkedEntityId = '{contact}'")
    assert [r["ContentDocumentId"] for r in got["records"]] == [doc]
    again = sf.session.post(
        _url(server, "sobjects/ContentDocumentLink"),
        headers=sf.headers,
        data=json.dumps({"ContentDocumentId": doc, "LinkedEntityId": contact}),
    )
    assert again.status_code == 400 and again.json()[0]["errorCode"] == "DUPLICATE_VALUE"
    sf.ContentDocument.delete(doc)
    assert sf.query(f"SELECT Id FROM ContentVersion WHERE ContentDocumentId = '{doc}'")["totalSize"] == 0
    remaining = sf.query(f"SELECT Id FROM ContentDocumentLink WHERE ContentDocumentId = '{doc}'")["records"]
    assert remaining == [] and link
    deleted = sf.query_all(f"SELECT Id, IsDeleted FROM ContentVersion WHERE Id = '{cv}'", include_deleted=True)[
        "records"
    ]
    assert deleted and deleted[0]["IsDeleted"] is True
    gone = sf.session.get(_url(server, f"sobjects/ContentVersion/{cv}/VersionData"), headers=sf.headers)
    assert gone.status_code == 404
    # a version is deleted through its document only
    cv2 = _post_version(sf, server, b"x", Title="Kept")
    refused = sf.session.delete(_url(server, f"sobjects/ContentVersion/{cv2}"), headers=sf.headers)
    assert refused.status_code == 400 and refused.json()[0]["errorCode"] == "INVALID_TYPE_FOR_OPERATION"


def test_attachment_body_is_a_blob_and_bulk_refuses_base64_fields(sf, server):
    # an Account of its own: one with Cases cannot be deleted (Case.AccountId is restrictedDelete)
    account = sf.Account.create({"Name": "Attachment parent"})["id"]
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
    att = sf.Attachment.create(
        {"ParentId": account, "Name": "logo.png", "ContentType": "image/png", "Body": base64.b64encode(png).decode()}
    )["id"]
    rec = sf.query(f"SELECT Name, Body, BodyLength FROM Attachment WHERE Id = '{att}'")["records"][0]
    assert rec["BodyLength"] == len(png)
    assert rec["Body"] == f"/services/data/{V}/sobjects/Attachment/{att}/Body"
    blob = sf.session.get(server.instance_url + rec["Body"], headers=sf.headers)
    assert blob.content == png and blob.headers["content-type"] == "image/png"
    bulk = sf.session.post(
        _url(server, "jobs/query"),
        headers=sf.headers,
        json={"operation": "query", "query": "SELECT Id, Body FROM Attachment"},
    )
    assert bulk.status_code == 400
    assert bulk.json() == [{"errorCode": "FeatureNotEnabled", "message": "Binary field not supported"}]
    ok = sf.session.post(
        _url(server, "jobs/query"),
        headers=sf.headers,
        json={"operation": "query", "query": "SELECT Id, Name, BodyLength FROM Attachment"},
    )
    assert ok.status_code == 200
    # new bytes through PATCH, in JSON or multipart ("Insert or Update Blob Data")
    gif = b"GIF89a" + b"\x01" * 50
    sf.Attachment.update(att, {"Name": "logo.gif", "ContentType": "image/gif", "Body": base64.b64encode(gif).decode()})
    updated = sf.session.get(server.instance_url + rec["Body"], headers=sf.headers)
    assert updated.content == gif and updated.headers["content-type"] == "image/gif"
    assert sf.Attachment.get(att)["BodyLength"] == len(gif)
    # deleting the parent deletes its attachments (Attachment.ParentId is required)
    sf.Account.delete(account)
    assert sf.query(f"SELECT Id FROM Attachment WHERE Id = '{att}'")["totalSize"] == 0


def test_the_generator_attaches_files_with_a_size_mix(tmp_path):
    with DevOrgServer(tmp_path / "org", generate=50) as srv:
        counts = generate_wide(srv.org, 0, files=30, size_mix={1000: 0.5, 20000: 0.5})
        assert counts["ContentVersion"] == counts["ContentDocument"] == 30
        sf = connect(srv)
        versions = sf.query_all("SELECT Id, ContentSize, Checksum, ContentDocumentId FROM ContentVersion")["records"]
        assert len(versions) == 30 and {v["ContentSize"] for v in versions} == {1000, 20000}
        for v in versions[:5]:
            data = sf.session.get(
                f"{srv.instance_url}/services/data/{V}/sobjects/ContentVersion/{v['Id']}/VersionData",
                headers=sf.headers,
            ).content
            assert len(data) == v["ContentSize"] and hashlib.md5(data).hexdigest() == v["Checksum"]
        docs = ", ".join(f"'{v['ContentDocumentId']}'" for v in versions)
        linked = sf.query_all(f"SELECT LinkedEntityId FROM ContentDocumentLink WHERE ContentDocumentId IN ({docs})")
        assert sum(r["LinkedEntityId"].startswith("001") for r in linked["records"]) == 30  # one account per file
        with pytest.raises(Exception, match="requires a filter by a single Id"):
            sf.query("SELECT Id FROM ContentDocumentLink")  # as in a real org: no unfiltered link query
