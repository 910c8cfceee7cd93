"""Deleted files brought back by the restore job against devorg: a purged document re-uploaded from the blob store
with both its versions and its links, a document still in the recycle bin undeleted, an attachment re-created on
its parent, each verified by hash; the dry run stores the plan, the apply writes it, and undo takes it back."""

from __future__ import annotations

import os

import pytest

from sf_pipeline_tests.devorg.test_vanishing_records import _empty_bin
from sf_pipeline_tests.files.helpers import at, attach, sha, upload
from sf_pipeline_tests.pipeline_fixtures import Pipeline
from sf_pipeline_tests.privacy.runs import run_job, step_metadata

pytestmark = pytest.mark.e2e


def failure(result) -> str:
    return "; ".join(str(e.message) for e in result.all_events if e.event_type_value == "STEP_FAILURE")


def reviewed(p: Pipeline, config: dict) -> tuple[dict, dict]:
    dry = run_job(p, "restore", "restore", {**config, "dry_run": True})
    assert dry.success, failure(dry)
    applied = run_job(p, "restore", "restore", {**config, "dry_run": False, "plan": dry.run_id})
    assert applied.success, failure(applied)
    return step_metadata(dry), {**step_metadata(applied), "run_id": applied.run_id}


def test_deleted_files_come_back_with_their_versions_and_links_verified_by_hash_and_undo_takes_them_back(
    pipeline_factory,
):
    p: Pipeline = pipeline_factory(["Account", "Contact", "ContentVersion", "Attachment"])
    sf = p.sf()
    at(p, 0, 5)
    account = sf.Account.create({"Name": "Acme"})["id"]
    contact = sf.Contact.create({"LastName": "Lovelace", "AccountId": account})["id"]
    draft, signed = os.urandom(150_000), os.urandom(180_000)
    first = upload(sf, "contract", draft, parent=account)
    purged_doc = sf.ContentVersion.get(first)["ContentDocumentId"]
    upload(sf, "contract", signed, document=purged_doc)
    sf.ContentDocumentLink.create({"ContentDocumentId": purged_doc, "LinkedEntityId": contact, "ShareType": "V"})
    binned_body = os.urandom(50_000)
    binned_doc = sf.ContentVersion.get(upload(sf, "minutes", binned_body, parent=account))["ContentDocumentId"]
    logo = os.urandom(20_000)
    attachment = attach(sf, account, "logo.png", logo)
    at(p, 1, 10)
    assert p.backup("2026-11-24-00:00").success

    # 01:20: both documents and the attachment deleted; the contract and the attachment purged for good
    at(p, 1, 20)
    for doc in (purged_doc, binned_doc):
        sf.ContentDocument.delete(doc)
    sf.Attachment.delete(attachment)
    assert all(r["success"] for r in _empty_bin(p.devorg, [purged_doc, attachment]))
    at(p, 1, 30)

    config = {
        "object": "ContentDocument",
        "record_ids": [purged_doc, binned_doc],
        "as_of": "2026-11-24T01:15:00Z",
        "target_org": "production",
    }
    plan, applied = reviewed(p, config)
    assert plan["counts"] == {"recreate": 1, "undelete": 1}
    assert applied["outcomes"] == {"recreated": 1, "undeleted": 1}
    assert applied["verified_by_hash"] == 2 and applied["links_created"] >= 2
    new_doc = applied["new_ids"][purged_doc]
    assert new_doc != purged_doc and applied["new_ids"][binned_doc] == binned_doc
    versions = sf.query(
        f"SELECT Id, VersionNumber, Title FROM ContentVersion WHERE ContentDocumentId = '{new_doc}' "
        "ORDER BY VersionNumber"
    )["records"]
    assert [v["VersionNumber"] for v in versions] == ["1", "2"]
    for version, body in zip(versions, (draft, signed), strict=True):
        got = sf.session.get(f"{sf.base_url}sobjects/ContentVersion/{version['Id']}/VersionData", headers=sf.headers)
        assert sha(got.content) == sha(body)
    linked = {
        r["LinkedEntityId"]
        for r in sf.query(f"SELECT LinkedEntityId FROM ContentDocumentLink WHERE ContentDocumentId = '{new_doc}'")[
            "records"
        ]
    }
    assert {account, contact} <= linked
    assert not sf.ContentDocument.get(binned_doc)["IsDeleted"]

    # the attachment: re-created on its account with the same bytes
    att_plan, att_applied = reviewed(
        p,
        {
            "object": "Attachment",
            "record_ids": [attachment],
            "as_of": "2026-11-24T01:15:00Z",
            "target_org": "production",
        },
    )
    assert att_plan["counts"] == {"recreate": 1} and att_applied["verified_by_hash"] == 1
    new_attachment = sf.Attachment.get(att_applied["new_ids"][attachment])
    assert new_attachment["ParentId"] == account and new_attachment["Name"] == "logo.png"
    body = sf.session.get(f"{sf.base_url}sobjects/Attachment/{new_attachment['Id']}/Body", headers=sf.headers)
    assert body.content == logo

    # the same config again finds both documents back (the purged one as its copy): nothing is written twice
    again = run_job(p, "restore", "restore", {**config, "dry_run": True})
    assert step_metadata(again)["counts"] == {"noop": 2}

    # undo: the re-created copy deleted, the undeleted document deleted again
    undo_plan, undone = reviewed(
        p, {"object": "ContentDocument", "undo_of": applied["run_id"], "target_org": "production"}
    )
    assert undo_plan["counts"] == {"delete_copy": 1, "delete_again": 1}
    assert undone["outcomes"] == {"deleted": 2}
    alive = sf.query_all(
        f"SELECT Id, IsDeleted FROM ContentDocument WHERE Id IN ('{new_doc}', '{binned_doc}')", include_deleted=True
    )["records"]
    assert all(r["IsDeleted"] for r in alive)
