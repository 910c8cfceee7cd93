"""Deleted files brought back by the restore job against devorg: a purged document re-uploaded from the blob store
with both its versions and its links, a document still in the recycle bin undeleted, an attachment re-created on
its parent, each verified by hash; the dry run stores the plan, the apply writes it, and undo takes it back."""

from __future__ import annotations

import os

import pytest

from sf_pipeline.restore import RestoreConfig, ensure_restore_tables
from sf_pipeline.restore.files import apply_file_plan, load_file_plan, plan_file_restore
from sf_pipeline.salesforce import OrgCredentials, SalesforceClient, connect
from sf_pipeline.warehouse.id_map import save_id_map
from sf_pipeline_tests.devorg.test_vanishing_records import _empty_bin
from sf_pipeline_tests.files.helpers import at, attach, blob_store, sha, upload
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


def test_attachments_restored_into_another_org_are_found_through_the_id_map_and_go_on_their_parents_copy(
    pipeline_factory,
):
    """A file restore from production's backup into another org (a sandbox seeding filled): the attachments and
    their parents are looked up in sf_pipeline.id_map among thousands of pairs the restore has no use for; the one
    the sandbox holds a copy of is left as it is, the one it has none of is re-created on its parent's copy."""
    p: Pipeline = pipeline_factory(["Account", "Attachment"])
    sf = p.sf()
    at(p, 0, 5)
    account = sf.Account.create({"Name": "Acme"})["id"]
    logo, terms = os.urandom(20_000), os.urandom(10_000)
    missing, copied = attach(sf, account, "logo.png", logo), attach(sf, account, "terms.txt", terms)
    at(p, 1, 10)
    assert p.backup("2026-11-24-00:00").success
    # the sandbox is this devorg under another alias, with seeding's copies of the account and of terms.txt
    at(p, 1, 20)
    account_copy = sf.Account.create({"Name": "Acme (sandbox)"})["id"]
    copy = attach(sf, account_copy, "terms.txt", terms)
    with p.conn() as conn:
        ensure_restore_tables(conn)
        others = {f"001Zz{i:010d}AAA": f"001Zy{i:010d}AAA" for i in range(5_000)}
        save_id_map(conn, "production", "sandbox", "Account", {**others, account: account_copy})
        save_id_map(conn, "production", "sandbox", "Attachment", {copied: copy})
        save_id_map(conn, "production", "production", "Attachment", {missing: copy})  # another orgs' pair: unused
    at(p, 1, 30)
    sandbox = SalesforceClient(connect(OrgCredentials.from_env("production")), alias="sandbox", backoff=0.01)
    config = {"object": "Attachment", "record_ids": [missing, copied], "as_of": "2026-11-24T01:15:00Z"}
    orgs = ("production", "sandbox")
    store = blob_store(p)
    with p.conn() as conn:
        dry = RestoreConfig.from_dict({**config, "target_org": "sandbox", "dry_run": True}, orgs=orgs)
        plan = plan_file_restore(conn, sandbox, dry, "files-dry", store, source_org="production")
        assert {i.source_id: (i.action, i.target_id) for i in plan.items} == {
            missing: ("recreate", None),
            copied: ("noop", copy),
        }
        assert "ids translated from production to sandbox through sf_pipeline.id_map" in plan.notes
        apply = RestoreConfig.from_dict(
            {**config, "target_org": "sandbox", "dry_run": False, "plan": "files-dry"}, orgs=orgs
        )
        result = apply_file_plan(conn, sandbox, load_file_plan(conn, apply, "files"), store, apply)
        assert result.outcomes == {"recreated": 1, "noop": 1} and result.verified == 1
        pairs = dict(conn.execute("SELECT source_id, target_id FROM sf_pipeline.id_map WHERE target_alias = 'sandbox'"))
    recreated = sf.Attachment.get(pairs[missing])
    assert recreated["ParentId"] == account_copy and recreated["Name"] == "logo.png"
    body = sf.session.get(f"{sf.base_url}sobjects/Attachment/{recreated['Id']}/Body", headers=sf.headers)
    assert body.content == logo
