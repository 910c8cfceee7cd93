"""File bodies backed up through real Dagster runs against devorg: new versions, changed bodies, deletes and
undeletes; identical content stored once; every version reachable from history; a rerun fetches nothing again;
`backup_complete` fails when a referenced blob goes missing; `sf-pipeline file` writes a file as of an instant."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from sf_pipeline.files_cli import file_command
from sf_pipeline_tests.devorg.test_vanishing_records import _undelete
from sf_pipeline_tests.files.helpers import (
    FILE_OBJECTS,
    at,
    attach,
    blob_store,
    metadata,
    rows,
    sha,
    upload,
)
from sf_pipeline_tests.pipeline_fixtures import Pipeline

pytestmark = pytest.mark.e2e


def test_versions_changes_deletes_and_undeletes_of_files_keep_every_body_reachable_from_history(
        pipeline_factory, tmp_path):
    p: Pipeline = pipeline_factory(FILE_OBJECTS)
    sf = p.sf()
    store = blob_store(p)
    at(p, 0, 5)
    account = sf.Account.create({"Name": "Acme"})["id"]
    contract_v1 = os.urandom(300_000)
    logo = os.urandom(10_000)
    v1 = upload(sf, "contract", contract_v1, parent=account)
    document = sf.ContentVersion.get(v1)["ContentDocumentId"]
    logo_a = attach(sf, account, "logo.png", logo)
    logo_b = attach(sf, account, "logo-copy.png", logo)  # identical content: one blob

    at(p, 1, 10)
    first = p.backup("2026-11-24-00:00")
    files = metadata(first, "salesforce/ContentVersion")["file_bodies"]
    assert (files["bodies_fetched"], files["new_blobs"], files["fields"]) == (1, 1, ["VersionData"])
    attachments = metadata(first, "salesforce/Attachment")["file_bodies"]
    assert (attachments["bodies_fetched"], attachments["new_blobs"], attachments["deduplicated"]) == (2, 1, 1)
    assert files["links_seen"] >= 2  # the owner's link and the account's
    [cv_row] = rows(p, "salesforce", "ContentVersion", v1)
    assert (cv_row["_sfp_versiondata_sha256"], cv_row["_sfp_versiondata_size"]) == (sha(contract_v1), 300_000)
    assert store.size(sha(contract_v1)) == 300_000 and store.size(sha(logo)) == 10_000
    assert rows(p, "salesforce", "Attachment", logo_b)[0]["_sfp_body_sha256"] == sha(logo)

    # 01:00 window: a new version of the contract, a changed attachment body, the copy deleted
    at(p, 1, 20)
    contract_v2 = os.urandom(200_000)
    v2 = upload(sf, "contract", contract_v2, document=document)
    logo_new = os.urandom(12_000)
    sf.Attachment.update(logo_a, {"Body": __import__("base64").b64encode(logo_new).decode()})
    sf.Attachment.delete(logo_b)
    at(p, 2, 10)
    second = p.backup("2026-11-24-01:00")
    assert metadata(second, "salesforce/ContentVersion")["file_bodies"]["bodies_fetched"] == 1  # v2 only
    att = metadata(second, "salesforce/Attachment")["file_bodies"]
    assert (att["bodies_fetched"], att["carried_to_deleted_versions"]) == (1, 1)
    history = rows(p, "salesforce_history", "Attachment", logo_a, "dbt_valid_from")
    assert [h["_sfp_body_sha256"] for h in history] == [sha(logo), sha(logo_new)]
    deleted = rows(p, "salesforce_history", "Attachment", logo_b, "dbt_valid_from")
    assert deleted[-1]["isdeleted"] and deleted[-1]["_sfp_body_sha256"] == sha(logo)  # still reachable

    # `sf-pipeline file`: the document as it was before and after its second version
    runner = CliRunner()
    before = tmp_path / "before.pdf"
    out = runner.invoke(file_command, [document, "--as-of", "2026-11-24T01:15:00Z", "-o", str(before)])
    assert out.exit_code == 0, out.output
    assert before.read_bytes() == contract_v1
    after = runner.invoke(file_command, [document, "-o", str(tmp_path)])
    assert after.exit_code == 0, after.output
    assert (tmp_path / "contract.pdf").read_bytes() == contract_v2
    missing = runner.invoke(file_command, [document, "--as-of", "2026-11-23T00:00:00Z"])
    assert missing.exit_code != 0 and "no version of ContentDocument" in missing.output

    # 02:00 window: the document deleted (its versions go with it), the copy undeleted
    at(p, 2, 20)
    sf.ContentDocument.delete(document)
    assert _undelete(p.devorg, [logo_b])[0]["success"]
    at(p, 3, 10)
    third = p.backup("2026-11-24-02:00")
    cv = metadata(third, "salesforce/ContentVersion")["file_bodies"]
    assert cv["bodies_fetched"] == 0 and cv["carried_to_deleted_versions"] == 2
    assert metadata(third, "salesforce/Attachment")["file_bodies"]["bodies_fetched"] == 1  # undeleted: read again
    for version, body in ((v1, contract_v1), (v2, contract_v2)):
        last = rows(p, "salesforce_history", "ContentVersion", version, "dbt_valid_from")[-1]
        assert last["isdeleted"] and last["_sfp_versiondata_sha256"] == sha(body)
    deleted_doc = runner.invoke(file_command, [document, "--as-of", "2026-11-24T02:30:00Z"])
    assert deleted_doc.exit_code == 0 and deleted_doc.stdout_bytes == contract_v2

    # a rerun of a window fetches nothing it already has
    again = p.backup("2026-11-24-01:00")
    assert metadata(again, "salesforce/ContentVersion")["file_bodies"]["bodies_fetched"] == 0
    assert metadata(again, "salesforce/Attachment")["file_bodies"]["bodies_fetched"] == 0
