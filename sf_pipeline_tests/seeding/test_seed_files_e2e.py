"""`seed_sandbox` copies the files of the records it seeds: an attachment re-created on the sandbox copy of its
parent, a document uploaded with links to the sandbox copies of the records it was linked to, the bytes from the
blob store; files past `blobs.seed_max_file_mb` listed and not copied; reseeding copies no file twice. Under
masking (on by default for seeding) no original file content or title reaches the sandbox unless
`masking.files: keep` says so: the default withholds files, `placeholder` copies a text placeholder under a keyed
pseudonymous name."""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest
import yaml

from sf_pipeline.seeding.files import PLACEHOLDER
from sf_pipeline_tests.devorg_fixtures import connect
from sf_pipeline_tests.files.helpers import at, attach, sha, upload

pytestmark = pytest.mark.e2e


def _seed(p, **config: Any) -> dict[str, Any]:
    result = (
        p.defs()
        .resolve_job_def("seed_sandbox")
        .execute_in_process(
            instance=p.instance, raise_on_error=False, run_config={"ops": {"seed_sandbox": {"config": config}}}
        )
    )
    assert result.success, [str(e.message) for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    [event] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    return {k: v.value for k, v in event.event_specific_data.metadata.items()}


def test_seeding_copies_the_files_of_seeded_records_up_to_the_size_cap(pipeline_factory, sandbox):
    p = pipeline_factory(["Account", "Contact", "ContentVersion", "Attachment"])
    settings = yaml.safe_load(p.settings_path.read_text())
    settings["blobs"] = {"seed_max_file_mb": 0.1}  # 104,857 bytes
    settings["masking"] = {"files": "keep"}  # copies as they are: what this test checks
    p.settings_path.write_text(yaml.safe_dump(settings))
    sf = p.sf()
    at(p, 0, 5)
    account = sf.Account.create({"Name": "Acme"})["id"]
    contact = sf.Contact.create({"LastName": "Lovelace", "AccountId": account})["id"]
    logo, brief, scan = os.urandom(20_000), os.urandom(60_000), os.urandom(300_000)
    attach(sf, account, "logo.png", logo)
    attach(sf, account, "scan.tiff", scan)  # past the cap
    document = sf.ContentVersion.get(upload(sf, "brief", brief, parent=contact))["ContentDocumentId"]
    sf.ContentDocumentLink.create({"ContentDocumentId": document, "LinkedEntityId": account, "ShareType": "V"})
    at(p, 1, 10)
    assert p.backup("2026-11-24-00:00").success

    meta = _seed(p, as_of="2026-11-24T01:00:00Z", record_ids=[account, contact], target_org="sandbox")
    files = meta["files"]
    assert (files["attachments_copied"], files["documents_copied"], files["failures"]) == (1, 1, [])
    assert files["too_large_not_copied"] == [f"Attachment {_id(p, 'Attachment', 'scan.tiff')} (300,000 bytes)"]
    sand = connect(sandbox)
    with p.conn() as conn:
        mapped = dict(
            conn.execute(
                "SELECT source_id, target_id FROM sf_pipeline.id_map WHERE target_alias = 'sandbox'"
            ).fetchall()
        )
    [copy] = sand.query(f"SELECT Id, Name FROM Attachment WHERE ParentId = '{mapped[account]}'")["records"]
    body = sand.session.get(f"{sand.base_url}sobjects/Attachment/{copy['Id']}/Body", headers=sand.headers)
    assert copy["Name"] == "logo.png" and body.content == logo
    new_doc = mapped[document]
    linked = {
        r["LinkedEntityId"]
        for r in sand.query(f"SELECT LinkedEntityId FROM ContentDocumentLink WHERE ContentDocumentId = '{new_doc}'")[
            "records"
        ]
    }
    assert {mapped[account], mapped[contact]} <= linked
    [version] = sand.query(f"SELECT Id FROM ContentVersion WHERE ContentDocumentId = '{new_doc}'")["records"]
    got = sand.session.get(f"{sand.base_url}sobjects/ContentVersion/{version['Id']}/VersionData", headers=sand.headers)
    assert sha(got.content) == sha(brief)

    again = _seed(p, as_of="2026-11-24T01:00:00Z", record_ids=[account, contact], target_org="sandbox")
    assert (again["files"]["attachments_copied"], again["files"]["documents_copied"]) == (0, 0)
    assert sand.query(f"SELECT COUNT() FROM Attachment WHERE ParentId = '{mapped[account]}'")["totalSize"] == 1


def _id(p, sobject: str, name: str) -> str:
    with p.conn() as conn:
        return conn.execute(f'SELECT id FROM salesforce."{sobject.lower()}" WHERE name = %s', (name,)).fetchone()[0]


def _files_of(sand, parents: list[str]) -> list[tuple[str, bytes]]:
    """(name or title, bytes) of every attachment and document the sandbox holds on these records."""
    ids = ", ".join(f"'{i}'" for i in parents)
    out = []
    for att in sand.query_all(f"SELECT Id, Name, Description FROM Attachment WHERE ParentId IN ({ids})")["records"]:
        got = sand.session.get(f"{sand.base_url}sobjects/Attachment/{att['Id']}/Body", headers=sand.headers)
        out.append((f"{att['Name']} {att['Description'] or ''}", got.content))
    docs = {
        r["ContentDocumentId"]
        for r in sand.query_all(f"SELECT ContentDocumentId FROM ContentDocumentLink WHERE LinkedEntityId IN ({ids})")[
            "records"
        ]
    }
    for doc in docs:
        for v in sand.query_all(
            f"SELECT Id, Title, PathOnClient FROM ContentVersion WHERE ContentDocumentId = '{doc}'"
        )["records"]:
            got = sand.session.get(
                f"{sand.base_url}sobjects/ContentVersion/{v['Id']}/VersionData", headers=sand.headers
            )
            out.append((f"{v['Title']} {v['PathOnClient']}", got.content))
    return out


def test_masked_seeding_withholds_files_by_default_and_placeholders_carry_no_original_title_or_byte(
    pipeline_factory, sandbox
):
    p = pipeline_factory(["Account", "Contact", "ContentVersion", "Attachment"])
    sf = p.sf()
    at(p, 0, 5)
    account = sf.Account.create({"Name": "Initech"})["id"]
    contact = sf.Contact.create({"LastName": "Hopper", "FirstName": "Grace", "AccountId": account})["id"]
    cv, passport = os.urandom(30_000), os.urandom(50_000)
    sf.Attachment.create(
        {
            "ParentId": contact,
            "Name": "Grace Hopper passport.png",
            "Description": "Grace's passport",
            "Body": base64.b64encode(passport).decode(),
        }
    )
    upload(sf, "Grace Hopper CV", cv, parent=contact)
    originals = {"Grace", "Hopper", "passport", "CV"}
    at(p, 1, 10)
    assert p.backup("2026-11-24-00:00").success
    sand = connect(sandbox)

    # the default: masking on, masking.files unset -> no file of the seeded records is copied, and the run says so
    meta = _seed(p, as_of="2026-11-24T01:00:00Z", record_ids=[account, contact], target_org="sandbox")
    assert meta["files"]["mode"] == "skip" and meta["files"]["withheld_by_masking"] == 2
    assert (meta["files"]["attachments_copied"], meta["files"]["documents_copied"]) == (0, 0)
    with p.conn() as conn:
        mapped = dict(
            conn.execute(
                "SELECT source_id, target_id FROM sf_pipeline.id_map WHERE target_alias = 'sandbox'"
            ).fetchall()
        )
    copies = [mapped[account], mapped[contact]]
    assert _files_of(sand, copies) == []

    # masking.files: placeholder -> each file is there, as a placeholder with a keyed name
    settings = yaml.safe_load(p.settings_path.read_text())
    settings["masking"] = {"files": "placeholder"}
    p.settings_path.write_text(yaml.safe_dump(settings))
    p.defs(reload=True)
    meta = _seed(p, as_of="2026-11-24T01:00:00Z", record_ids=[account, contact], target_org="sandbox")
    assert meta["files"]["mode"] == "placeholder"
    assert (meta["files"]["attachments_copied"], meta["files"]["documents_copied"]) == (1, 1)
    files = _files_of(sand, copies)
    assert len(files) == 2
    for name, data in files:
        assert data == PLACEHOLDER and data not in (cv, passport)
        assert not any(word.lower() in name.lower() for word in originals), name
        assert name.split()[0].startswith("file-") and name.split()[0].endswith(".txt")
    # a reseed copies nothing twice and gives the same names
    again = _seed(p, as_of="2026-11-24T01:00:00Z", record_ids=[account, contact], target_org="sandbox")
    assert (again["files"]["attachments_copied"], again["files"]["documents_copied"]) == (0, 0)
    assert sorted(n for n, _ in _files_of(sand, copies)) == sorted(n for n, _ in files)


def test_masking_files_setting_is_checked():
    from sf_pipeline.privacy.errors import PrivacySettingsError
    from sf_pipeline.privacy.masking import MaskingSettings

    assert MaskingSettings.from_dict(None).files == "skip"
    assert MaskingSettings.from_dict({"files": "keep"}).files == "keep"
    with pytest.raises(PrivacySettingsError, match="masking.files must be one of skip, placeholder, keep"):
        MaskingSettings.from_dict({"files": "mask"})
