"""Deleted `Document`s (Document.Body, the classic Documents tab) brought back by the restore job against devorg,
through real Dagster runs: a purged Document re-created in its Folder from the blob store and verified by hash, a
link Document (Url, no Body) re-created from its record, one still in the recycle bin undeleted, and two that
cannot come back as they were reported as conflicts (another Document took its DeveloperName; its Folder is
gone), nothing written for them; then undo takes the restore back.

Salesforce semantics exercised (Object Reference, "Document" and "Folder"): FolderId is required (the Folder that
contains the document); Body is required unless Url is given; DeveloperName is unique in the org; Document
supports undelete() (the recycle bin) and Folder does not."""

from __future__ import annotations

import base64
import os

import pytest

from sf_pipeline_tests.devorg.test_vanishing_records import _empty_bin
from sf_pipeline_tests.files.helpers import at, sha
from sf_pipeline_tests.files.test_file_restore_e2e import failure, reviewed
from sf_pipeline_tests.pipeline_fixtures import Pipeline
from sf_pipeline_tests.privacy.runs import run_job, step_metadata

pytestmark = pytest.mark.e2e


def document(sf, folder: str, name: str, developer_name: str, data: bytes | None = None, url: str | None = None) -> str:
    values = {
        "FolderId": folder,
        "Name": name,
        "DeveloperName": developer_name,
        "ContentType": "application/pdf",
        "Type": "pdf",
        "Description": f"{name} (original)",
        "IsPublic": True,
    }
    if data is not None:
        values["Body"] = base64.b64encode(data).decode()
    else:
        values["Url"] = url
    return sf.Document.create(values)["id"]


def body(sf, document_id: str) -> bytes:
    resp = sf.session.get(f"{sf.base_url}sobjects/Document/{document_id}/Body", headers=sf.headers)
    resp.raise_for_status()
    return resp.content


def test_deleted_documents_come_back_in_their_folder_verified_by_hash_conflicts_are_reported_and_undo_works(
    pipeline_factory,
):
    p: Pipeline = pipeline_factory(["Account", "Document"])
    sf = p.sf()
    at(p, 0, 5)
    folder = sf.Folder.create(
        {"Name": "Price lists", "DeveloperName": "Price_lists", "Type": "Document", "AccessType": "Public"}
    )["id"]
    doomed_folder = sf.Folder.create(
        {"Name": "Old logos", "DeveloperName": "Old_logos", "Type": "Document", "AccessType": "Public"}
    )["id"]
    prices, minutes, logo, old_logo = (os.urandom(n) for n in (120_000, 30_000, 40_000, 10_000))
    purged = document(sf, folder, "prices-2026.pdf", "prices_2026", prices)
    binned = document(sf, folder, "minutes.pdf", "minutes", minutes)
    link = document(sf, folder, "handbook", "handbook", url="https://intranet.example.com/handbook.pdf")
    renamed = document(sf, folder, "logo.png", "logo", logo)
    orphan = document(sf, doomed_folder, "logo-2019.png", "logo_2019", old_logo)
    at(p, 1, 10)
    assert p.backup("2026-11-24-00:00").success

    # 01:20: all five deleted; four purged for good, the minutes stay in the recycle bin; someone uploads a new
    # "logo" Document (it takes the DeveloperName), and the emptied "Old logos" folder is deleted
    at(p, 1, 20)
    for doc in (purged, binned, link, renamed, orphan):
        sf.Document.delete(doc)
    assert all(r["success"] for r in _empty_bin(p.devorg, [purged, link, renamed, orphan]))
    newcomer = document(sf, folder, "logo-new.png", "logo", os.urandom(5_000))
    sf.Folder.delete(doomed_folder)
    at(p, 1, 30)

    config = {
        "object": "Document",
        "record_ids": [purged, binned, link, renamed, orphan],
        "as_of": "2026-11-24T01:15:00Z",
        "target_org": "production",
    }
    dry = run_job(p, "restore", "restore", {**config, "dry_run": True})
    assert dry.success, failure(dry)
    plan = step_metadata(dry)
    assert plan["counts"] == {"recreate": 2, "undelete": 1, "conflict": 2}, plan["plan"]
    assert newcomer in plan["plan"] and doomed_folder in plan["plan"]  # each conflict names what is in the way
    # nothing was written by the dry run
    assert sf.query_all(f"SELECT Id FROM Document WHERE Id = '{binned}'", include_deleted=False)["totalSize"] == 0

    apply = run_job(p, "restore", "restore", {**config, "dry_run": False, "plan": dry.run_id})
    assert apply.success, failure(apply)
    applied = {**step_metadata(apply), "run_id": apply.run_id}
    assert applied["outcomes"] == {"recreated": 2, "undeleted": 1, "conflict": 2}
    assert applied["verified_by_hash"] == 3
    new_ids = applied["new_ids"]
    assert set(new_ids) == {purged, binned, link} and new_ids[binned] == binned
    copy = sf.Document.get(new_ids[purged])
    assert new_ids[purged] != purged
    assert (
        copy["FolderId"],
        copy["Name"],
        copy["DeveloperName"],
        copy["Type"],
        copy["IsPublic"],
        copy["Description"],
    ) == (folder, "prices-2026.pdf", "prices_2026", "pdf", True, "prices-2026.pdf (original)")
    assert sha(body(sf, new_ids[purged])) == sha(prices)
    assert body(sf, binned) == minutes
    link_copy = sf.Document.get(new_ids[link])
    assert link_copy["Url"] == "https://intranet.example.com/handbook.pdf" and link_copy["FolderId"] == folder
    # the conflicting ones were not written: the newcomer keeps its name, no copy of the orphan appeared
    assert sf.query("SELECT Id FROM Document WHERE DeveloperName = 'logo'")["records"] == [
        {
            "attributes": {"type": "Document", "url": f"/services/data/v{sf.sf_version}/sobjects/Document/{newcomer}"},
            "Id": newcomer,
        }
    ]
    assert sf.query("SELECT Id FROM Document WHERE DeveloperName = 'logo_2019'")["totalSize"] == 0

    # the same config again: the copies and the undeleted one are found, nothing is written twice
    again = run_job(p, "restore", "restore", {**config, "dry_run": True})
    assert step_metadata(again)["counts"] == {"noop": 3, "conflict": 2}

    # undo: the two copies deleted, the undeleted one deleted again
    undo_plan, undone = reviewed(p, {"object": "Document", "undo_of": applied["run_id"], "target_org": "production"})
    assert undo_plan["counts"] == {"delete_copy": 2, "delete_again": 1}
    assert undone["outcomes"] == {"deleted": 3}
    gone = sf.query_all(
        f"SELECT Id, IsDeleted FROM Document WHERE Id IN ('{new_ids[purged]}', '{new_ids[link]}', '{binned}')",
        include_deleted=True,
    )["records"]
    assert len(gone) == 3 and all(r["IsDeleted"] for r in gone)
